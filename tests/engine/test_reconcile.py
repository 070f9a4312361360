"""Reconciliation on the real engine: orphans, drift, unreachable hosts, wedged phases (issue 4)."""
import os
import signal
import socket
import time
import uuid

import docker

from console.engine import deployments as D
from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.engine.docker_gateway import BASE_IMAGE
from console.engine.pipeline import container_name
from storage.models import CleanupTask, Deployment, DeploymentEvent, Host
from tests.conftest import wait_for
from tests.reliability import fast_env, kill, spawn, wait_for_fault_pause

GHOST = "0123456789ab"  # a deployment id this store never had


def _create(client, name, labels, start=False):
    c = client.api.create_container(BASE_IMAGE, command=["sleep", "300"], name=name, labels=labels,
                                    host_config=client.api.create_host_config(init=True))
    if start:
        client.api.start(c["Id"])
    return c["Id"]


def _exists(client, cid) -> bool:
    try:
        client.api.inspect_container(cid)
        return True
    except docker.errors.NotFound:
        return False


def test_orphans_older_than_the_grace_are_cleaned_fresh_and_foreign_ones_are_not(engine, service_dir, docker_client):
    engine.settings.scheduler.orphan_grace = 3.0
    engine.add_service("web", str(service_dir))
    sid, token = engine.store_id, uuid.uuid4().hex[:6]
    # a failed deployment whose cleanup already ran, then a container of it shows up again
    failed = engine.create_deployment("web")
    D.move(engine.store, failed.id, "failed", error="test")
    Cleaner(engine.ctx).run_due()
    # a superseded deployment's stopped container is its rollback target, never an orphan
    old = engine.create_deployment("web")
    for to in ("deploying", "success", "superseded"):
        D.move(engine.store, old.id, to)
    project = engine.service("web").project_id
    ghost_old = _create(docker_client, f"ghost-old-{token}", L.deployment_labels(sid, GHOST, "web", project))
    late = _create(docker_client, f"late-{token}", L.deployment_labels(sid, failed.id, "web", project))
    kept = _create(docker_client, f"superseded-{token}", L.deployment_labels(sid, old.id, "web", project))
    foreign = _create(docker_client, f"foreign-{token}", L.deployment_labels("otherstore01", GHOST, "web", project))
    unlabelled = _create(docker_client, f"plain-{token}", {"deployer.deployment_id": GHOST})
    try:
        time.sleep(3.2)
        ghost_fresh = _create(docker_client, f"ghost-fresh-{token}", L.deployment_labels(sid, GHOST, "web", project))
        plan = engine.reconcile(dry_run=True)
        assert {o["id"] for o in plan["orphans"]} == {ghost_old, late}
        assert plan["in_grace"] == 1 and plan["docker_calls"] == 2
        assert _exists(docker_client, ghost_old), "a dry run touches nothing"

        result = engine.reconcile()
        by_id = {o["id"]: o for o in result["orphans"]}
        assert by_id[ghost_old]["action"] == "remove" and by_id[ghost_old]["deployment_status"] == "unknown"
        assert by_id[late]["action"] == "cleanup task" and by_id[late]["result"] == "cleanup task queued"
        assert not _exists(docker_client, ghost_old)
        assert (engine.paths.archive(GHOST) / f"ghost-old-{token}.log.gz").exists()
        assert DeploymentEvent.select().where((DeploymentEvent.kind == "reconcile") &
                                              DeploymentEvent.message.contains(f"ghost-old-{token}")).exists()
        task = CleanupTask.select().where((CleanupTask.deployment == failed.id) &
                                          (CleanupTask.reason == "orphan")).get()
        assert task.state == "pending"
        Cleaner(engine.ctx).run_due()
        assert not _exists(docker_client, late)
        for survivor in (ghost_fresh, kept, foreign, unlabelled):
            assert _exists(docker_client, survivor)
        assert engine.reconcile(dry_run=True)["orphans"] == []
    finally:
        for cid in (foreign, unlabelled):
            docker_client.api.remove_container(cid, force=True)


def test_a_container_stopped_by_hand_is_drift_and_an_unreachable_host_is_left_alone(engine, service_dir,
                                                                                      docker_client, tmp_path):
    engine.add_service("web", str(service_dir))
    dep = engine.deploy("web")
    assert dep.status == "success"
    engine.hosts.add("ghost", f"unix://{tmp_path}/no-such-docker.sock")  # nothing listens there: refused
    name = container_name("web", dep.id)
    docker_client.api.stop(name, timeout=1)

    result = engine.reconcile()
    assert result["hosts"]["local"] is None and result["hosts"]["ghost"]
    assert [d["deployment_id"] for d in result["drift"]] == [dep.id]
    assert "exited" in result["drift"][0]["problem"]
    assert Deployment.get_by_id(dep.id).status == "degraded"
    assert not docker_client.api.inspect_container(name)["State"]["Running"], "drift is reported, never fixed"
    assert DeploymentEvent.select().where((DeploymentEvent.deployment == dep.id) &
                                          DeploymentEvent.message.startswith("Drift:")).exists()
    host = Host.get_by_id("ghost")
    assert host.reachable is False and host.last_error
    assert DeploymentEvent.select().where((DeploymentEvent.kind == "host") &
                                          DeploymentEvent.message.contains("ghost is unreachable")).count() == 1
    assert engine.reconcile()["drift"] == [], "still degraded: nothing new to report"
    assert DeploymentEvent.select().where(DeploymentEvent.kind == "host").count() == 1, "only changes are events"

    docker_client.api.start(name)
    result = engine.reconcile()
    assert result["drift"][0]["action"] == "mark success"
    assert Deployment.get_by_id(dep.id).status == "success"

    docker_client.api.remove_container(name, force=True)
    result = engine.reconcile()
    assert "missing" in result["drift"][0]["problem"]
    assert Deployment.get_by_id(dep.id).status == "degraded"


def test_a_host_that_hangs_is_given_up_after_the_host_timeout(engine, tmp_path):
    # a real socket that accepts connections and never answers: a hung engine
    path = str(tmp_path / "hung.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    try:
        engine.settings.scheduler.host_timeout = 1.0
        engine.hosts.add("hung", f"unix://{path}")
        t0 = time.monotonic()
        result = engine.reconcile()
        assert time.monotonic() - t0 < 3.0
        assert result["hosts"]["local"] is None
        hung = result["hosts"]["hung"]
        assert "no answer within 1 s" in hung or "timed out" in hung, hung
        assert result["counts"]["hosts_down"] == 1
    finally:
        server.close()


def test_a_wedged_pipeline_fails_with_the_phase_that_overran(engine, service_dir, tmp_path):
    """A live process (pid exists, heartbeat recent) that makes no progress: SIGSTOP freezes it in BUILDING."""
    engine.add_service("web", str(service_dir))
    engine.settings.pipeline.phase_deadlines["BUILDING"] = 3.0
    engine.settings.scheduler.zombie_after = 60.0
    proc = spawn(["deploy", "web"], fast_env(engine.settings, fault="BUILDING:60"), tmp_path / "deploy.log")
    try:
        dep = wait_for_fault_pause("BUILDING")
        os.kill(proc.pid, signal.SIGSTOP)
        wait_for(lambda: time.time() - Deployment.get_by_id(dep.id).phase_started_at > 3.5, timeout=10,
                 what="the BUILDING deadline to pass")
        result = engine.reconcile()
        assert result["zombies"] == [], "its pid is alive and its heartbeat recent: not a zombie"
        assert [d["deployment_id"] for d in result["deadlines"]] == [dep.id]
        row = Deployment.get_by_id(dep.id)
        assert row.status == "failed" and row.error.startswith("BUILDING: phase overran its deadline of 3 s")
        assert CleanupTask.select().where(CleanupTask.deployment == dep.id).exists()
    finally:
        kill(proc)
