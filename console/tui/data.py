"""What the console shows, fetched off the UI thread: one poll = one Snapshot (deployments window, status, new events,
managed containers). No Textual import: the screens call this from thread workers, the benchmark calls it directly.

The deployments table never holds the whole store: it shows the newest WINDOW rows that match the filter plus every
active (queued/deploying) deployment, however old, so 10,000 rows in the store cost the same as 500.
"""
import time
from dataclasses import dataclass, field

from console import fmt
from console.engine import errors
from console.engine.deployments import ACTIVE

WINDOW = 500
CONTAINERS_EVERY_S = 5.0   # Docker is asked at least this often; at once after any change in the store, or when
                           # Docker's events say one of our containers started, stopped, died or went
STATUS_EVERY_S = 5.0       # the status (lease, jobs, hosts) is read again at least this often
SORTS = ("newest", "status", "service", "host")
STATUS_RANK = {"deploying": 0, "queued": 1, "degraded": 2, "failed": 3, "success": 4, "cancelled": 5,
               "superseded": 6}
MATCH_FIELDS = ("id", "service", "status", "host", "error")
SHORT_PHASE = {"PULLING_SOURCE": "PULL", "BUILDING": "BUILD", "COPYING_FILES": "COPY",
               "CREATING_SYMLINKS": "LINK", "UPDATING_ROUTES": "ROUTE", "HEALTH_CHECK": "HEALTH"}
SLOW_MARK = "▲"
EVENT_KINDS = ("all", "deployment", "cleanup", "reconcile", "rollback", "audit", "host", "build")


@dataclass(frozen=True)
class Filter:
    """What the filter bar holds: words that must each be a case-insensitive substring of the id, service, status,
    host or error (`status:fail`, `host:h2` etc. look in one field only)."""
    words: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Filter":
        return cls(tuple(w.lower() for w in (text or "").split()))

    def text(self) -> str:
        return " ".join(self.words)

    def matches(self, row: dict) -> bool:
        for word in self.words:
            field, sep, value = word.partition(":")
            fields = [field] if sep and field in MATCH_FIELDS else MATCH_FIELDS
            value = value if sep and field in MATCH_FIELDS else word
            if not any(value in str(row.get(f) or "").lower() for f in fields):
                return False
        return True


@dataclass
class Snapshot:
    rows: list[dict]
    total: int          # every deployment in the store
    matched: int        # those the filter matches
    status: dict
    events: list[dict]
    containers: list[dict] | None
    container_errors: list[str] = field(default_factory=list)
    fetch_ms: float = 0.0
    unchanged: bool = False   # nothing changed since the last full read: rows/total/matched are those of then


def sort_rows(rows: list[dict], sort: str) -> list[dict]:
    newest = sorted(rows, key=lambda r: (-(r["created_at"] or 0), r["id"]))
    if sort == "status":
        return sorted(newest, key=lambda r: STATUS_RANK.get(r["status"], 9))
    if sort in ("service", "host"):
        return sorted(newest, key=lambda r: r[sort] or "")
    return newest


STATUS_WIDTH = 10   # the deployments table's STATUS column


def deployment_cells(row: dict, short: bool = False) -> tuple[str, ...]:
    """The plain text of one table row: id, service, status (● when it is the release that serves), phase (short
    names at narrow widths), age, run time (▲ when it took over twice the service's median), cleanup, host."""
    phase = fmt.phase_progress(row["phase"], row["status"])
    if short and row["phase"]:
        phase = phase.replace(row["phase"], SHORT_PHASE.get(row["phase"], row["phase"]))
    status = row["status"]
    if row.get("current"):   # "● deploying" would be cut in the 10-column STATUS: the mark's space goes instead
        status = ("● " if len(status) + 2 <= STATUS_WIDTH else "●") + status
    took = fmt.run_time(row)
    if row.get("slow"):   # DURATION is 8 wide: "59m59s ▲", "1d02h▲"
        took += SLOW_MARK if len(took) > 6 else f" {SLOW_MARK}"
    return (row["id"], row["service"], status, phase, fmt.age(row["created_at"]), took,
            row.get("cleanup") or "-", row["host"])


class Poller:
    """One poll = a cheap change check, then a full read only when something changed.

    The check reads the store's change counter (bumped by triggers on every write to a table the console shows,
    whoever writes: another console, the CLI, the engine; see storage/migrations.py), the lease holder, the
    services' `current` links and this process's own view of its hosts. When none moved and the query is the same
    (filter, sort, pinned rows, last event seen), the poll returns `unchanged` without reading the deployments or
    the events; the status is read again every STATUS_EVERY_S and Docker asked every CONTAINERS_EVERY_S."""

    def __init__(self, engine, window: int = WINDOW):
        self.engine = engine
        self.window = window
        self._mark = None          # the change mark of the last full read
        self._query = None         # (filter, sort, since_id, pinned) of the last full read
        self._services: list[str] | None = None
        self._status_at = 0.0
        self._containers_at = 0.0
        self._docker_mark = None   # Engine.container_changes() at the last read of the containers
        self.full_reads = 0
        self.skipped = 0

    def change_mark(self) -> tuple:
        """What moves when anything the console shows may have changed (a few microseconds of SQL)."""
        from console.engine.paths import link_target
        from storage.migrations import CHANGES_KEY
        p = self.engine.store.db.param
        row = self.engine.store.db.execute_sql(
            f"SELECT (SELECT value FROM meta WHERE key = {p}), (SELECT holder FROM lease ORDER BY name LIMIT 1)",
            (CHANGES_KEY,)).fetchone()
        links = tuple(link_target(self.engine.paths.current(n)) for n in self._services or ())
        hosts = self.engine.hosts.noted()
        if row[0] is None:   # no counter (a store this check cannot read): every poll is a full read
            return (time.monotonic(),)
        return (row[0], row[1], links, hosts)

    def deployments(self, flt: Filter, sort: str, pinned=()) -> tuple[list[dict], int, int]:
        """The newest WINDOW rows the filter matches, every active one, and the `pinned` ones (deployments the
        operator acted on stay in view whatever the filter). Returns (rows, matched, total)."""
        eng = self.engine
        words = list(flt.words) or None
        rows = [r for r in eng.deployments(match=words, limit=self.window) if flt.matches(r)]
        total = eng.deployment_count()
        matched = eng.deployment_count(words) if words else total
        seen = {r["id"] for r in rows}
        for status in sorted(ACTIVE):
            extra = [r for r in eng.deployments(status=status, match=words) if r["id"] not in seen and flt.matches(r)]
            rows += extra
            seen.update(r["id"] for r in extra)
        missing = [i for i in pinned if i not in seen]
        if missing:
            rows += eng.deployments(ids=missing)
        self._services = eng.service_names()     # whose `current` links the change check looks at
        current = set(eng.current_releases(self._services).values())
        slow = eng.slow_deployments(rows)     # the engine's rule: over twice the service's median run
        for r in rows:
            r["current"] = r["id"] in current
            r["slow"] = r["id"] in slow
        return sort_rows(rows, sort), matched, total

    def status(self) -> dict:
        return self.engine.status()

    def events(self, since_id: int) -> list[dict]:
        return self.engine.events(since_id=since_id, limit=500)

    def docker_mark(self):
        try:
            return self.engine.container_changes()
        except Exception:  # noqa: BLE001 - no event streams: the periodic read is enough
            return None

    def containers(self) -> tuple[list[dict], list[str]]:
        # one call for every host: the store is read once, and a host that is down is reported, not fatal
        unreachable: dict[str, str] = {}
        try:
            rows = self.engine.containers(all=True, unreachable=unreachable)
        except Exception as e:  # anything else than a down host: the pane says what
            return [], [one_line(e)]
        return rows, [f"{host}: {error}" for host, error in unreachable.items()]

    def poll(self, flt: Filter, sort: str, since_id: int, containers: bool = True, pinned=(),
             full: bool = False) -> Snapshot:
        """A Snapshot; `unchanged` (rows None, no events) when the change check found nothing new, unless `full`."""
        t0 = time.perf_counter()
        mono = time.monotonic()
        mark = self.change_mark()
        query = (flt, sort, since_id, tuple(pinned))
        changed = full or mark != self._mark or query != self._query
        status = None
        if changed or mono - self._status_at >= STATUS_EVERY_S:
            status, self._status_at = self.status(), mono
        if changed:
            rows, matched, total = self.deployments(flt, sort, pinned)
            events = self.events(since_id)
            # the mark read *before* the rows: a write that lands during the read moves the counter past it,
            # so the next poll reads again
            self._mark, self._query = mark, query
            self.full_reads += 1
        else:
            rows, matched, total, events = None, 0, 0, []
            self.skipped += 1
        cons, errors = None, []
        docker_mark = self.docker_mark() if containers else None
        if containers and (changed or mono - self._containers_at >= CONTAINERS_EVERY_S
                           or docker_mark != self._docker_mark):
            cons, errors = self.containers()
            self._containers_at, self._docker_mark = mono, docker_mark
        return Snapshot(rows, total, matched, status, events, cons, errors, (time.perf_counter() - t0) * 1000,
                        unchanged=not changed)

    def release(self) -> None:
        """Close this worker thread's store connection, after an action (seldom). A poll keeps its thread's: Textual
        runs thread workers on the event loop's executor, whose few threads are reused, so closing it after every
        poll only made the next one open a new connection (SQLite: connect and pragmas, ~12 % of an idle console's
        CPU)."""
        self.engine.release_connection()


def one_line(e: BaseException) -> str:
    return errors.one_line(e, 200)
