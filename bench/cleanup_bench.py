"""Cleanup of 50 failed deployments x 2 running containers: our `Cleaner(engine.ctx).run_due()` against (a) an
operator's per-deployment shell loop `docker rm -f -v $(docker ps -aq --filter label=deployer.deployment_id=<id>)`
and (b) one bulk `docker rm -f -v <all 100 ids>`.

The same 100 containers (names and labels as the pipeline gives them, init, no restart, the base image running
busybox httpd; no published port unless BENCH_CLEANUP_PUBLISH=1) are re-created before every side; the sides run
interleaved, in a rotating order, for ROUNDS rounds, and the ratios are of the medians.
Targets (issue 3): ours <= 0.65x of (a) and <= 0.85x of (b).
"""
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

try:
    from bench import benchlib as B
except ModuleNotFoundError:  # run as `python bench/cleanup_bench.py`
    import benchlib as B

from console.engine import deployments as D  # benchlib put the project on sys.path
from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.engine.docker_gateway import BASE_IMAGE
from console.engine.pipeline import container_name
from storage.clock import now
from storage.models import CleanupTask, Deployment, PhaseRun, Project, Service

DEPLOYMENTS = int(os.environ.get("BENCH_CLEANUP_DEPLOYMENTS", "50"))
PER_DEPLOYMENT = 2
ROUNDS = int(os.environ.get("BENCH_CLEANUP_ROUNDS", "3"))
SERVICE = "benchsvc"
PORT = 8080
# Publishing a port (as the pipeline does) adds the daemon's iptables/docker-proxy work to every removal on every side;
# the reference figures were measured without it, so by default the containers publish nothing.
PUBLISH = os.environ.get("BENCH_CLEANUP_PUBLISH", "0") == "1"
TARGET_LOOP = 0.65
TARGET_BULK = 0.85


def make_store_rows(engine) -> list[str]:
    """A service and DEPLOYMENTS deployments that got as far as creating their container, then failed: each has
    its pending CleanupTask (written by the status move, as in production)."""
    with engine.store.write():
        project, _ = Project.get_or_create(name="default")
        svc = Service.create(name=SERVICE, project=project, source="/nonexistent", port=PORT)
    ids = []
    for i in range(DEPLOYMENTS):
        dep_id = f"{os.urandom(6).hex()}"
        with engine.store.write():
            Deployment.create(id=dep_id, service=svc, status="deploying", host="local", phase="HEALTH_CHECK",
                              started_at=now())
            for phase in ("PULLING_SOURCE", "BUILDING", "COPYING_FILES", "CREATING_SYMLINKS", "UPDATING_ROUTES",
                          "HEALTH_CHECK"):
                PhaseRun.create(deployment=dep_id, phase=phase, finished_at=now(),
                                outcome="failed" if phase == "HEALTH_CHECK" else "done")
        D.move(engine.store, dep_id, "failed", error="health check failed (bench)")
        ids.append(dep_id)
    return ids


def rearm(engine, ids: list[str]) -> None:
    """Make every task due again, as if the deployments had just failed, and give each a release directory."""
    with engine.store.write():
        CleanupTask.update(state="pending", due_at=now(), attempts=0, last_error=None, finished_at=None,
                           updated_at=now()).where(CleanupTask.deployment.in_(ids)).execute()
    for dep_id in ids:
        release = engine.paths.ensure(engine.paths.release(dep_id))
        (release / "release.json").write_text('{"bench": true}\n')


def container_specs(engine, ids: list[str]) -> list[tuple[str, dict]]:
    project_id = Service.get(Service.name == SERVICE).project_id
    specs = []
    for dep_id in ids:
        labels = L.deployment_labels(engine.store_id, dep_id, SERVICE, project_id)
        specs.append((container_name(SERVICE, dep_id), labels))
        for k in range(1, PER_DEPLOYMENT):
            specs.append((f"{container_name(SERVICE, dep_id)}-w{k}", labels))
    return specs


def create_containers(api, specs) -> list[str]:
    """Create and start the containers (the pipeline's host config: init, restart no; a published port only with
    BENCH_CLEANUP_PUBLISH=1); returns their ids once all are running."""
    def one(spec):
        name, labels = spec
        host_config = api.create_host_config(port_bindings={f"{PORT}/tcp": ("127.0.0.1", None)} if PUBLISH else None,
                                             init=True, restart_policy={"Name": "no"})
        c = api.create_container(image=BASE_IMAGE, name=name, labels=labels, ports=[PORT] if PUBLISH else None,
                                 host_config=host_config,
                                 command=["sh", "-c", f"echo {name} serving on {PORT}; exec httpd -f -p {PORT} -h /"])
        api.start(c["Id"])
        return c["Id"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        cids = list(pool.map(one, specs))
    return cids


def remaining(api, store_id: str) -> int:
    return len(api.containers(all=True, filters={"label": [f"{L.STORE}={store_id}"]}))


def side_ours(engine, ids, cids) -> float:
    cleaner = Cleaner(engine.ctx)
    seconds, counts = B.timed(cleaner.run_due)
    if counts.get("done") != len(ids):
        raise RuntimeError(f"our cleanup did not finish every task: {counts}")
    return seconds


def side_loop(engine, ids, cids) -> float:
    script = ('for id in "$@"; do docker rm -f -v $(docker ps -aq --filter label=deployer.deployment_id=$id) '
              '>/dev/null; done')
    seconds, proc = B.timed(subprocess.run, ["bash", "-c", script, "loop", *ids], capture_output=True, text=True,
                            timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"shell loop failed: {proc.stderr.strip()[-300:]}")
    return seconds


def side_bulk(engine, ids, cids) -> float:
    seconds, proc = B.timed(subprocess.run, ["docker", "rm", "-f", "-v", *cids], capture_output=True, text=True,
                            timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bulk docker rm failed: {proc.stderr.strip()[-300:]}")
    return seconds


SIDES = {"ours": side_ours, "loop": side_loop, "bulk": side_bulk}

NOTES = [
    "Ours does more than the two shell sides: per deployment it lists the containers by label and re-checks the "
    "labels, archives every container's log (gzip, fsync) before removing it, lists the deployment's volumes, checks "
    "for its image, removes its release directory and writes its events and task state to the store.",
    "A forced removal of a running container is mostly the engine's work (kill, wait for exit, tear down the mount "
    "and network namespace); the figure for (b) is close to what the engine can do, so the ratio against (b) moves "
    "most with the machine's load.",
    "BENCH_CLEANUP_ROUNDS (default 3), BENCH_CLEANUP_DEPLOYMENTS (default 50) and BENCH_CLEANUP_PUBLISH=1 (publish a "
    "port on 127.0.0.1 as the pipeline does, which adds iptables and docker-proxy work to every side) change the run.",
]


def run() -> list[dict]:
    started = time.perf_counter()
    times: dict[str, list[float]] = {k: [] for k in SIDES}
    loads = []
    with B.temp_engine() as engine:
        api = B.docker_client().api
        ids = make_store_rows(engine)
        specs = container_specs(engine, ids)
        order = list(SIDES)
        setup_s = []
        for rnd in range(ROUNDS):
            for side in order[rnd % len(order):] + order[:rnd % len(order)]:
                if side == "ours":
                    rearm(engine, ids)
                t0 = time.perf_counter()
                cids = create_containers(api, specs)
                setup_s.append(time.perf_counter() - t0)
                time.sleep(1.0)  # let docker-proxy and the daemon settle before the clock starts
                loads.append(os.getloadavg()[0])
                seconds = SIDES[side](engine, ids, cids)
                left = remaining(api, engine.store_id)
                if left:
                    raise RuntimeError(f"{side}: {left} container(s) left after removal")
                times[side].append(seconds)
                B.log(f"cleanup round {rnd + 1}/{ROUNDS} {side}: {seconds:.2f} s (setup {setup_s[-1]:.1f} s)")
        archived = len(list(engine.paths.archive_root().rglob("*.log.gz")))
    med = {k: B.median(v) for k, v in times.items()}
    per_round_a = [o / a for o, a in zip(times["ours"], times["loop"])]
    per_round_b = [o / b for o, b in zip(times["ours"], times["bulk"])]
    n = DEPLOYMENTS * PER_DEPLOYMENT
    fmt = ", ".join
    note = (f"{ROUNDS} interleaved rounds; load avg {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cpus "
            f"(other test suites running)")
    return [
        B.info("cleanup: ours (Cleaner.run_due), median", med["ours"], "s",
               f"{DEPLOYMENTS} deployments x {PER_DEPLOYMENT} containers; rounds: "
               f"{fmt(f'{t:.2f}' for t in times['ours'])}; {archived} logs archived"),
        B.info("cleanup: (a) per-deployment shell loop, median", med["loop"], "s",
               f"rounds: {fmt(f'{t:.2f}' for t in times['loop'])}"),
        B.info("cleanup: (b) one bulk docker rm -f -v, median", med["bulk"], "s",
               f"{n} ids; rounds: {fmt(f'{t:.2f}' for t in times['bulk'])}"),
        B.at_most("cleanup: ours / (a) shell loop", round(med["ours"] / med["loop"], 3), TARGET_LOOP, "×",
                  f"per round: {fmt(f'{r:.2f}' for r in per_round_a)}; {note}"),
        B.at_most("cleanup: ours / (b) bulk rm", round(med["ours"] / med["bulk"], 3), TARGET_BULK, "×",
                  f"per round: {fmt(f'{r:.2f}' for r in per_round_b)}; "
                  f"total bench {time.perf_counter() - started:.0f} s"),
    ]


if __name__ == "__main__":
    raise SystemExit(B.main(run, "cleanup benchmark"))
