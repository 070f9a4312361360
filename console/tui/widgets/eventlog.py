"""The event log: a live tail of deployment, cleanup, reconcile, rollback and audit events (Textual `Log`), filtered
by kind and by deployment, following the end unless the operator has scrolled up."""
import time
from collections import deque

from textual.widgets import Log

BUFFER = 5000
LEVELS = {"debug": "DBG", "info": "INF", "warning": "WRN", "error": "ERR"}


def event_line(e: dict) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(e["time"]))
    level = LEVELS.get(e["level"], e["level"][:3].upper())
    return (f"{stamp} {level} {e['kind'][:10]:<10} {(e['deployment_id'] or '-'):<12} {e['message']}"
            + (f"  [{e['actor']}]" if e.get("actor") else ""))


class EventLog(Log):
    def __init__(self, **kwargs):
        super().__init__(max_lines=BUFFER, auto_scroll=True, **kwargs)
        self.buffer: deque[dict] = deque(maxlen=BUFFER)
        self.kind = "all"
        self.deployment_id: str | None = None
        self.last_id = 0

    def wanted(self, e: dict) -> bool:
        if self.deployment_id and e["deployment_id"] != self.deployment_id:
            return False
        if self.kind == "all":
            return e["kind"] != "build"    # build output is for the details screen, not the tail
        return e["kind"] == self.kind

    def add(self, events: list[dict]) -> None:
        if not events:
            return
        self.buffer.extend(events)
        self.last_id = max(self.last_id, events[-1]["id"])
        lines = [event_line(e) for e in events if self.wanted(e)]
        if lines:
            # follow the tail only when the operator is at the end already
            self.write_lines(lines, scroll_end=self.is_vertical_scroll_end)

    def set_filter(self, kind: str | None = None, deployment_id: str | None = "keep") -> None:
        if kind is not None:
            self.kind = kind
        if deployment_id != "keep":
            self.deployment_id = deployment_id
        self.clear()
        self.write_lines([event_line(e) for e in self.buffer if self.wanted(e)], scroll_end=True)

    def describe(self) -> str:
        parts = [f"kind:{self.kind}"]
        if self.deployment_id:
            parts.append(f"deployment:{self.deployment_id}")
        return " ".join(parts)
