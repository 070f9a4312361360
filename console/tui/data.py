"""What the console shows, fetched off the UI thread: one poll = one Snapshot (deployments window, status, new events,
managed containers). No Textual import: the screens call this from thread workers, the benchmark calls it directly.

The deployments table never holds the whole store: it shows the newest WINDOW rows that match the filter plus every
active (queued/deploying) deployment, however old, so 10,000 rows in the store cost the same as 500.
"""
import re
import time
from dataclasses import dataclass, field

from console import fmt
from console.engine import validate
from console.engine.errors import InputError
from storage.clock import now

WINDOW = 500
ACTIVE = ("queued", "deploying")
SORTS = ("newest", "status", "service", "host")
STATUS_RANK = {"deploying": 0, "queued": 1, "degraded": 2, "failed": 3, "success": 4, "cancelled": 5,
               "superseded": 6}
HEX_RE = re.compile(r"^[0-9a-f]{1,12}$")
EVENT_KINDS = ("all", "deployment", "cleanup", "reconcile", "rollback", "audit", "host", "build")


@dataclass(frozen=True)
class Filter:
    service: str | None = None
    status: str | None = None
    id_prefix: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Filter":
        """`web failed a1b2`, or explicit `service:web status:failed id:a1b2`. A bare word that is a status is the
        status, 4-12 hex digits are an id prefix, anything else is a service name."""
        service = status = prefix = None
        for word in (text or "").split():
            key, sep, value = word.partition(":") if ":" in word else ("", "", word)
            value = value.strip()
            if key == "status" or (not sep and value in validate.STATUSES):
                status = validate.status(value)
            elif key == "id" or (not sep and validate.DEPLOYMENT_RE.fullmatch(value) and
                                 any(c.isdigit() for c in value)):
                if not HEX_RE.fullmatch(value):
                    raise InputError(f"invalid id prefix {value!r}: 1-12 hex digits")
                prefix = value
            elif key in ("", "service"):
                service = validate.service_name(value)
            else:
                raise InputError(f"unknown filter {key!r}: use service:, status: or id:")
        return cls(service, status, prefix)

    def text(self) -> str:
        parts = [f"service:{self.service}" if self.service else "", f"status:{self.status}" if self.status else "",
                 f"id:{self.id_prefix}" if self.id_prefix else ""]
        return " ".join(p for p in parts if p)

    def matches(self, row: dict) -> bool:
        return ((not self.service or row["service"] == self.service) and
                (not self.status or row["status"] == self.status) and
                (not self.id_prefix or row["id"].startswith(self.id_prefix)))


@dataclass
class Snapshot:
    rows: list[dict]
    total: int
    status: dict
    events: list[dict]
    containers: list[dict] | None
    container_errors: list[str] = field(default_factory=list)
    fetch_ms: float = 0.0


def sort_rows(rows: list[dict], sort: str) -> list[dict]:
    newest = sorted(rows, key=lambda r: (-(r["created_at"] or 0), r["id"]))
    if sort == "status":
        return sorted(newest, key=lambda r: STATUS_RANK.get(r["status"], 9))
    if sort in ("service", "host"):
        return sorted(newest, key=lambda r: r[sort] or "")
    return newest


def deployment_cells(row: dict) -> tuple[str, ...]:
    """The plain text of one table row: id, service, status, phase, age, duration, cleanup, host."""
    return (row["id"], row["service"], row["status"], fmt.phase_progress(row["phase"], row["status"]),
            fmt.age(row["created_at"]), fmt.run_time(row), row.get("cleanup") or "-", row["host"])


class Poller:
    def __init__(self, engine, window: int = WINDOW):
        self.engine = engine
        self.window = window

    def deployments(self, flt: Filter, sort: str) -> tuple[list[dict], int]:
        eng = self.engine
        if flt.id_prefix:
            rows = [r for r in eng.deployments(status=flt.status, service=flt.service)
                    if r["id"].startswith(flt.id_prefix)]
            total = len(rows)
            rows = rows[:self.window]
        else:
            rows = eng.deployments(status=flt.status, service=flt.service, limit=self.window)
            total = self.count(flt)
        seen = {r["id"] for r in rows}
        for status in ACTIVE:
            if flt.status in (None, status):
                rows += [r for r in eng.deployments(status=status, service=flt.service)
                         if r["id"] not in seen and flt.matches(r)]
        return sort_rows(rows, sort), total

    @staticmethod
    def count(flt: Filter) -> int:
        from storage.models import Deployment, Service
        q = Deployment.select()
        if flt.service:
            q = q.join(Service).where(Service.name == flt.service)
        if flt.status:
            q = q.where(Deployment.status == flt.status)
        return q.count()

    def status(self) -> dict:
        if hasattr(self.engine, "status"):
            return self.engine.status()
        return fallback_status(self.engine)

    def events(self, since_id: int) -> list[dict]:
        return self.engine.events(since_id=since_id, limit=500)

    def containers(self) -> tuple[list[dict], list[str]]:
        # one call for every host: the store is read once, and a host that is down is reported, not fatal
        unreachable: dict[str, str] = {}
        try:
            rows = self.engine.containers(all=True, unreachable=unreachable)
        except Exception as e:  # anything else than a down host: the pane says what
            return [], [one_line(e)]
        return rows, [f"{host}: {error}" for host, error in unreachable.items()]

    def poll(self, flt: Filter, sort: str, since_id: int, containers: bool = True) -> Snapshot:
        t0 = time.perf_counter()
        try:
            rows, total = self.deployments(flt, sort)
            status = self.status()
            events = self.events(since_id)
            cons, errors = self.containers() if containers else (None, [])
        finally:
            self.release()
        return Snapshot(rows, total, status, events, cons, errors, (time.perf_counter() - t0) * 1000)

    def release(self) -> None:
        """Close this worker thread's store connection (each thread worker is a new thread)."""
        try:
            db = self.engine.store.db
            if not db.is_closed():
                db.close()
        except Exception:
            pass


def fallback_status(engine) -> dict:
    """The status bar's data from the store alone, for an engine without `status()`."""
    from storage.models import CleanupTask, Host, Lease
    lease = Lease.select().where(Lease.expires_at > now()).first()
    return {"leader": {"holder": lease.holder, "host": lease.holder_machine, "pid": lease.holder_pid,
                       "expires_at": lease.expires_at} if lease else None,
            "role": "none", "jobs": [],
            "cleanup_queue": CleanupTask.select().where(CleanupTask.state.in_(["pending", "running"])).count(),
            "hosts": [{"name": h.name, "url": h.url, "reachable": h.reachable, "last_error": h.last_error,
                       "last_seen_at": h.last_seen_at} for h in Host.select().order_by(Host.name)],
            "read_only": engine.settings.read_only, "last_reconcile_at": None, "next_reconcile_at": None}


def one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__
