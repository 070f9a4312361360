"""Cleanup of failed and cancelled deployments on a real engine: the design's testing checklist and more."""
import gzip
import io
import tarfile
import threading
import time

import pytest

from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.engine.errors import EngineUnavailable
from console.engine.pipeline import container_name, deployment_volume, shared_volume
from storage.clock import now
from storage.models import CleanupTask, Deployment, DeploymentEvent, Rollback
from tests.conftest import make_service_dir, wait_for

FAILING = """\
FROM deployer/base:busybox
CMD ["sh", "-c", "echo hello-from-the-log; echo precious > /data/file; echo shared > /shared/file; \
httpd -f -p 8080 -h /nonexistent"]
"""


def messages(dep_id, kind="cleanup"):
    return [e.message for e in DeploymentEvent.select().where(
        (DeploymentEvent.deployment == dep_id) & (DeploymentEvent.kind == kind)).order_by(DeploymentEvent.id)]


def ours(client, dep_id):
    """The deployment's own containers (the foreign look-alikes some tests create have other names)."""
    return client.api.containers(all=True, filters={"label": [f"{L.DEPLOYMENT}={dep_id}", f"{L.MANAGED}=true"],
                                                    "name": f"^/deployer-.*-{dep_id}$"})


def volume_names(client, dep_id):
    return [v["Name"] for v in (client.api.volumes(filters={"label": f"{L.DEPLOYMENT}={dep_id}"}) or {})
            .get("Volumes") or []]


@pytest.fixture
def failing(engine, tmp_path):
    engine.settings.pipeline.health_timeout = 3
    src = make_service_dir(tmp_path / "failing", dockerfile=FAILING)
    engine.add_service("failing", str(src), volumes=["data:/data"], shared_volumes=["shared:/shared"])
    return engine


def test_failing_deployment_is_cleaned_with_its_volume_and_events(failing, docker_client):
    dep = failing.deploy("failing")
    assert dep.status == "failed"
    task = CleanupTask.get(CleanupTask.deployment == dep.id)
    assert task.state == "pending" and task.reason == "failed"
    assert len(ours(docker_client, dep.id)) == 1 and volume_names(docker_client, dep.id)
    counts = Cleaner(failing.ctx).run_due()
    assert counts["done"] == 1
    assert ours(docker_client, dep.id) == [] and volume_names(docker_client, dep.id) == []
    assert Deployment.get_by_id(dep.id).status == "failed"
    log = messages(dep.id)
    name = container_name("failing", dep.id)
    assert log[0] == f"Starting cleanup of resources for failed deployment {dep.id}"
    assert f"Found 1 container(s) for deployment {dep.id}" in log
    assert f"Removing container /{name} for deployment {dep.id}" in log
    assert f"Successfully removed container /{name}" in log
    assert log[-1] == f"Completed cleanup for deployment {dep.id}"
    assert CleanupTask.get_by_id(task.id).state == "done"
    assert not failing.paths.release(dep.id).exists()
    assert not docker_client.api.images(name=f"deployer/failing:{dep.id}")


def test_archived_log_and_volume_backup_hold_the_data(failing, docker_client):
    dep = failing.deploy("failing")
    Cleaner(failing.ctx).run_due()
    archive = failing.paths.archive(dep.id)
    log = gzip.open(archive / f"{container_name('failing', dep.id)}.log.gz").read().decode()
    assert "hello-from-the-log" in log
    backup = archive / f"{deployment_volume(dep.id, 'data')}.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(gzip.open(backup).read())) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("file"))
        assert tar.extractfile(member).read() == b"precious\n"
    assert oct(archive.stat().st_mode & 0o777) == "0o700"


def test_shared_project_volume_and_its_data_survive(failing, docker_client):
    dep = failing.deploy("failing")
    Cleaner(failing.ctx).run_due()
    name = shared_volume(failing.store_id, Deployment.get_by_id(dep.id).service.project_id, "shared")
    vol = docker_client.api.inspect_volume(name)
    assert vol["Labels"][L.SCOPE] == "project" and L.DEPLOYMENT not in vol["Labels"]
    out = docker_client.containers.run("deployer/base:busybox", ["cat", "/s/file"], remove=True,
                                       volumes={name: {"bind": "/s", "mode": "ro"}})
    assert out == b"shared\n"
    docker_client.api.remove_volume(name)


def test_cancel_during_build_ends_cancelled_and_cleaned(engine, tmp_path, docker_client):
    src = make_service_dir(tmp_path / "slow", extra="RUN sleep 30")
    engine.add_service("slow", str(src), volumes=["data:/data"])
    dep = engine.create_deployment("slow")
    worker = threading.Thread(target=engine.pipeline.run, args=(dep.id,))
    worker.start()
    wait_for(lambda: Deployment.get_by_id(dep.id).phase == "BUILDING", timeout=30, what="BUILDING")
    time.sleep(1.0)
    engine.cancel(dep.id)
    worker.join(10)
    Cleaner(engine.ctx).run_due()
    assert Deployment.get_by_id(dep.id).status == "cancelled"
    assert ours(docker_client, dep.id) == [] and volume_names(docker_client, dep.id) == []
    log = messages(dep.id)
    assert f"Starting cleanup of resources for cancelled deployment {dep.id}" in log
    assert f"Completed cleanup for deployment {dep.id}" in log
    assert any(e.actor for e in DeploymentEvent.select().where(DeploymentEvent.deployment == dep.id)
               if "cancelled by" in e.message)


def test_cancel_with_a_container_and_volume_removes_both(engine, tmp_path, docker_client, monkeypatch):
    monkeypatch.setenv("DEPLOYER_FAULT_PAUSE", "HEALTH_CHECK:30")
    engine.add_service("web", str(make_service_dir(tmp_path / "web")), volumes=["data:/data"])
    dep = engine.create_deployment("web")
    worker = threading.Thread(target=engine.pipeline.run, args=(dep.id,))
    worker.start()
    wait_for(lambda: Deployment.get_by_id(dep.id).phase == "HEALTH_CHECK", timeout=60, what="HEALTH_CHECK")
    assert ours(docker_client, dep.id) and volume_names(docker_client, dep.id)
    engine.cancel(dep.id)
    worker.join(10)
    Cleaner(engine.ctx).run_due()
    assert Deployment.get_by_id(dep.id).status == "cancelled"
    assert ours(docker_client, dep.id) == [] and volume_names(docker_client, dep.id) == []


def test_rollback_in_progress_keeps_containers_until_it_completes(failing, docker_client):
    dep = failing.deploy("failing")
    with failing.store.write():
        rb = Rollback.create(service=Deployment.get_by_id(dep.id).service, from_deployment=dep.id,
                             to_deployment=dep.id, state="active")
    counts = Cleaner(failing.ctx).run_due()
    assert counts["skipped"] == 1
    assert len(ours(docker_client, dep.id)) == 1
    assert f"Skipping cleanup for deployment {dep.id} - active rollback in progress" in messages(dep.id)
    assert CleanupTask.get(CleanupTask.deployment == dep.id).state == "pending"
    with failing.store.write():
        Rollback.update(state="completed", finished_at=now()).where(Rollback.id == rb.id).execute()
    wait_for(lambda: Cleaner(failing.ctx).run_due()["done"] == 1, timeout=10, what="the re-queued cleanup")
    assert ours(docker_client, dep.id) == []


def test_container_removed_by_hand_first_is_not_an_error(failing, docker_client):
    dep = failing.deploy("failing")
    docker_client.api.remove_container(container_name("failing", dep.id), force=True)
    counts = Cleaner(failing.ctx).run_due()
    assert counts["done"] == 1
    log = messages(dep.id)
    assert sum("already removed or not found" in m for m in log) == 1
    assert not [e for e in DeploymentEvent.select().where((DeploymentEvent.deployment == dep.id) &
                                                          (DeploymentEvent.kind == "cleanup") &
                                                          (DeploymentEvent.level == "error"))]


def test_gateway_treats_404_and_gone_as_done(engine, docker_client):
    gw = engine.hosts.gateway()
    c = docker_client.api.create_container("deployer/base:busybox", "true")
    docker_client.api.remove_container(c["Id"])
    assert gw.remove_container(c["Id"]) == "gone"


@pytest.mark.parametrize("tty", [False, True])
def test_the_archived_log_is_the_whole_log_with_or_without_a_tty(engine, docker_client, tmp_path, tty):
    """archive_logs reads the log in one request (no inspect for the tty flag): the archive holds what docker-py's
    own logs() returns, for a multiplexed (no tty) and a raw (tty) log alike."""
    gw = engine.hosts.gateway()
    api = docker_client.api
    c = api.create_container("deployer/base:busybox", ["sh", "-c", "echo out; echo err >&2; printf 'no newline'"],
                             tty=tty)
    try:
        api.start(c["Id"])
        api.wait(c["Id"], timeout=30)
        expected = api.logs(c["Id"], stdout=True, stderr=True, timestamps=True)
        assert b"out" in expected and b"no newline" in expected
        gw.archive_logs(c["Id"], tmp_path / "c.log.gz")
        assert gzip.decompress((tmp_path / "c.log.gz").read_bytes()) == expected
    finally:
        api.remove_container(c["Id"], force=True)


def test_two_deployments_one_cancelled_only_its_resources_go(engine, tmp_path, docker_client, monkeypatch):
    engine.add_service("web", str(make_service_dir(tmp_path / "web")), volumes=["data:/data"])
    good = engine.deploy("web")
    assert good.status == "success"
    monkeypatch.setenv("DEPLOYER_FAULT_PAUSE", "HEALTH_CHECK:30")
    dep = engine.create_deployment("web")
    worker = threading.Thread(target=engine.pipeline.run, args=(dep.id,))
    worker.start()
    wait_for(lambda: Deployment.get_by_id(dep.id).phase == "HEALTH_CHECK", timeout=60, what="HEALTH_CHECK")
    engine.cancel(dep.id)
    worker.join(10)
    Cleaner(engine.ctx).run_due()
    assert ours(docker_client, dep.id) == [] and volume_names(docker_client, dep.id) == []
    kept = ours(docker_client, good.id)
    assert len(kept) == 1 and kept[0]["State"] == "running"
    assert volume_names(docker_client, good.id)
    assert Deployment.get_by_id(good.id).status == "success"


def test_look_alike_and_foreign_containers_survive(failing, docker_client):
    dep = failing.deploy("failing")
    sid = failing.store_id
    base = {L.MANAGED: "true", L.STORE: sid, L.SERVICE: "failing", L.PROJECT: "1"}
    specs = [base | {L.DEPLOYMENT: f"{dep.id}-x"}, base | {L.DEPLOYMENT: f"x{dep.id}"},
             base | {L.DEPLOYMENT: dep.id.upper()}, {L.DEPLOYMENT: dep.id},
             {L.MANAGED: "false", L.DEPLOYMENT: dep.id, L.STORE: sid},
             base | {L.DEPLOYMENT: dep.id, L.STORE: "otherstore"}, {}]
    foreign = [docker_client.api.create_container("deployer/base:busybox", "true", labels=lbl)["Id"]
               for lbl in specs]
    vols = [docker_client.api.create_volume(labels=lbl)["Name"] for lbl in specs]
    try:
        Cleaner(failing.ctx).run_due()
        Cleaner(failing.ctx).retention()
        assert ours(docker_client, dep.id) == []
        for cid in foreign:
            assert docker_client.api.inspect_container(cid)
        for name in vols:
            assert docker_client.api.inspect_volume(name)
    finally:
        for cid in foreign:
            docker_client.api.remove_container(cid, force=True)
        for name in vols:
            docker_client.api.remove_volume(name)


def test_keep_last_n_failed_stops_but_keeps_and_cleans_older_ones(failing, docker_client):
    failing.settings.cleanup.keep_failed = 1
    first = failing.deploy("failing")
    Cleaner(failing.ctx).run_due()
    kept = ours(docker_client, first.id)
    assert len(kept) == 1 and kept[0]["State"] == "exited"
    assert CleanupTask.get(CleanupTask.deployment == first.id).state == "kept"
    second = failing.deploy("failing")
    Cleaner(failing.ctx).run_due()   # keeps the second, re-arms the first
    Cleaner(failing.ctx).run_due()   # cleans the first
    assert ours(docker_client, first.id) == []
    assert len(ours(docker_client, second.id)) == 1
    assert CleanupTask.get(CleanupTask.deployment == first.id).state == "done"


def test_cleanup_delay_holds(failing, docker_client):
    failing.settings.cleanup.cleanup_delay = 3
    dep = failing.deploy("failing")
    assert Cleaner(failing.ctx).run_due()["done"] == 0
    assert len(ours(docker_client, dep.id)) == 1
    plan = failing.cleanup(dry_run=True)["plan"]
    assert plan[0]["action"].startswith("remove in")
    wait_for(lambda: Cleaner(failing.ctx).run_due()["done"] == 1, timeout=10, what="the delayed cleanup")
    assert ours(docker_client, dep.id) == []


def test_dry_run_plan_touches_nothing(failing, docker_client):
    dep = failing.deploy("failing")
    result = failing.cleanup(dry_run=True)
    row = next(r for r in result["plan"] if r["deployment_id"] == dep.id)
    assert row["containers"] == [container_name("failing", dep.id)]
    assert row["volumes"] == [deployment_volume(dep.id, "data")]
    assert row["action"] == "remove"
    assert len(ours(docker_client, dep.id)) == 1
    assert CleanupTask.get(CleanupTask.deployment == dep.id).state == "pending"


def test_engine_down_cleanups_retry_and_complete_after_restart(engine, tmp_path, h2):
    """Three cleanups due on host h2 while h2's dockerd is stopped (a real outage of a real engine)."""
    import docker as dockerlib
    engine.settings.pipeline.health_timeout = 3
    engine.add_service("fail2", str(make_service_dir(tmp_path / "f2", dockerfile=FAILING)), host="h2",
                       volumes=["data:/data"], shared_volumes=["shared:/shared"])
    deps = [engine.deploy("fail2") for _ in range(3)]
    assert [d.status for d in deps] == ["failed"] * 3
    h2.stop()
    counts = Cleaner(engine.ctx).run_due()
    assert counts["retried"] == 3
    tasks = list(CleanupTask.select().where(CleanupTask.deployment.in_([d.id for d in deps])))
    assert all(t.state == "pending" and t.attempts == 1 and "unreachable" in t.last_error for t in tasks)
    # "soon after the engine returns", in the engine's own terms rather than a wall-clock bound that load breaks:
    # the retry is due one backoff step (1 s) after the failed attempt, the host's breaker lets go within
    # min(5 s, host_timeout) of its last failure, and the first cleanup run after that completes every task
    assert all(abs(t.due_at - t.updated_at - 1.0) < 0.5 for t in tasks), [(t.due_at, t.updated_at) for t in tasks]
    h2.start()                                                # returns once h2 answers a ping

    def h2_retried_now() -> bool:
        try:
            engine.hosts.breaker.check("h2")
        except EngineUnavailable:
            return False
        return all(t.due_at <= now() for t in CleanupTask.select().where(CleanupTask.id.in_([t.id for t in tasks])))
    wait_for(h2_retried_now, timeout=60, interval=0.1, what="the retries to be due and h2's breaker to let go")
    counts = Cleaner(engine.ctx).run_due()
    assert counts["done"] == 3 and counts["retried"] == 0, counts
    tasks = list(CleanupTask.select().where(CleanupTask.deployment.in_([d.id for d in deps])))
    assert all(t.state == "done" and t.attempts == 2 for t in tasks), [(t.state, t.attempts) for t in tasks]
    client = dockerlib.DockerClient(base_url=h2.URL)
    for d in deps:
        assert client.api.containers(all=True, filters={"label": f"{L.DEPLOYMENT}={d.id}"}) == []
    client.close()
