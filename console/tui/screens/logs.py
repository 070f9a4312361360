"""Following a container's log. The stream is read in a thread worker and written to a `FollowLog` from there via
call_from_thread; leaving the screen closes the stream (docker-py's CancellableStream.close works across threads).
A stream that ends (the container stopped) is reopened once the container runs again, so the viewer never stops
receiving while it is open."""
import textwrap
import threading
from collections import deque

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Log, Static

from console.engine.errors import InputError
from console.tui.data import one_line
from console.tui.widgets.footer import Footer

RETRY_S = 2.0          # how often a stopped container is asked for its log again


class FollowLog(Log):
    """A Log that follows its tail until the operator scrolls up (up/k, pgup, home/g, the wheel), says which in its
    border subtitle, and keeps the tail across a resize while it follows. End (or G) follows again; so does
    scrolling back down to the last line. Lines keep arriving while it is paused."""
    BINDINGS = [Binding("end,G", "follow", "Follow", id="log_follow"),
                Binding("home,g", "top", "Top", show=False),
                Binding("up,k", "line_up", show=False), Binding("down,j", "line_down", show=False),
                Binding("pageup", "page_up_pause", show=False), Binding("pagedown", "page_down_follow", show=False)]
    following: reactive[bool] = reactive(True)

    def __init__(self, wrap_indent: int | None = None, **kwargs):
        """wrap_indent: wrap lines given to add_lines at the visible width (continuations indented by that many
        columns), re-wrapped on resize; None keeps lines whole (horizontal scroll)."""
        super().__init__(auto_scroll=False, **kwargs)
        self.wrap_indent = wrap_indent
        self.sources: deque[str] = deque(maxlen=self.max_lines)
        self._wrapped_at = 0

    def add(self, text: str) -> None:
        self.write(text, scroll_end=self.following)

    def _wrap(self, lines) -> list[str]:
        width = self.scrollable_content_region.width
        if self.wrap_indent is None or width < 20:
            return list(lines)
        self._wrapped_at = width
        out = []
        for line in lines:
            out += textwrap.wrap(line, width, subsequent_indent=" " * self.wrap_indent,
                                 break_on_hyphens=False) or [""]
        return out

    def add_lines(self, lines: list[str]) -> None:
        self.sources.extend(lines)
        self.write_lines(self._wrap(lines), scroll_end=False)
        if self.following:  # Log only scrolls when it was already at the end, which a resize can undo
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def state(self) -> str:
        return "following" if self.following else "paused — End to follow"

    def watch_following(self, following: bool) -> None:
        self.border_subtitle = self.state()
        if following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def on_mount(self) -> None:
        self.border_subtitle = self.state()

    def on_resize(self) -> None:
        if self.wrap_indent is not None and self.sources and self.scrollable_content_region.width != self._wrapped_at:
            top = self.scroll_y
            self.clear()
            self.write_lines(self._wrap(self.sources), scroll_end=False)
            if not self.following:
                self.scroll_to(y=min(top, self.max_scroll_y), animate=False, immediate=True)
        if self.following:
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True, x_axis=False)

    def _after_move_down(self) -> None:
        if self.scroll_y >= self.max_scroll_y:
            self.following = True

    def action_follow(self) -> None:
        self.following = True

    def action_top(self) -> None:
        self.following = False
        self.scroll_home(animate=False)

    def action_line_up(self) -> None:
        self.following = False
        self.scroll_up(animate=False)

    def action_line_down(self) -> None:
        self.scroll_down(animate=False)
        self.call_after_refresh(self._after_move_down)

    def action_page_up_pause(self) -> None:
        self.following = False
        self.scroll_page_up(animate=False)

    def action_page_down_follow(self) -> None:
        self.scroll_page_down(animate=False)
        self.call_after_refresh(self._after_move_down)

    def _on_mouse_scroll_up(self, event) -> None:
        if self.max_scroll_y > 0:
            self.following = False
        super()._on_mouse_scroll_up(event)

    def _on_mouse_scroll_down(self, event) -> None:
        super()._on_mouse_scroll_down(event)
        self.call_after_refresh(self._after_move_down)


class LogsScreen(Screen):
    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back", id="logs_back")]

    def __init__(self, container: dict, **kwargs):
        super().__init__(**kwargs)
        self.container = container
        self.stream = None
        self.closed = threading.Event()
        self.received = 0          # chunks written, for the operator's head line and the tests

    def compose(self) -> ComposeResult:
        yield Static(self._head(), id="logs-head")
        yield FollowLog(id="logs", max_lines=20000)
        yield Footer()

    def _head(self) -> Text:
        """The follow state first (a narrow terminal cuts the end of the line), then whose log this is."""
        c = self.container
        log = self.query_one(FollowLog) if self.is_mounted else None
        following = log is None or log.following
        head = Text(log.state() if log is not None else "following", style="bold" if following else "bold yellow")
        head.append(f" · {c['name']} ({c['id']}) on {c['host']} · {c['state']}")
        return head

    def _set_state(self, state: str) -> None:
        self.container = {**self.container, "state": state}
        self.query_one("#logs-head", Static).update(self._head())

    def on_mount(self) -> None:
        log = self.query_one(FollowLog)
        log.border_title = f"{self.container['name']}"
        log.focus()
        self.watch(log, "following", lambda _: self.query_one("#logs-head", Static).update(self._head()),
                   init=False)
        self._follow()

    def on_unmount(self) -> None:
        self.closed.set()
        stream = self.stream
        if stream is not None and hasattr(stream, "close"):
            try:
                stream.close()
            except Exception:
                pass

    def _write(self, text: str) -> None:
        if self.closed.is_set():
            return
        self.received += 1
        self.query_one(FollowLog).add(text)

    def _say(self, text: str) -> None:
        if not self.closed.is_set():
            self.app.call_from_thread(self._write, text)

    @work(thread=True, group="logs", exit_on_error=False)
    def _follow(self) -> None:
        c = self.container
        tail, waiting = 200, False
        try:
            while not self.closed.is_set():
                try:
                    self.stream = self.app.engine.container_logs(c["id"], host=c["host"], follow=True, tail=tail)
                except InputError:  # no longer one of ours: removed
                    self._say("\n— the container was removed; nothing more to follow —\n")
                    return
                got = False
                for chunk in self.stream:
                    if self.closed.is_set():
                        return
                    if waiting:
                        self._say("— the container runs again: following —\n")
                        self.app.call_from_thread(self._set_state, "running")
                        waiting = False
                    got = True
                    self.app.call_from_thread(self._write, chunk.decode(errors="replace"))
                if self.closed.is_set():
                    return
                if got or not waiting:
                    self._say("\n— log stream ended (container stopped); waiting for it to run again —\n")
                    if not self.closed.is_set():
                        self.app.call_from_thread(self._set_state, "stopped")
                    waiting = True
                tail = 0           # after a restart only what is new
                self.closed.wait(RETRY_S)
        except Exception as e:  # the operator sees a line, the console keeps running
            if not self.closed.is_set():
                self.app.call_from_thread(self.app.notify, f"logs of {c['name']}: {one_line(e)}", severity="error")
        finally:
            self.app.engine.release_connection()
