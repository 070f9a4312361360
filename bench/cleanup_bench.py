"""Cleanup of 30 failed deployments x 2 running containers: our `Cleaner(engine.ctx).run_due()` (every log archived)
against (a) an operator's per-deployment shell loop `docker rm -f -v $(docker ps -aq --filter
label=deployer.deployment_id=<id>)`, (b) one bulk `docker rm -f -v <all 100 ids>` and (c) the floor: bare docker-py
`remove_container(force=True, v=True)` of the same ids in parallel, 4, 8 or 16 threads, no archive, no store. Then
the superseded-release cleanup at scale (bench/release_cleanup.py).

The same 60 containers (names and labels as the pipeline gives them, init, no restart, the base image running
busybox httpd; no published port unless BENCH_CLEANUP_PUBLISH=1) are re-created before every side; the sides run
interleaved, in a rotating order, for ROUNDS rounds (the floor's thread count rotates 4, 8, 16 across rounds; its
figure is the best count's), and the ratios are of the medians. Targets (issue 14): ours <= 1.10x (c) and <= 1.00x
(b); (issue 3) <= 0.65x (a). An extra, untimed run of ours under a CPU profiler says where our time goes.
"""
import os
import resource
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

try:
    from bench import benchlib as B
    from bench import profiling as P
    from bench import release_cleanup
except ModuleNotFoundError:  # run as `python bench/cleanup_bench.py`
    import benchlib as B
    import profiling as P
    import release_cleanup

from console.engine import deployments as D  # benchlib put the project on sys.path
from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.engine.docker_gateway import BASE_IMAGE
from console.engine.pipeline import container_name
from storage.clock import now
from storage.models import CleanupTask, Deployment, PhaseRun, Project, Service

# 30 x 2 (not the 50 x 2 of issue 3) keeps the four interleaved sides and the profiled run under 4 minutes on 2 busy
# cores, so the whole `make bench` stays under 15; BENCH_CLEANUP_DEPLOYMENTS=50 gives the older size.
DEPLOYMENTS = int(os.environ.get("BENCH_CLEANUP_DEPLOYMENTS", "30"))
PER_DEPLOYMENT = 2
ROUNDS = int(os.environ.get("BENCH_CLEANUP_ROUNDS", "3"))
SERVICE = "benchsvc"
PORT = 8080
# Publishing a port (as the pipeline does) adds the daemon's iptables/docker-proxy work to every removal on every side;
# the reference figures were measured without it, so by default the containers publish nothing.
PUBLISH = os.environ.get("BENCH_CLEANUP_PUBLISH", "0") == "1"
TARGET_LOOP = 0.65
TARGET_BULK = 1.00
TARGET_FLOOR = 1.10
FLOOR_THREADS = (4, 8, 16)
PROFILE = os.environ.get("BENCH_CLEANUP_PROFILE", "1") == "1"


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


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


OURS_CPU: list[float] = []  # CPU seconds of this process during each timed run of ours


def side_ours(engine, ids, cids) -> float:
    cleaner = Cleaner(engine.ctx)
    c0 = cpu_s()
    seconds, counts = B.timed(cleaner.run_due)
    OURS_CPU.append(cpu_s() - c0)
    if counts.get("done") != len(ids):
        raise RuntimeError(f"our cleanup did not finish every task: {counts}")
    return seconds


def side_floor(engine, ids, cids, threads: int) -> float:
    """The engine's own limit: bare docker-py removals of the same ids, `threads` at a time, one connection each."""
    import docker
    api = docker.from_env(timeout=600, max_pool_size=threads).api
    try:
        api.ping()  # the version handshake and a first connection before the clock starts
        with ThreadPoolExecutor(max_workers=threads) as pool:
            seconds, _ = B.timed(lambda: list(pool.map(lambda c: api.remove_container(c, force=True, v=True), cids)))
    finally:
        api.close()
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


SIDES = {"ours": side_ours, "loop": side_loop, "bulk": side_bulk, "floor": side_floor}

NOTES = [
    "Ours does more than the two shell sides: per deployment it lists the containers by label and re-checks the "
    "labels, archives every container's log (gzip, fsync) before removing it, lists the deployment's volumes, checks "
    "for its image, removes its release directory and writes its events and task state to the store.",
    "A forced removal of a running container is mostly the engine's work (kill, wait for exit, tear down the mount "
    "and network namespace); the figure for (b) is close to what the engine can do, so the ratio against (b) moves "
    "most with the machine's load.",
    "(c) is the engine's own limit for these removals: docker-py's remove_container(force=True, v=True) from a pool "
    "of 4, 8 or 16 threads (one connection each), nothing else; the count rotates across rounds and the best count's "
    "median is the floor. Ours does strictly more work than (b) and (c).",
    "The profile row is an extra, untimed run of ours under cProfile (each thread timed by its own CPU clock), with "
    "Docker HTTP requests and store statements counted per container.",
    "BENCH_CLEANUP_ROUNDS (default 3), BENCH_CLEANUP_DEPLOYMENTS (default 30), BENCH_CLEANUP_PROFILE=0 (no profiled "
    "run) and BENCH_CLEANUP_PUBLISH=1 (publish a port on 127.0.0.1 as the pipeline does, which adds iptables and "
    "docker-proxy work to every side) change the run.",
] + release_cleanup.NOTES


def fresh_round(engine, api, ids, specs, side: str, setup_s: list, loads: list) -> list[str]:
    if side == "ours":
        rearm(engine, ids)
    t0 = time.perf_counter()
    cids = create_containers(api, specs)
    setup_s.append(time.perf_counter() - t0)
    time.sleep(1.0)  # let docker-proxy and the daemon settle before the clock starts
    loads.append(os.getloadavg()[0])
    return cids


def profiled_run(engine, api, ids, specs) -> dict:
    """One more run of ours, untimed, under the CPU profiler and the counters."""
    rearm(engine, ids)
    create_containers(api, specs)
    time.sleep(1.0)
    counts = P.Counts(engine.store.db)
    with counts.installed(), counts.measuring(), P.cpu_profile() as prof:
        result = Cleaner(engine.ctx).run_due()
    if result.get("done") != len(ids):
        raise RuntimeError(f"profiled cleanup did not finish every task: {result}")
    prof["counts"] = counts
    return prof


def profile_note(prof: dict, n: int) -> str:
    stats = prof["stats"]
    parts = P.cumulative(stats, {
        "engine/docker_gateway.py:archive_logs": "log archive (fetch+gzip+fsync)",
        "engine/docker_gateway.py:remove_container": "removal calls",
        "engine/docker_gateway.py:list_managed": "container lists",
        "engine/docker_gateway.py:remove_image": "image checks",
        "engine/docker_gateway.py:list_volumes": "volume lists",
        "engine/deployments.py:event": "event writes",
        "storage/db.py:write": "write transactions",
    })
    top = "; ".join(f"{name} {tt * 1000:.0f} ms/{calls}" for name, tt, calls in P.top_functions(stats, 8))
    under = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
    return (f"profiled run (untimed): wall {prof['wall_s']:.2f} s, our CPU {prof['cpu_s']:.2f} s for {n} "
            f"containers; CPU under: {under}; own CPU by function: {top}; per container: {prof['counts'].per(n)}")


def run() -> list[dict]:
    started = time.perf_counter()
    load_start = B.load_note()
    times: dict[str, list[float]] = {k: [] for k in SIDES}
    floor_by_threads: dict[int, list[float]] = {t: [] for t in FLOOR_THREADS}
    loads, setup_s = [], []
    prof = None
    with B.temp_engine() as engine:
        api = B.docker_client().api
        ids = make_store_rows(engine)
        specs = container_specs(engine, ids)
        order = list(SIDES)
        for rnd in range(ROUNDS):
            for side in order[rnd % len(order):] + order[:rnd % len(order)]:
                cids = fresh_round(engine, api, ids, specs, side, setup_s, loads)
                if side == "floor":
                    threads = FLOOR_THREADS[rnd % len(FLOOR_THREADS)]
                    seconds = side_floor(engine, ids, cids, threads)
                    floor_by_threads[threads].append(seconds)
                    label = f"floor x{threads}"
                else:
                    seconds = SIDES[side](engine, ids, cids)
                    label = side
                left = remaining(api, engine.store_id)
                if left:
                    raise RuntimeError(f"{side}: {left} container(s) left after removal")
                times[side].append(seconds)
                B.log(f"cleanup round {rnd + 1}/{ROUNDS} {label}: {seconds:.2f} s (setup {setup_s[-1]:.1f} s)")
        if PROFILE:
            prof = profiled_run(engine, api, ids, specs)
        archived = len(list(engine.paths.archive_root().rglob("*.log.gz")))
    med = {k: B.median(v) for k, v in times.items()}
    measured = {t: B.median(v) for t, v in floor_by_threads.items() if v}
    best_threads = min(measured, key=measured.get)
    floor = measured[best_threads]
    per_round_a = [o / a for o, a in zip(times["ours"], times["loop"])]
    per_round_b = [o / b for o, b in zip(times["ours"], times["bulk"])]
    per_round_c = [o / c for o, c in zip(times["ours"], times["floor"])]
    n = DEPLOYMENTS * PER_DEPLOYMENT
    fmt = ", ".join
    note = (f"{ROUNDS} interleaved rounds; load avg {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cpus "
            f"during the rounds, {load_start} at start, {B.load_note()} at end")
    ratio_c = round(med["ours"] / floor, 3)
    ratio_b = round(med["ours"] / med["bulk"], 3)
    explain = profile_note(prof, n) if prof else "no profile (BENCH_CLEANUP_PROFILE=0)"
    rows = [
        B.info("cleanup: ours (Cleaner.run_due), median", med["ours"], "s",
               f"{DEPLOYMENTS} deployments x {PER_DEPLOYMENT} containers; rounds: "
               f"{fmt(f'{t:.2f}' for t in times['ours'])}; our CPU per run: {fmt(f'{c:.2f}' for c in OURS_CPU)} s; "
               f"{archived} logs archived"),
        B.info("cleanup: (a) per-deployment shell loop, median", med["loop"], "s",
               f"rounds: {fmt(f'{t:.2f}' for t in times['loop'])}"),
        B.info("cleanup: (b) one bulk docker rm -f -v, median", med["bulk"], "s",
               f"{n} ids; rounds: {fmt(f'{t:.2f}' for t in times['bulk'])}"),
        B.info("cleanup: (c) floor, bare docker-py in parallel, best", floor, "s",
               f"best at {best_threads} threads; by threads: "
               f"{fmt(f'{t}: ' + '/'.join(f'{x:.2f}' for x in v) for t, v in floor_by_threads.items() if v)}; "
               f"floor / bulk {floor / med['bulk']:.2f}x"),
        B.at_most("cleanup: ours / (a) shell loop", round(med["ours"] / med["loop"], 3), TARGET_LOOP, "×",
                  f"per round: {fmt(f'{r:.2f}' for r in per_round_a)}; {note}"),
        B.at_most("cleanup: ours / (b) bulk rm", ratio_b, TARGET_BULK, "×",
                  f"per round: {fmt(f'{r:.2f}' for r in per_round_b)}" +
                  ("" if ratio_b <= TARGET_BULK else f"; MISS: the floor measured here is {floor:.2f} s "
                   f"({floor / med['bulk']:.2f}x bulk); {explain}")),
        B.at_most("cleanup: ours / (c) floor", ratio_c, TARGET_FLOOR, "×",
                  f"per round (floor at that round's thread count): {fmt(f'{r:.2f}' for r in per_round_c)}" +
                  ("" if ratio_c <= TARGET_FLOOR else f"; MISS: floor {floor:.2f} s at {best_threads} threads; "
                   f"{explain}") + f"; total bench {time.perf_counter() - started:.0f} s"),
    ]
    if prof:
        rows.append(B.info("cleanup: where our time goes (profile)", prof["cpu_s"], "s CPU", explain))
    if os.environ.get("BENCH_RELEASES", "200") != "0":
        try:
            rows += release_cleanup.run()
        except Exception as e:  # its own error row; the figures above stand
            rows.append(B.error_row("superseded releases", e))
    return rows


if __name__ == "__main__":
    raise SystemExit(B.main(run, "cleanup benchmark"))
