"""One reconciliation pass with 100,000 deployments in a SQLite store and 300 managed containers, the same on the
PostgreSQL test server, and next to a naive pass that asks Docker once per deployment (`docker ps -a --filter
label=deployer.deployment_id=<id>` for each row), on the same data. Docker API calls are counted on the docker client's
HTTP session (a response hook), not estimated.

The data: 100 services; 100,000 deployments, most of them old (superseded, failed or cancelled with their cleanup done);
300 of them still have a container (created from deployer/base:busybox, not started): 200 superseded (kept as rollback
targets) and 100 degraded. A pass therefore observes and diffs everything and has nothing to act on, so every timed pass
does the same work. The naive side is timed on an evenly spread sample of the rows (1,000 by default,
BENCH_RECONCILE_NAIVE_SAMPLE=0 for all of them) and scaled up: its cost is linear in the rows by construction. The pass
is measured first with 1,000 deployments (the 300 included), then with 100,000, against the same containers, to show the
number of Docker calls does not depend on the number of deployments. The store side reads only what can need action (the
non-terminal rows, the open cleanup tasks, the active rollbacks, and the rows of the deployments Docker listed); the
bench prints the plan of every SELECT a pass runs (`EXPLAIN QUERY PLAN`, `EXPLAIN` on PostgreSQL). The PostgreSQL side
(a fresh database on `scripts/test-postgres`, started if needed) repeats the passes on the same shape of data with its
own 300 containers; it is skipped, with the reason, only when the server cannot start. Targets (issues 4 and 14): a pass
≤ 300 ms on SQLite and ≤ 500 ms on PostgreSQL at 100,000 deployments, Docker calls independent of the deployment count.
"""
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

try:
    from bench import benchlib as B
except ModuleNotFoundError:  # run as `python bench/reconcile_bench.py`
    import benchlib as B

from console.engine import labels as L  # benchlib put the project on sys.path
from console.engine import reconcile
from console.engine.docker_gateway import BASE_IMAGE
from console.engine.pipeline import container_name
from storage.clock import now
from storage.models import CleanupTask, Deployment, Project, Service

DEPLOYMENTS = int(os.environ.get("BENCH_RECONCILE_DEPLOYMENTS", "100000"))
SMALL = int(os.environ.get("BENCH_RECONCILE_SMALL", "1000"))
CONTAINERS = int(os.environ.get("BENCH_RECONCILE_CONTAINERS", "300"))
SERVICES = 100
PASSES = int(os.environ.get("BENCH_RECONCILE_PASSES", "7"))
# the naive pass asks Docker once per deployment: 10,000 calls take minutes on a busy machine, so by default it is
# measured on an evenly spread sample of the rows and scaled up linearly (set it to 0 to run every row)
NAIVE_SAMPLE = int(os.environ.get("BENCH_RECONCILE_NAIVE_SAMPLE", "500"))
TARGET_MS = {"SQLite": 300.0, "PostgreSQL": 500.0}
PLANS: list[str] = []     # printed, and written to RESULTS.md as notes


def _insert(engine, services, count: int, with_container: list[tuple[str, int, str]], offset: int) -> None:
    """`count` old deployments without containers (the rows a busy store accumulates), in bulk."""
    from tests.fixtures.seed import bulk_insert
    t = now() - 86400 * 30
    rows, tasks = [], []
    for i in range(count):
        dep_id = secrets.token_hex(6)
        status = ("superseded", "failed", "cancelled")[(i + offset) % 3]
        svc = services[(i + offset) % len(services)]
        at = t + (i + offset) * 10
        rows.append({"id": dep_id, "service": svc.id, "status": status, "host": "local", "phase": "HEALTH_CHECK",
                     "created_at": at, "updated_at": at, "finished_at": at})
        if status != "superseded":
            tasks.append({"deployment": dep_id, "reason": status, "state": "done", "due_at": at,
                          "created_at": at, "updated_at": at, "finished_at": at})
    with engine.store.write():
        bulk_insert(engine.store, Deployment, rows)
        bulk_insert(engine.store, CleanupTask, tasks)


def make_data(engine, client) -> list[str]:
    """Services, the deployments that keep a container, and their containers. Returns the container ids."""
    with engine.store.write():
        project, _ = Project.get_or_create(name="default")
        services = [Service.create(name=f"svc{i:03d}", project=project, source="/nonexistent")
                    for i in range(SERVICES)]
    keep = []
    t = now() - 3600
    with engine.store.write():
        for i in range(CONTAINERS):
            svc = services[i % SERVICES]
            dep_id = secrets.token_hex(6)
            status = "superseded" if i % 3 else "degraded"
            Deployment.insert(id=dep_id, service=svc.id, status=status, host="local", phase="HEALTH_CHECK",
                              created_at=t + i, updated_at=t + i, finished_at=t + i).execute()
            keep.append((dep_id, svc.project_id, svc.name))

    def create(item):
        dep_id, project_id, service = item
        return client.api.create_container(BASE_IMAGE, command=["true"], name=container_name(service, dep_id),
                                           labels=L.deployment_labels(engine.store_id, dep_id, service,
                                                                      project_id))["Id"]
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(create, keep))
    engine._bench_services = services
    return ids


def time_passes(engine, passes: int = PASSES) -> tuple[float, int, dict]:
    """Median milliseconds of `passes` reconcile passes, the Docker calls of one pass, the last pass's counts."""
    reconcile.run(engine.ctx, engine.pipeline)  # warm: the docker client's connection, SQLite's page cache
    times, calls, counts = [], set(), {}
    for _ in range(passes):
        seconds, result = B.timed(reconcile.run, engine.ctx, engine.pipeline)
        times.append(seconds * 1000)
        calls.add(result["docker_calls"])
        counts = result["counts"]
        assert not (result["orphans"] or result["zombies"] or result["deadlines"]), "the bench data needs no act"
        assert not [d for d in result["drift"] if d["action"] != "report"], result["drift"][:3]
    assert len(calls) == 1, f"a pass made a varying number of Docker calls: {calls}"
    return B.median(times), calls.pop(), counts


def naive_pass(engine) -> tuple[float, int, int, int]:
    """What a per-deployment reconciler does: for every deployment row, one label-filtered list call. Returns the
    milliseconds and Docker calls for all rows (scaled up from the sample when there is one), the rows measured,
    and the calls actually made."""
    gw = engine.hosts.gateway("local")
    counter = reconcile.CallCounter()
    counter.install(gw)
    with B.Timer() as query:
        rows = [r[0] for r in Deployment.select(Deployment.id).order_by(Deployment.id).tuples()]
    sample = rows if not NAIVE_SAMPLE or NAIVE_SAMPLE >= len(rows) else rows[::max(1, len(rows) // NAIVE_SAMPLE)]
    counter.attach()
    try:
        with B.Timer() as timer:
            for dep_id in sample:
                gw.list_managed(engine.store_id, dep_id)
    finally:
        counter.detach()
    scale = len(rows) / len(sample)
    return (query.seconds + timer.seconds * scale) * 1000, round(counter.calls * scale), len(sample), counter.calls


def measure(engine, client, store: str, naive: bool) -> list[dict]:
    """The small pass, the big pass (and the naive one) on one store; its rows, named with the store."""
    rows = []
    B.log(f"{store}: creating {CONTAINERS} containers (not started) and {SMALL:,} deployments")
    make_data(engine, client)
    services = engine._bench_services
    _insert(engine, services, SMALL - CONTAINERS, [], 0)
    small_ms, small_calls, _ = time_passes(engine)
    B.log(f"{store}: adding {DEPLOYMENTS - SMALL:,} deployments")
    seed_s, _ = B.timed(_insert, engine, services, DEPLOYMENTS - SMALL, [], SMALL)
    if not engine.store.is_sqlite:   # what autovacuum does after a bulk load, now rather than within a minute
        engine.store.db.execute_sql("ANALYZE")
    total = Deployment.select().count()
    big_ms, big_calls, counts = time_passes(engine)
    with B.captured_selects(engine.store.db) as selects:
        reconcile.run(engine.ctx, engine.pipeline)
    plans = B.query_plans(engine.store.db, selects, engine.store.is_sqlite)
    what = "EXPLAIN QUERY PLAN" if engine.store.is_sqlite else "EXPLAIN"
    PLANS.append(f"{store}: {what} of the {len(plans)} SELECTs of one pass at {total:,} deployments:\n\n"
                 + "\n".join("    " + line for p in plans for line in p.splitlines()))
    version = "" if engine.store.is_sqlite else f" (server {B.postgres_version(engine.store.db)})"
    note = (f"{total:,} deployments, {CONTAINERS} containers, 1 host; median of {PASSES}; {len(plans)} SELECTs "
            f"(plans in the notes){version}; {B.load_note()}")
    rows.append(B.at_most(f"reconcile pass on {store}, {total:,} deployments / {CONTAINERS} containers",
                          round(big_ms, 1), TARGET_MS[store], "ms", note))
    rows.append(B.row(f"reconcile Docker API calls on {store}, {total:,} deployments", big_calls, "calls",
                      "independent of deployments", big_calls == small_calls,
                      f"same as with {SMALL:,} deployments ({small_calls}): one container list + one volume "
                      f"list per host"))
    rows.append(B.info(f"reconcile pass on {store}, {SMALL:,} deployments / {CONTAINERS} containers",
                       round(small_ms, 1), "ms", f"{small_calls} Docker calls; {total:,} / {SMALL:,} rows cost "
                                                 f"{big_ms / small_ms:.2f}× the time"))
    rows.append(B.info(f"{store}: inserting {DEPLOYMENTS - SMALL:,} deployments and their cleanup tasks",
                       round(seed_s, 1), "s", "bulk insert (tests/fixtures/seed.py bulk_insert), once per store; "
                                              "then ANALYZE on PostgreSQL, as autovacuum would"))
    if naive:
        B.log(f"naive pass: one list call per deployment ({NAIVE_SAMPLE or total:,} measured)")
        naive_ms, naive_calls, measured, measured_calls = naive_pass(engine)
        how = (f"{naive_calls:,} Docker calls, one pass" if measured == total else
               f"{naive_calls:,} Docker calls; measured on {measured:,} evenly spread rows ({measured_calls:,} "
               f"calls) and scaled to {total:,}")
        rows.append(B.info(f"naive pass (one list call per deployment), {total:,} deployments",
                           round(naive_ms, 1), "ms", how))
        rows.append(B.info("naive / reconcile time", round(naive_ms / big_ms, 1), "×",
                           f"Docker calls {naive_calls:,} vs {big_calls}"))
    rows.append(B.info(f"reconcile pass counts on {store}", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
                       "", "a pass with nothing to act on: every timed pass does the same work"))
    engine._bench_ms = big_ms
    return rows


def run() -> list[dict]:
    rows, timings = [], {}
    PLANS.clear()
    client = B.docker_client()
    try:
        try:
            with B.temp_engine() as engine:
                rows += measure(engine, client, "SQLite", naive=True)
                timings["SQLite"] = engine._bench_ms
        except Exception as e:  # noqa: BLE001 - the bench reports its own failure as a row
            rows.append(B.error_row("reconcile_bench (SQLite)", e))
        url, why = B.postgres_database()
        if url is None:
            print(f"reconcile bench: PostgreSQL side skipped: {why}", flush=True)
            rows.append(B.info("reconcile pass on PostgreSQL", None, "", f"skipped: {why}"))
        else:
            try:
                with B.temp_engine(db=url) as engine:
                    rows += measure(engine, client, "PostgreSQL", naive=False)
                    timings["PostgreSQL"] = engine._bench_ms
            except Exception as e:  # noqa: BLE001
                rows.append(B.error_row("reconcile_bench (PostgreSQL)", e))
            finally:
                B.drop_postgres_database(url)
        if len(timings) == 2:
            fast = min(timings, key=timings.get)
            rows.append(B.info("reconcile pass: PostgreSQL / SQLite", round(timings["PostgreSQL"] / timings["SQLite"],
                                                                            2), "×",
                               f"{fast} wins: both read the same few rows through the same indexes (plans in the "
                               f"notes); SQLite answers in-process, PostgreSQL adds a socket round trip per "
                               f"statement and the server's own work"))
    finally:
        client.close()
    for p in PLANS:
        print(p, flush=True)
    NOTES[:] = PLANS + NOTES_FIXED
    return rows


NOTES_FIXED = ["Docker calls are counted on the docker client's HTTP session, not estimated."]
NOTES: list[str] = []


if __name__ == "__main__":
    raise SystemExit(B.main(run, "reconcile: one pass vs one Docker call per deployment"))
