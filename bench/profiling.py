"""Where our process spends a timed run: CPU by function (cProfile in every thread, timed by each thread's own CPU
clock), Docker API calls by kind and store writes, counted while the run lasts. Used by the cleanup benches to show
what is left of our time once the engine's own work (the floor) is taken away.

The counters are cheap (a dict increment per HTTP request or SQL statement) and run in the timed rounds; the CPU
profile slows Python down, so a bench takes it in a separate, untimed run.
"""
import contextlib
import cProfile
import pstats
import re
import resource
import sys
import threading
import time
from collections import Counter

_ID = re.compile(r"/[0-9a-f]{12,64}(?=/|$)")
_VERSION = re.compile(r"^/v[0-9.]+")


def _kind(method: str, url: str) -> str:
    path = url.split("://", 1)[-1]
    path = "/" + path.split("/", 1)[1] if "/" in path else path
    path = _VERSION.sub("", path.split("?", 1)[0])
    path = _ID.sub("/ID", path)
    m = re.match(r"^/(images|containers|volumes)/(.+?)(/(json|logs|start|stop|kill|wait|archive|history|tag))?$", path)
    if m and m[2] not in ("json", "create", "prune"):
        path = f"/{m[1]}/REF{m[3] or ''}"
    return f"{method} {path}"


class Counts:
    """Docker HTTP requests (by method and path, ids folded) and store statements (writes, transactions, autocommit
    writes) made by this process between start() and stop()."""

    def __init__(self, db):
        self.db = db
        self.docker: Counter = Counter()
        self.sql = Counter()
        self._on = False
        self._lock = threading.Lock()

    def _count(self, counter, key):
        if self._on:
            with self._lock:
                counter[key] += 1

    @contextlib.contextmanager
    def installed(self):
        import requests
        send = requests.Session.send
        execute_sql = self.db.execute_sql
        counts = self

        def counting_send(session, request, **kwargs):
            counts._count(counts.docker, _kind(request.method, request.url))
            return send(session, request, **kwargs)

        def counting_execute(sql, params=None, *args, **kwargs):
            head = sql.lstrip()[:16].upper()
            if head.startswith(("INSERT", "UPDATE", "DELETE")):
                counts._count(counts.sql, "write statements")
                if not counts.db.in_transaction():
                    counts._count(counts.sql, "autocommit writes")
            elif head.startswith("BEGIN"):
                counts._count(counts.sql, "write transactions" if "IMMEDIATE" in head else "transactions")
            elif head.startswith("SELECT"):
                counts._count(counts.sql, "reads")
            return execute_sql(sql, params, *args, **kwargs)

        requests.Session.send = counting_send
        self.db.execute_sql = counting_execute
        try:
            yield self
        finally:
            requests.Session.send = send
            with contextlib.suppress(AttributeError):
                del self.db.execute_sql

    @contextlib.contextmanager
    def measuring(self):
        self._on = True
        try:
            yield self
        finally:
            self._on = False

    def docker_total(self) -> int:
        return sum(self.docker.values())

    def per(self, n: int) -> str:
        """'a/b/c per container' lines, for a note."""
        d = ", ".join(f"{k} {v / n:.2f}" for k, v in self.docker.most_common())
        s = ", ".join(f"{k} {v / n:.2f}" for k, v in self.sql.most_common())
        return f"Docker calls {self.docker_total() / n:.2f} ({d}); store: {s}"


@contextlib.contextmanager
def cpu_profile():
    """cProfile in this thread and every thread started meanwhile, each timed by its own CPU clock. Yields a dict
    that holds, once the block is left, `stats` (pstats.Stats) and `cpu_s` / `wall_s` of the process."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(frame, event, arg):
        p = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(p)
        sys.setprofile(None)
        p.enable()

    out: dict = {}
    main = cProfile.Profile(time.thread_time)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.perf_counter()
    threading.setprofile(start_in_thread)
    main.enable()
    try:
        yield out
    finally:
        main.disable()
        threading.setprofile(None)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        out["wall_s"] = time.perf_counter() - w0
        out["cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        stats = pstats.Stats(main)
        with lock:
            for p in profiles:
                with contextlib.suppress(TypeError, ValueError):  # a thread that never ran Python code
                    p.snapshot_stats()
                    stats.add(p)
        out["stats"] = stats


def top_functions(stats: pstats.Stats, n: int = 10) -> list[tuple[str, float, int]]:
    """(function, own CPU seconds, calls), most CPU first."""
    rows = []
    for (file, line, name), (cc, nc, tt, ct, callers) in stats.stats.items():
        short = file.rsplit("/site-packages/", 1)[-1].rsplit("/lib/python3", 1)[-1]
        short = short.split("/wt/", 1)[-1] if "/wt/" in short else short
        rows.append((f"{short}:{line}({name})" if line else name, tt, nc))
    rows.sort(key=lambda r: -r[1])
    return rows[:n]


def cumulative(stats: pstats.Stats, names: dict[str, str]) -> dict[str, float]:
    """CPU seconds under (cumulative) each function whose `file:name` ends with one of `names`' keys."""
    out = {}
    for (file, _line, fname), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        for key, label in names.items():
            f, _, n = key.partition(":")
            if file.endswith(f) and fname == n:
                out[label] = out.get(label, 0.0) + ct
    return out
