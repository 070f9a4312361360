"""Formatting shared by the CLI (console/cli.py and its quick path, console/quick.py) and the TUI: ages, durations,
phase progress, the tables and JSON the read commands print."""
import json
import time

from storage.clock import now
from storage.statuses import PHASES


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


def to_json(data) -> str:
    """What every `--json` prints."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def until(t: float | None) -> str:
    if not t:
        return "-"
    delta = t - time.time()
    return f"in {duration(delta)}" if delta >= 0 else f"{duration(-delta)} ago"


def public_deployment(row: dict) -> dict:
    """A deployment as the CLI's JSON shows it."""
    keys = ["id", "service", "status", "phase", "host", "error", "created_at", "updated_at", "finished_at",
            "wait_reason"]
    return {k: row.get(k) for k in keys} | {k: row[k] for k in ("phases", "events", "cleanup", "attempts")
                                             if k in row}


def deployments_json(rows: list[dict]) -> list[dict]:
    """`ls --json`."""
    return [public_deployment(r) | {"cleanup": r.get("cleanup")} for r in rows]


def deployments_table(rows: list[dict]) -> str:
    """`ls`."""
    return table([[r["id"], r["service"], r["status"], phase_progress(r["phase"], r["status"]), r["host"],
                   age(r["created_at"]), run_time(r), r.get("cleanup") or "-",
                   (r["error"] or (f"waits: {r['wait_reason']}" if r.get("wait_reason") else ""))[:60]]
                  for r in rows],
                 ["ID", "SERVICE", "STATUS", "PHASE", "HOST", "AGE", "DURATION", "CLEANUP", "ERROR"])


def status_text(st: dict) -> str:
    """`status`: the leader, each job, the cleanup queue, each Docker host."""
    leader = st["leader"]
    lines = [f"leader: {leader['holder']} (host {leader['host']}, pid {leader['pid']}, lease expires "
             f"{until(leader['expires_at'])})" if leader else "leader: none (no engine holds the lease: queued "
             "deployments and cleanups wait; start `deployer-console engine`)"]
    if st["read_only"]:
        lines.append("read-only mode")
    lines.append(table([[j["name"], age(j["last_run_at"]) + (" ago" if j["last_run_at"] else ""),
                         j["outcome"] or "-", " ".join(f"{k}={v}" for k, v in sorted((j["counts"] or {}).items())
                                                       if v) or "-", until(j["next_run_at"])]
                        for j in st["jobs"]], ["JOB", "LAST RUN", "OUTCOME", "COUNTS", "NEXT"]))
    lines.append(f"cleanup queue: {st['cleanup_queue']}")
    lines.append(table([[h["name"], {True: "up", False: "DOWN", None: "?"}[h["reachable"]], h["source"],
                         age(h["last_seen_at"]), (h["last_error"] or "")[:80]] for h in st["hosts"]],
                       ["HOST", "STATE", "SOURCE", "SEEN", "LAST ERROR"]))
    return "\n".join(lines)
