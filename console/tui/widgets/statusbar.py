"""The status bar: engine role and leader, each Docker host up or down, last/next reconcile, cleanup queue,
READ-ONLY."""
from rich.text import Text
from textual.widgets import Static

from console import fmt
from storage.clock import now


def status_text(status: dict | None, read_only: bool) -> Text:
    t = Text()
    if read_only or (status or {}).get("read_only"):
        t.append(" READ-ONLY ", style="bold white on red")
        t.append(" ")
    if (status or {}).get("store_error"):  # the last poll could not read the store (a PostgreSQL restart)
        t.append(" store unreachable ", style="bold white on red")
        t.append(f" {status['store_error']}  │  ", style="red")
    if status is None:
        t.append("engine: loading…", style="dim")
        return t
    role = status.get("role") or "none"
    leader = status.get("leader") or {}
    if role == "leader":
        t.append("● leader", style="bold green")
        t.append(f" (this console{': ' + status['me'] if status.get('me') else ''})", style="dim")
    elif role == "follower":
        t.append("○ follower", style="bold cyan")
        t.append(f" leader {leader.get('holder') or '?'}", style="")
    else:
        t.append("engine not hosted", style="yellow")
        if leader:
            t.append(f" · leader {leader.get('holder')}")
    t.append("  │  hosts ", style="dim")
    for h in status.get("hosts") or []:
        up = h.get("reachable")
        mark, style = ("▲", "green") if up else ("▼", "bold red") if up is False else ("?", "yellow")
        t.append(f"{h['name']} {mark} ", style=style)
    t.append(" │  reconcile ", style="dim")
    last, nxt = status.get("last_reconcile_at"), status.get("next_reconcile_at")
    t.append(f"{fmt.age(last) + ' ago' if last else 'never'}")
    if nxt:
        t.append(f", next in {fmt.duration(max(0.0, nxt - now()))}")
    t.append("  │  cleanup queue ", style="dim")
    queue = status.get("cleanup_queue") or 0
    t.append(str(queue), style="bold yellow" if queue else "")
    return t


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: auto; max-height: 2; padding: 0 1; background: $panel; }
    """

    _shown: Text | None = None

    def show(self, status: dict | None, read_only: bool) -> None:
        """Redraw only when the text changed, and this widget alone (no layout of the screen) unless the text now
        takes another number of lines (it ticks every second: `reconcile 6s ago, next in 9s`)."""
        text = status_text(status, read_only)
        old = self._shown
        if old is not None and old.plain == text.plain and old.spans == text.spans:
            return
        width = max(1, self.content_size.width)

        def lines(t: Text) -> int:
            return -(-max(1, t.cell_len) // width)
        self._shown = text
        self.update(text, layout=old is None or lines(old) != lines(text))
