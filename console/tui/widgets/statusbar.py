"""The status bar: engine role and leader, each Docker host up or down, last/next reconcile, cleanup queue,
READ-ONLY. One line at 80 columns: when the whole text does not fit, the less important parts are shortened or left
out, in this order (LEVELS): the separators and this console's holder id, the next reconcile and "(this console)",
the hosts that are up (counted instead of named), the words "queue" and "engine", then the reconcile time (and
"follower leader X" says "follower of X"), and last the hosts that are down or unknown are counted too ("2 ▼"). The
role and leader, how many hosts are down and the cleanup queue stay; a text that still does not fit (a leader's
name as long as the screen) is cut with an ellipsis, never wrapped."""
from rich.text import Text
from textual.widgets import Static

from console import fmt
from storage.clock import now

_MARKS = {True: ("▲", "green"), False: ("▼", "bold red"), None: ("?", "yellow")}   # host reachable: yes, no, unknown
LEVELS = 7   # 0: everything said in full ... 6: the shortest


def _state(host: dict) -> bool | None:
    r = host.get("reachable")
    return True if r else False if r is False else None


def status_text(status: dict | None, read_only: bool, width: int | None = None) -> Text:
    """The status bar's text: the fullest of the LEVELS that fits `width` cells (all of it without a width)."""
    text = Text()
    for level in range(LEVELS):
        text = _text(status, read_only, level)
        if width is None or text.cell_len <= width:
            return text
    text = _text(status, read_only, LEVELS - 1, cut=text.cell_len - width)   # the leader's name shortened
    text.truncate(width, overflow="ellipsis")
    return text


def _text(status: dict | None, read_only: bool, level: int, cut: int = 0) -> Text:
    t = Text()
    if read_only or (status or {}).get("read_only"):
        t.append(" READ-ONLY ", style="bold white on red")
        t.append(" ")
    sep = "  │  " if level == 0 else " │ "
    if (status or {}).get("store_error"):  # the last poll could not read the store (a PostgreSQL restart)
        t.append(" store unreachable ", style="bold white on red")
        t.append(f" {status['store_error']}{sep}", style="red")
    if status is None:
        t.append("engine: loading…", style="dim")
        return t
    role = status.get("role") or "none"
    leader = status.get("leader") or {}
    holder = leader.get("holder") or "?"
    if cut > 0:   # `cut` cells too many: the leader's name gives them up, down to 4 cells and an ellipsis
        holder = holder[:max(4, len(holder) - cut - 1)] + "…"
    if role == "leader":
        t.append("● leader", style="bold green")
        if level == 0:
            t.append(f" (this console{': ' + status['me'] if status.get('me') else ''})", style="dim")
        elif level == 1:
            t.append(" (this console)", style="dim")
    elif role == "follower":
        t.append("○ follower", style="bold cyan")
        t.append(f" {'leader' if level < 5 else 'of'} {holder}", style="")
    else:
        t.append("engine not hosted" if level < 4 else "not hosted", style="yellow")
        if leader:
            t.append(f" · leader {holder}")
    t.append(f"{sep}hosts ", style="dim")
    hosts = status.get("hosts") or []
    up = [h for h in hosts if h.get("reachable")]
    for h in hosts:
        if (level >= 3 and h.get("reachable")) or level >= 6:
            continue  # counted below
        mark, style = _MARKS[_state(h)]
        t.append(f"{h['name']} {mark} ", style=style)
    if level >= 6:
        for state in (False, None):
            count = sum(_state(h) is state for h in hosts)
            if count:
                t.append(f"{count} {_MARKS[state][0]} ", style=_MARKS[state][1])
    if level >= 3 and up:
        t.append(f"{len(up)}{' up' if len(up) < len(hosts) else ''} ▲ ", style="green")
    lead = sep[1:]   # the hosts end with a space
    if level < 5:
        t.append(f"{lead}reconcile ", style="dim")
        lead = sep
        last, nxt = status.get("last_reconcile_at"), status.get("next_reconcile_at")
        t.append(f"{fmt.age(last) + ' ago' if last else 'never'}")
        if nxt and level < 2:
            t.append(f", next in {fmt.duration(max(0.0, nxt - now()))}")
    t.append(f"{lead}cleanup{' queue' if level < 4 else ''} ", style="dim")
    queue = status.get("cleanup_queue") or 0
    t.append(str(queue), style="bold yellow" if queue else "")
    return t


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: auto; max-height: 2; padding: 0 1; background: $panel; }
    """

    _shown: Text | None = None
    _last: tuple[dict | None, bool] | None = None

    def show(self, status: dict | None, read_only: bool) -> None:
        """Redraw only when the text changed, and this widget alone (no layout of the screen) unless the text now
        takes another number of lines (it ticks every second: `reconcile 6s ago, next in 9s`)."""
        self._last = (status, read_only)
        width = self.content_size.width
        text = status_text(status, read_only, width or None)
        old = self._shown
        if old is not None and old.plain == text.plain and old.spans == text.spans:
            return
        width = max(1, width)

        def lines(t: Text) -> int:
            return -(-max(1, t.cell_len) // width)
        self._shown = text
        self.update(text, layout=old is None or lines(old) != lines(text))

    def on_resize(self) -> None:
        if self._last is not None:   # the fullest text that fits the new width
            self.show(*self._last)
