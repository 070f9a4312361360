"""Helpers every benchmark shares: result rows, timing, medians, the printed table, a throw-away engine whose
Docker resources are removed afterwards, and a description of the machine.

Run a bench directly (`python bench/cleanup_bench.py` or `python -m bench.cleanup_bench`); `main(run)` prints its
rows. A bench only touches Docker resources labelled with its own temporary store's id.
"""
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ first on the path, not the project
    sys.path.insert(0, str(ROOT))

ROW_KEYS = ("name", "value", "unit", "target", "passed", "note")


# ---- rows
def row(name: str, value, unit: str = "", target: str = "", passed: bool | None = None, note: str = "") -> dict:
    return {"name": name, "value": value, "unit": unit, "target": target, "passed": passed, "note": note}


def at_most(name: str, value: float, limit: float, unit: str = "", note: str = "", fmt: str = "{:g}") -> dict:
    """A figure that passes when value <= limit (target text "≤ limit unit")."""
    return row(name, value, unit, f"≤ {fmt.format(limit)}{unit if unit in ('×', '%') else ' ' + unit if unit else ''}",
               value <= limit, note)


def at_least(name: str, value: float, limit: float, unit: str = "", note: str = "", fmt: str = "{:g}") -> dict:
    """A figure that passes when value >= limit (target text "≥ limit unit")."""
    return row(name, value, unit, f"≥ {fmt.format(limit)}{unit if unit in ('×', '%') else ' ' + unit if unit else ''}",
               value >= limit, note)


def info(name: str, value, unit: str = "", note: str = "") -> dict:
    """A figure measured for context, with no target."""
    return row(name, value, unit, "", None, note)


def error_row(bench: str, exc: BaseException) -> dict:
    last = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
    return row(f"{bench}: error", None, "", "runs", False, last[:300])


# ---- timing
class Timer:
    """`with Timer() as t: ...` then t.seconds."""
    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = None
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def median(values) -> float:
    return statistics.median(values)


def cpu_speed_us() -> float:
    """How fast one core runs Python right now: microseconds for `sum(range(1000))`, best of 5 (a few tens of
    microseconds on an idle modern core; several times more when the machine is overloaded)."""
    import timeit
    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def load_note() -> str:
    """The machine's load right now, for notes (other people's tests run beside the benches)."""
    try:
        one, five, _ = os.getloadavg()
        return f"load {one:.1f}/{five:.1f} (1/5 min) on {os.cpu_count()} cpus"
    except OSError:
        return ""


def fmt_value(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.3f}"
    return str(v)


def verdict(passed) -> str:
    return "PASS" if passed is True else "FAIL" if passed is False else "-"


# ---- printing
def table(rows: list[dict]) -> str:
    """A plain-text table of result rows (for the terminal)."""
    cells = [("figure", "value", "target", "result", "note")]
    for r in rows:
        value = fmt_value(r.get("value")) + (f" {r['unit']}" if r.get("unit") and r.get("value") is not None else "")
        cells.append((str(r.get("name", "")), value, str(r.get("target") or ""), verdict(r.get("passed")),
                      str(r.get("note") or "")))
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for i, c in enumerate(cells):
        lines.append("  ".join(c[j].ljust(widths[j]) for j in range(4)) + "  " + c[4])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    out = ["| figure | value | target | result | note |", "|---|---:|---|---|---|"]
    for r in rows:
        value = fmt_value(r.get("value")) + (f" {r['unit']}" if r.get("unit") and r.get("value") is not None else "")
        note = str(r.get("note") or "").replace("|", "\\|").replace("\n", " ")
        out.append(f"| {r.get('name', '')} | {value} | {r.get('target') or ''} | {verdict(r.get('passed'))} | {note} |")
    return "\n".join(out)


def log(msg: str) -> None:
    """Progress on stderr, so stdout stays the result table."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(run, title: str | None = None) -> int:
    """The `__main__` of a bench: run it and print its rows; exit 1 when a figure misses its target."""
    started = time.perf_counter()
    rows = run()
    if title:
        print(title)
    print(table(rows))
    print(f"({time.perf_counter() - started:.0f} s; {load_note()})")
    return 1 if any(r.get("passed") is False for r in rows) else 0


# ---- a throw-away engine
def docker_client(timeout: float = 120):
    import docker
    return docker.from_env(timeout=timeout)


def purge_store_resources(client, store_id: str) -> int:
    """Remove containers, volumes and images carrying `deployer.store=<store_id>` (only those). Returns the count."""
    import docker.errors

    from console.engine import labels as L
    flt = {"label": [f"{L.STORE}={store_id}"]}
    n = 0
    for c in client.api.containers(all=True, filters=flt):
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_container(c["Id"], force=True, v=True)
            n += 1
    for v in (client.api.volumes(filters=flt) or {}).get("Volumes") or []:
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_volume(v["Name"], force=True)
            n += 1
    for img in client.api.images(filters=flt):
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_image(img["Id"], force=True)
            n += 1
    return n


@contextlib.contextmanager
def temp_engine(**overrides):
    """An Engine on a fresh data dir (SQLite) and the default Docker host; on exit everything labelled with its
    store id is removed from Docker and the data dir is deleted."""
    from console import config
    from console.engine.core import Engine
    from console.engine.docker_gateway import Gateway
    tmp = Path(tempfile.mkdtemp(prefix="deployer-bench-"))
    settings = config.load(data_dir=str(tmp / "data"), **overrides)
    engine = Engine(settings)
    client = docker_client()
    try:
        Gateway("local", client).ensure_base_image()
        yield engine
    finally:
        store_id = engine.store_id
        engine.close()
        try:
            purge_store_resources(client, store_id)
        finally:
            client.close()
            shutil.rmtree(tmp, ignore_errors=True)


# ---- the machine
def machine() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    docker_version = ""
    with contextlib.suppress(Exception):
        client = docker_client(timeout=10)
        v = client.version()
        docker_version = f"{v.get('Version')} (API {v.get('ApiVersion')})"
        with contextlib.suppress(Exception):
            i = client.info()
            docker_version += f", {i.get('Driver')}, cgroup v{i.get('CgroupVersion')}"
        client.close()
    sqlite_version = ""
    with contextlib.suppress(Exception):
        import sqlite3
        sqlite_version = sqlite3.sqlite_version
    return {"cpus": os.cpu_count(), "cpu model": model or platform.processor() or "?", "memory": mem or "?",
            "kernel": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "sqlite": sqlite_version or "?", "docker": docker_version or "unreachable"}


def run_cmd(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


# ---- PostgreSQL (issue 14: the store and reconcile benches also run against the test server)
def postgres_database() -> tuple[str | None, str]:
    """(URL of a fresh database on the test PostgreSQL server, "") or (None, why not). `scripts/test-postgres url`
    starts the server when it is not up (`up` first, so a cluster that needs installing says so)."""
    script = str(ROOT / "scripts" / "test-postgres")
    status = run_cmd(["bash", script, "status"], timeout=30)
    if "up" not in (status.stdout or "").split():
        up = run_cmd(["bash", script, "up"], timeout=300)
        if up.returncode != 0:
            return None, f"`scripts/test-postgres up` failed: {(up.stderr or up.stdout).strip().splitlines()[-1:]}"
    got = run_cmd(["bash", script, "url"], timeout=120)
    url = (got.stdout or "").strip().splitlines()[-1:] if got.returncode == 0 else []
    if not url or not url[0].startswith("postgresql://"):
        return None, f"`scripts/test-postgres url` failed: {(got.stderr or got.stdout).strip()[-200:]}"
    return url[0], ""


def drop_postgres_database(url: str) -> None:
    """Drop a database postgres_database() made (from the server's `postgres` database; connections forced out)."""
    from urllib.parse import urlparse, urlunparse

    import psycopg2
    parts = urlparse(url)
    with contextlib.suppress(Exception):
        conn = psycopg2.connect(urlunparse(parts._replace(path="/postgres")), connect_timeout=10)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
        finally:
            conn.close()


def postgres_version(db) -> str:
    with contextlib.suppress(Exception):
        return db.execute_sql("SHOW server_version").fetchone()[0]
    return "?"


@contextlib.contextmanager
def captured_selects(db):
    """The SELECT statements (sql, params) a block runs through `db.execute_sql`, in order, distinct by SQL."""
    seen: dict[str, tuple] = {}
    original = db.execute_sql

    def spy(sql, params=None, *args, **kwargs):
        if sql.lstrip().upper().startswith("SELECT") and sql not in seen:
            seen[sql] = tuple(params or ())
        return original(sql, params, *args, **kwargs)
    db.execute_sql = spy
    try:
        yield seen
    finally:
        del db.execute_sql    # back to the class's method


def query_plans(db, statements: dict, is_sqlite: bool) -> list[str]:
    """`EXPLAIN QUERY PLAN` (SQLite) or `EXPLAIN` (PostgreSQL) of each statement: one block of text per query."""
    out = []
    for sql, params in statements.items():
        explain = "EXPLAIN QUERY PLAN " if is_sqlite else "EXPLAIN "
        rows = db.execute_sql(explain + sql, params).fetchall()
        plan = [f"{r[3]}" for r in rows] if is_sqlite else [r[0] for r in rows]
        plan = [line if len(line) <= 200 else line[:197] + "..." for line in plan]   # an IN list of 300 ids
        short = " ".join(sql.split())
        short = short if len(short) <= 160 else short[:157] + "..."
        out.append(f"{short}\n    " + "\n    ".join(plan))
    return out
