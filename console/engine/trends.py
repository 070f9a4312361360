"""Deploy-time trends: how long each phase of a service's recent deployments took, how often they failed, and which
deployment ran unusually long. One place decides these rules; the faces only show what it returns.

- a service's history is its newest LAST deployments that left the queue;
- the failure rate is failed / ended, where cancelled ones do not count (an operator cut them short);
- a deployment is slow when its run (finished - started, or so far while deploying) took over SLOW_FACTOR times the
  median run of the service's newest LAST ended, not-cancelled deployments, once there are MIN_RUNS of them.
"""
import statistics
import threading
import time

from console.engine import deployments as D
from console.engine.validate import PHASES
from storage import queries
from storage.clock import now

LAST = 20
SLOW_FACTOR = 2.0
MIN_RUNS = 3
MEDIAN_TTL_S = 10.0     # medians move only when a deployment ends: a poll every second need not ask every time


def phase_duration(runs: list[dict]) -> float | None:
    """A deployment's time in one phase: its last attempt's finished run (a resume re-runs a phase)."""
    done = [r for r in runs if r["duration"] is not None]
    return done[-1]["duration"] if done else None


def service_trends(service: str, last: int = LAST) -> dict:
    """{service, ids (oldest first), phases: {PHASE: [duration or None per deployment]}, failed, ended,
    failure_rate (None with nothing ended), median_run, statuses}."""
    deps, runs = queries.service_history(service, last)
    by_dep: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        by_dep.setdefault((r["deployment_id"], r["phase"]), []).append(r)
    phases = {p: [phase_duration(by_dep.get((d["id"], p), [])) for d in deps] for p in PHASES}
    counted = [d for d in deps if d["status"] in D.COMPLETED]
    failed = sum(d["status"] == "failed" for d in counted)
    took = [d["finished_at"] - d["started_at"] for d in counted if d["started_at"] and d["finished_at"]]
    return {"service": service, "ids": [d["id"] for d in deps], "statuses": [d["status"] for d in deps],
            "phases": phases, "failed": failed, "ended": len(counted),
            "failure_rate": failed / len(counted) if counted else None,
            "median_run": statistics.median(took) if len(took) >= MIN_RUNS else None}


def run_time(row: dict, at: float | None = None) -> float | None:
    start = row.get("started_at")
    if not start:
        return None
    end = row.get("finished_at") or ((at or now()) if row.get("status") == "deploying" else None)
    return end - start if end else None


def is_slow(took: float | None, median: float | None) -> bool:
    return took is not None and median is not None and median > 0 and took > SLOW_FACTOR * median


class SlowRuns:
    """Marks the rows whose run took over SLOW_FACTOR × their service's median. Medians are read in one query for
    the services on screen and kept MEDIAN_TTL_S, so the console's poll does not pay for them every second."""

    def __init__(self, ttl: float = MEDIAN_TTL_S):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._medians: dict[str, float | None] = {}
        self._read_at: dict[str, float] = {}

    def medians(self, services) -> dict[str, float | None]:
        t = time.monotonic()
        with self._lock:
            stale = {s for s in services if t - self._read_at.get(s, -1e9) > self.ttl}
        if stale:
            runs = queries.recent_runs(stale, LAST)
            fresh = {s: statistics.median(runs[s]) if len(runs.get(s, ())) >= MIN_RUNS else None for s in stale}
            with self._lock:
                self._medians.update(fresh)
                self._read_at.update({s: t for s in stale})
        with self._lock:
            return {s: self._medians.get(s) for s in services}

    def slow_ids(self, rows: list[dict]) -> set[str]:
        medians = self.medians({r["service"] for r in rows})
        at = now()
        return {r["id"] for r in rows if is_slow(run_time(r, at), medians.get(r["service"]))}
