"""One reconciliation pass with 10,000 deployments in a SQLite store and 300 managed containers, next to a naive pass
that asks Docker once per deployment (`docker ps -a --filter label=deployer.deployment_id=<id>` for each row), on
the same data. Docker API calls are counted on the docker client's HTTP session (a response hook), not estimated.

The data: 100 services; 10,000 deployments, most of them old (superseded, failed or cancelled with their cleanup
done); 300 of them still have a container (created from deployer/base:busybox, not started): 200 superseded (kept
as rollback targets) and 100 degraded. A pass therefore observes and diffs everything and has nothing to act on, so
every timed pass does the same work. The naive side is timed on an evenly spread sample of the rows (1,000 by
default, BENCH_RECONCILE_NAIVE_SAMPLE=0 for all 10,000) and scaled up: its cost is linear in the rows by
construction. The pass is measured first with 1,000 deployments (the 300 included), then with 10,000, against the
same containers, to show the number of Docker calls does not depend on the number of deployments.
Target (issue 4): a pass ≤ 250 ms, Docker calls independent of the deployment count.
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

DEPLOYMENTS = int(os.environ.get("BENCH_RECONCILE_DEPLOYMENTS", "10000"))
SMALL = int(os.environ.get("BENCH_RECONCILE_SMALL", "1000"))
CONTAINERS = int(os.environ.get("BENCH_RECONCILE_CONTAINERS", "300"))
SERVICES = 100
PASSES = int(os.environ.get("BENCH_RECONCILE_PASSES", "7"))
# the naive pass asks Docker once per deployment: 10,000 calls take minutes on a busy machine, so by default it is
# measured on an evenly spread sample of the rows and scaled up linearly (set it to 0 to run every row)
NAIVE_SAMPLE = int(os.environ.get("BENCH_RECONCILE_NAIVE_SAMPLE", "1000"))
TARGET_MS = 250.0


def _insert(engine, services, count: int, with_container: list[tuple[str, int, str]], offset: int) -> None:
    """`count` old deployments without containers (the rows a busy store accumulates), in bulk."""
    t = now() - 86400
    rows, tasks = [], []
    for i in range(count):
        dep_id = secrets.token_hex(6)
        status = ("superseded", "failed", "cancelled")[(i + offset) % 3]
        svc = services[(i + offset) % len(services)]
        rows.append({"id": dep_id, "service": svc.id, "status": status, "host": "local", "phase": "HEALTH_CHECK",
                     "created_at": t + i, "updated_at": t + i, "finished_at": t + i})
        if status != "superseded":
            tasks.append({"deployment": dep_id, "reason": status, "state": "done", "due_at": t + i,
                          "created_at": t + i, "updated_at": t + i, "finished_at": t + i})
    with engine.store.write():
        for start in range(0, len(rows), 500):
            Deployment.insert_many(rows[start:start + 500]).execute()
        for start in range(0, len(tasks), 500):
            CleanupTask.insert_many(tasks[start:start + 500]).execute()


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
    reconcile.run(engine)  # warm: the docker client's connection, SQLite's page cache
    times, calls, counts = [], set(), {}
    for _ in range(passes):
        seconds, result = B.timed(reconcile.run, engine)
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


def run() -> list[dict]:
    rows = []
    client = B.docker_client()
    try:
        with B.temp_engine() as engine:
            B.log(f"creating {CONTAINERS} containers (not started) and {SMALL:,} deployments")
            make_data(engine, client)
            services = engine._bench_services
            _insert(engine, services, SMALL - CONTAINERS, [], 0)
            small_ms, small_calls, _ = time_passes(engine)
            B.log(f"adding {DEPLOYMENTS - SMALL:,} deployments")
            _insert(engine, services, DEPLOYMENTS - SMALL, [], SMALL)
            total = Deployment.select().count()
            big_ms, big_calls, counts = time_passes(engine)
            B.log(f"naive pass: one list call per deployment ({NAIVE_SAMPLE or total:,} measured)")
            naive_ms, naive_calls, measured, measured_calls = naive_pass(engine)
            how = (f"{naive_calls:,} Docker calls, one pass" if measured == total else
                   f"{naive_calls:,} Docker calls; measured on {measured:,} evenly spread rows ({measured_calls:,} "
                   f"calls) and scaled to {total:,}")
            note = f"{total:,} deployments, {CONTAINERS} containers, 1 host; median of {PASSES}; {B.load_note()}"
            rows.append(B.at_most(f"reconcile pass, {total:,} deployments / {CONTAINERS} containers", round(big_ms, 1),
                                  TARGET_MS, "ms", note))
            rows.append(B.row(f"reconcile Docker API calls, {total:,} deployments", big_calls, "calls",
                              "independent of deployments", big_calls == small_calls,
                              f"same as with {SMALL:,} deployments ({small_calls}): one container list + one volume "
                              f"list per host"))
            rows.append(B.info(f"reconcile pass, {SMALL:,} deployments / {CONTAINERS} containers", round(small_ms, 1),
                               "ms", f"{small_calls} Docker calls"))
            rows.append(B.info(f"naive pass (one list call per deployment), {total:,} deployments",
                               round(naive_ms, 1), "ms", how))
            rows.append(B.info("naive / reconcile time", round(naive_ms / big_ms, 1), "×",
                               f"Docker calls {naive_calls:,} vs {big_calls}"))
            rows.append(B.info("reconcile pass counts", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
                               "", "a pass with nothing to act on: every timed pass does the same work"))
    except Exception as e:  # noqa: BLE001 - the bench reports its own failure as a row
        rows.append(B.error_row("reconcile_bench", e))
    finally:
        client.close()
    return rows


if __name__ == "__main__":
    raise SystemExit(B.main(run, "reconcile: one pass vs one Docker call per deployment"))
