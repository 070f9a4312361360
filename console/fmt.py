"""Formatting shared by the CLI and the TUI: ages, durations, phase progress."""
from console.engine.validate import PHASES
from storage.clock import now


def age(t: float | None) -> str:
    if not t:
        return "-"
    return duration(max(0.0, now() - t))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def run_time(row: dict) -> str:
    start = row.get("started_at")
    if not start:
        return "-"
    end = row.get("finished_at") or (now() if row.get("status") == "deploying" else None)
    return duration(end - start) if end else "-"


def phase_progress(phase: str | None, status: str | None = None) -> str:
    if not phase:
        return "-"
    index = PHASES.index(phase) + 1 if phase in PHASES else 0
    if status == "success":
        return f"6/6 {phase}"
    return f"{index}/6 {phase}"


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)] if rows else [len(h) for h in headers]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)
