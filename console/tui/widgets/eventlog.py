"""The event log: a live tail of deployment, cleanup, reconcile, rollback and audit events, filtered by kind and by
deployment. Messages come first and wrap; errors stand out; kind and deployment id are added only where the message
does not already say them.

Following is explicit: the log follows the tail until the operator scrolls up (paused, said in the title), and
follows again on End or when scrolled back to the bottom. New events are always received (kept in `buffer`), and a
resize re-wraps the lines and keeps the tail in view when it was following.
"""
import re
import time
from collections import deque

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import RichLog

_STARTS_EVENT = re.compile(r"^\d\d:\d\d:\d\d ").match   # the first line of an event (the rest are its wrapping)
BUFFER = 5000
SHOWN = 1000          # lines re-rendered on a resize or a filter change (the buffer keeps more)
LEVELS = {"debug": ("DBG", "dim"), "info": ("INF", ""), "warning": ("WRN", "bold yellow"),
          "error": ("ERR", "bold red")}
MESSAGE_STYLE = {"warning": "yellow", "error": "red"}


def event_text(e: dict, scoped: bool = False) -> Text:
    """`12:00:01 ERR message  kind id [actor]`; the kind only when it is not a deployment event and the message does
    not say it, the id only when the log is not scoped to it and the message does not name it."""
    level, level_style = LEVELS.get(e["level"], (e["level"][:3].upper(), ""))
    t = Text(no_wrap=False)
    t.append(time.strftime("%H:%M:%S", time.localtime(e["time"])) + " ", style="dim")
    t.append(level + " ", style=level_style)
    t.append(e["message"], style=MESSAGE_STYLE.get(e["level"], ""))
    extra = []
    if e["kind"] != "deployment" and e["kind"] not in e["message"].lower():
        extra.append(e["kind"])
    dep = e.get("deployment_id")
    if dep and not scoped and dep not in e["message"]:
        extra.append(dep)
    if e.get("actor"):
        extra.append(f"[{e['actor']}]")
    if extra:
        t.append("  " + " ".join(extra), style="dim")
    return t


def event_line(e: dict, scoped: bool = False) -> str:
    """The same line as plain text (for a Textual `Log`)."""
    return event_text(e, scoped).plain


class EventLog(RichLog):
    BINDINGS = [Binding("end,G", "follow", "Follow", show=False),
                Binding("home,g", "scroll_home", "Oldest", show=False),
                Binding("k", "scroll_up", show=False), Binding("j", "scroll_down", show=False)]

    def __init__(self, **kwargs):
        super().__init__(max_lines=BUFFER, auto_scroll=False, wrap=True, markup=False, highlight=False, min_width=1,
                         **kwargs)
        self.buffer: deque[dict] = deque(maxlen=BUFFER)
        self.kind = "all"
        self.deployment_id: str | None = None
        self.last_id = 0
        self.following = True
        self._width = 0

    def wanted(self, e: dict) -> bool:
        if self.deployment_id and e["deployment_id"] != self.deployment_id:
            return False
        if self.kind == "all":
            return e["kind"] != "build"    # build output is for the details screen, not the tail
        return e["kind"] == self.kind

    def _text(self, events) -> Text | None:
        scoped = self.deployment_id is not None
        texts = [event_text(e, scoped) for e in events if self.wanted(e)]
        return Text("\n").join(texts) if texts else None

    def add(self, events: list[dict]) -> None:
        if not events:
            return
        self.buffer.extend(events)
        self.last_id = max(self.last_id, events[-1]["id"])
        self._check_end()
        text = self._text(events)
        if text is not None:
            self.write(text, scroll_end=self.following)

    def rebuild(self) -> None:
        """Re-render the newest wanted events (after a filter change or a resize), keeping the tail if following."""
        y = self.scroll_y
        self.clear()
        wanted = [e for e in self.buffer if self.wanted(e)][-SHOWN:]
        text = self._text(wanted)
        if text is not None:
            self.write(text, scroll_end=self.following)
        if not self.following:
            self.scroll_to(y=y, animate=False, immediate=True)

    def set_filter(self, kind: str | None = None, deployment_id: str | None = "keep") -> None:
        if kind is not None:
            self.kind = kind
        if deployment_id != "keep":
            self.deployment_id = deployment_id
        self.following = True
        self.rebuild()
        self._changed()

    def on_resize(self, event) -> None:
        width = event.size.width
        if self._size_known and width != self._width and self._width:
            self.call_after_refresh(self.rebuild)
        elif self.following:
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True, x_axis=False)
        self._width = width

    # ---- follow / pause: any move up pauses, End (or reaching the bottom) follows again
    def _pause(self) -> None:
        if self.following and self.max_scroll_y > 0:
            self.following = False
            self._changed()

    def _check_end(self) -> None:
        if not self.following and self.is_vertical_scroll_end:
            self.following = True
            self._changed()

    def _changed(self) -> None:
        self.post_message(self.FollowChanged())

    def action_follow(self) -> None:
        self.following = True
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        self._changed()

    def action_scroll_up(self) -> None:
        self._pause()
        self.scroll_up(animate=False)

    def action_page_up(self) -> None:
        self._pause()
        self.scroll_page_up(animate=False)

    def action_scroll_home(self) -> None:
        self._pause()
        self.scroll_home(animate=False, x_axis=False)

    def _on_mouse_scroll_up(self, event) -> None:
        self._pause()
        super()._on_mouse_scroll_up(event)

    def action_scroll_down(self) -> None:
        self.scroll_down(animate=False, immediate=True)
        self._check_end()

    def action_page_down(self) -> None:
        self.scroll_page_down(animate=False)
        self.call_after_refresh(self._check_end)

    def _on_mouse_scroll_down(self, event) -> None:
        super()._on_mouse_scroll_down(event)
        self.call_after_refresh(self._check_end)

    def bottom_line(self) -> str | None:
        """The event whose text ends the view (the newest one while following), as one plain line: what `y` copies.
        The view shows wrapped lines, so the event is found by its text without the wrapping."""
        if not self.lines:
            return None
        bottom = min(len(self.lines) - 1, int(self.scroll_y) + max(1, self.scrollable_content_region.height) - 1)
        start = bottom
        while start > 0 and not _STARTS_EVENT(self.lines[start].text):
            start -= 1
        end = bottom + 1
        while end < len(self.lines) and not _STARTS_EVENT(self.lines[end].text):
            end += 1
        shown = "".join("".join(strip.text.split()) for strip in self.lines[start:end])
        scoped = self.deployment_id is not None
        for e in reversed(self.buffer):
            if self.wanted(e):
                line = event_line(e, scoped)
                if "".join(line.split()) == shown:
                    return line
        return " ".join(" ".join(strip.text.split()) for strip in self.lines[start:end])

    def describe(self) -> str:
        parts = [f"kind:{self.kind}"]
        if self.deployment_id:
            parts.append(f"deployment:{self.deployment_id}")
        parts.append("following" if self.following else "paused — End to follow")
        return " · ".join(parts)

    class FollowChanged(Message):
        """Following started or stopped (the pane title says which)."""
