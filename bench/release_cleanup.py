"""Superseded-release cleanup at scale (issue 14, item 4): RELEASES superseded releases of SERVICES services, each a
stopped container and its own image (as a pipeline leaves them), cleaned through the retention path --
`Cleaner.retention()` queues the releases beyond `keep_releases`, `Cleaner.run_due()` archives each container's log and
removes container, image and release directory -- against an operator's bulk `docker rm -v <all containers>` then
`docker rmi <all images>` of the same objects, interleaved in the same rounds.

The images are made in one `docker load` of a tarball that holds one config per release on the base image's layer
(labels differ, so every release has its own image id, as a build gives); the containers are created from them and
not started ("Created", a stopped container that never ran: its removal is the same unmount and delete).
"""
import hashlib
import io
import json
import os
import resource
import tarfile
import time

try:
    from bench import benchlib as B
    from bench import profiling as P
except ModuleNotFoundError:  # run as `python bench/cleanup_bench.py`
    import benchlib as B
    import profiling as P

from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.engine.docker_gateway import BASE_IMAGE
from console.engine.pipeline import container_name, image_tag
from storage.clock import now
from storage.models import CleanupTask, Deployment, Project, Service

RELEASES = int(os.environ.get("BENCH_RELEASES", "200"))
SERVICES = int(os.environ.get("BENCH_RELEASES_SERVICES", "10"))
ROUNDS = int(os.environ.get("BENCH_RELEASES_ROUNDS", "2"))
TARGET_BULK = 1.00


def make_store_rows(engine) -> list[tuple[str, str, int]]:
    """SERVICES services, each with RELEASES/SERVICES superseded releases beyond the newest one (kept: keep_releases=1,
    and it has nothing in Docker). Returns (service, deployment id, project id) of the releases to clean."""
    engine.settings.cleanup.keep_releases = 1
    per = max(1, RELEASES // SERVICES)
    out = []
    with engine.store.write():
        project, _ = Project.get_or_create(name="default")
        t0 = now() - 3600
        for s in range(SERVICES):
            svc = Service.create(name=f"relsvc{s}", project=project, source="/nonexistent", port=8080)
            for k in range(per + 1):
                dep_id = os.urandom(6).hex()
                Deployment.create(id=dep_id, service=svc, status="superseded", host="local",
                                  image=image_tag(svc.name, dep_id), created_at=t0 + k, updated_at=t0 + k,
                                  started_at=t0 + k, finished_at=t0 + k)
                if k < per:  # the newest (k == per) is the one kept
                    out.append((svc.name, dep_id, project.id))
    return out


def rearm(engine, releases) -> None:
    """As if the releases had just been superseded: no cleanup task yet, a release directory each."""
    ids = [d for _, d, _ in releases]
    with engine.store.write():
        CleanupTask.delete().where(CleanupTask.deployment.in_(ids)).execute()
        Deployment.update(updated_at=now()).where(Deployment.id.in_(ids)).execute()
    for dep_id in ids:
        release = engine.paths.ensure(engine.paths.release(dep_id))
        (release / "release.json").write_text('{"bench": true}\n')


def _base_image(api) -> tuple[dict, list[str], dict[str, bytes]]:
    raw = b"".join(api.get_image(BASE_IMAGE))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))[0]
        config = json.load(tar.extractfile(manifest["Config"]))
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()
                 if m.isfile() and m.name not in ("manifest.json", manifest["Config"], "repositories")}
    return config, manifest["Layers"], files


def make_objects(api, engine, releases) -> tuple[list[str], list[str]]:
    """One image per release (one `docker load`), then its container (created, never started). Returns the container
    ids and the image tags."""
    config, layers, files = _base_image(api)
    buf = io.BytesIO()
    manifest = []
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, data in files.items():
            add(name, data)
        for svc, dep_id, project_id in releases:
            cfg = json.loads(json.dumps(config))
            labels = L.deployment_labels(engine.store_id, dep_id, svc, project_id)
            for key in ("config", "container_config"):
                if key in cfg:
                    cfg[key]["Labels"] = {**(cfg[key].get("Labels") or {}), **labels}
            data = json.dumps(cfg, sort_keys=True).encode()
            name = hashlib.sha256(data).hexdigest() + ".json"
            add(name, data)
            manifest.append({"Config": name, "RepoTags": [image_tag(svc, dep_id)], "Layers": layers})
        add("manifest.json", json.dumps(manifest).encode())
    api.load_image(buf.getvalue())
    cids = []
    for svc, dep_id, project_id in releases:
        labels = L.deployment_labels(engine.store_id, dep_id, svc, project_id)
        c = api.create_container(image=image_tag(svc, dep_id), name=container_name(svc, dep_id), labels=labels,
                                 command=["httpd", "-f", "-p", "8080", "-h", "/"],
                                 host_config=api.create_host_config(init=True, restart_policy={"Name": "no"}))
        cids.append(c["Id"])
    return cids, [image_tag(svc, dep_id) for svc, dep_id, _ in releases]


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def left(api, store_id: str) -> tuple[int, int]:
    flt = {"label": [f"{L.STORE}={store_id}"]}
    return len(api.containers(all=True, filters=flt)), len(api.images(filters=flt))


def run() -> list[dict]:
    started = time.perf_counter()
    load_start = B.load_note()
    times = {"ours": [], "bulk": []}
    bulk_parts = []
    loads, cpu = [], []
    with B.temp_engine() as engine:
        api = B.docker_client().api
        releases = make_store_rows(engine)
        n = len(releases)
        counts = P.Counts(engine.store.db)
        with counts.installed():
            for rnd in range(ROUNDS):
                for side in (("ours", "bulk") if rnd % 2 == 0 else ("bulk", "ours")):
                    if side == "ours":
                        rearm(engine, releases)
                    t0 = time.perf_counter()
                    cids, tags = make_objects(api, engine, releases)
                    setup = time.perf_counter() - t0
                    time.sleep(1.0)
                    loads.append(os.getloadavg()[0])
                    if side == "ours":
                        cleaner = Cleaner(engine.ctx)
                        with counts.measuring():
                            c0 = _cpu()
                            t0 = time.perf_counter()
                            queued = cleaner.retention()["releases_queued"]
                            result = cleaner.run_due(limit=max(200, n))
                            seconds = time.perf_counter() - t0
                            cpu.append(_cpu() - c0)
                        if queued != n or result.get("done") != n:
                            raise RuntimeError(f"retention queued {queued}, cleanup {result}, of {n} releases")
                    else:
                        t0 = time.perf_counter()
                        rm = B.run_cmd(["docker", "rm", "-v", *cids])
                        t1 = time.perf_counter()
                        rmi = B.run_cmd(["docker", "rmi", *tags])
                        seconds = time.perf_counter() - t0
                        bulk_parts.append((t1 - t0, seconds - (t1 - t0)))
                        if rm.returncode or rmi.returncode:
                            raise RuntimeError(f"bulk rm/rmi failed: {(rm.stderr + rmi.stderr).strip()[-300:]}")
                    remaining = left(api, engine.store_id)
                    if remaining != (0, 0):
                        raise RuntimeError(f"{side}: {remaining[0]} container(s), {remaining[1]} image(s) left")
                    times[side].append(seconds)
                    B.log(f"releases round {rnd + 1}/{ROUNDS} {side}: {seconds:.2f} s (setup {setup:.1f} s)")
        archived = len(list(engine.paths.archive_root().rglob("*.log.gz")))
    med = {k: B.median(v) for k, v in times.items()}
    ratio = round(med["ours"] / med["bulk"], 3)
    per_round = [o / b for o, b in zip(times["ours"], times["bulk"])]
    fmt = ", ".join
    profile = (f"our CPU per run {', '.join(f'{c:.2f}' for c in cpu)} s ({B.median(cpu) / n * 1000:.1f} ms per "
               f"release); per release, over the {ROUNDS} run(s) of ours: {counts.per(n * ROUNDS)}")
    return [
        B.info("superseded releases: ours (retention + Cleaner.run_due), median", med["ours"], "s",
               f"{n} releases of {SERVICES} services, each a stopped container + its image; rounds: "
               f"{fmt(f'{t:.2f}' for t in times['ours'])}; {archived} logs archived; {profile}"),
        B.info("superseded releases: bulk docker rm -v + docker rmi, median", med["bulk"], "s",
               f"rounds (rm + rmi): {fmt(f'{a:.2f} + {b:.2f}' for a, b in bulk_parts)}"),
        B.at_most("superseded releases: ours / bulk rm + rmi", ratio, TARGET_BULK, "×",
                  f"per round: {fmt(f'{r:.2f}' for r in per_round)}; load avg {min(loads):.1f}-{max(loads):.1f} "
                  f"during the rounds, {load_start} at start, {B.load_note()} at end; "
                  + ("" if ratio <= TARGET_BULK else f"MISS: {profile}; ")
                  + f"total {time.perf_counter() - started:.0f} s"),
    ]


NOTES = [
    "Superseded releases: BENCH_RELEASES (default 200; 0 skips them), BENCH_RELEASES_SERVICES (default 10) and "
    "BENCH_RELEASES_ROUNDS (default 2) change the run. Ours also queues the tasks (retention), archives every log, "
    "writes the events and task states and removes each release directory.",
]

if __name__ == "__main__":
    raise SystemExit(B.main(run, "superseded-release cleanup benchmark"))
