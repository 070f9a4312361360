"""One deployment per service at a time (issue 10, item 3), and reconcile telling when `current`, the route file and
the running container disagree with the service's `success` deployment."""
import os
import threading

import pytest

from console.engine import deployments as D
from console.engine import releases
from console.engine.paths import atomic_symlink, link_target
from console.engine.pipeline import ServiceBusy, container_name
from storage.clock import now
from storage.models import Deployment, DeploymentEvent
from tests.conftest import wait_for


def events_of(dep_id, text):
    return [e.message for e in DeploymentEvent.select().where(
        (DeploymentEvent.deployment == dep_id) & DeploymentEvent.message.contains(text))]


def route_points_at(engine, service, dep_id):
    return f"for deployment {dep_id}\n" in engine.paths.route(service).read_text()


def test_second_deploy_of_a_service_waits_queued_with_a_reason_until_the_first_ends(
        engine, service_dir, docker_client, monkeypatch):
    engine.add_service("web", str(service_dir))
    monkeypatch.setenv("DEPLOYER_FAULT_PAUSE", "UPDATING_ROUTES:6")
    first, second, results = {}, {}, {}
    t1 = threading.Thread(target=lambda: results.setdefault(
        "first", engine.deploy("web", on_created=lambda d: first.setdefault("id", d.id))))
    t1.start()
    wait_for(lambda: first and events_of(first["id"], "fault pause in UPDATING_ROUTES"), timeout=60,
             what="the first deployment to pause in UPDATING_ROUTES")
    monkeypatch.delenv("DEPLOYER_FAULT_PAUSE")
    t2 = threading.Thread(target=lambda: results.setdefault(
        "second", engine.deploy("web", on_created=lambda d: second.setdefault("id", d.id))))
    t2.start()
    waiting = wait_for(lambda: second and Deployment.get_by_id(second["id"]).wait_reason, timeout=10,
                       what="the second deployment to say why it waits")
    assert first["id"] in waiting
    assert Deployment.get_by_id(second["id"]).status == "queued"
    assert engine.show(second["id"], events=False)["wait_reason"] == waiting
    assert [r for r in engine.deployments() if r["id"] == second["id"]][0]["wait_reason"] == waiting
    t1.join(60)
    t2.join(90)
    assert results["first"].status == "success", results["first"].error
    assert results["second"].status == "success", results["second"].error
    assert Deployment.get_by_id(first["id"]).status == "superseded"
    assert Deployment.get_by_id(second["id"]).wait_reason is None
    assert len(events_of(second["id"], "waits for deployment")) == 1  # one event, not one per poll
    assert link_target(engine.paths.current("web")) == second["id"]
    assert route_points_at(engine, "web", second["id"])
    assert docker_client.api.inspect_container(container_name("web", second["id"]))["State"]["Running"]
    assert not docker_client.api.inspect_container(container_name("web", first["id"]))["State"]["Running"]
    plan = engine.reconcile(dry_run=True)
    assert plan["drift"] == [], plan["drift"]


def _deploying_row(engine, service, pid):
    dep = engine.create_deployment(service)
    with engine.store.write():
        D.move(engine.store, dep.id, "deploying", owner=f"{D.MACHINE}:{pid}:1", owner_machine=D.MACHINE,
               owner_pid=pid, heartbeat_at=now(), phase="BUILDING", phase_started_at=now())
    return dep


def test_a_live_or_dead_holder_keeps_the_next_deployment_queued(engine, service_dir):
    engine.add_service("web", str(service_dir))
    holder = _deploying_row(engine, "web", os.getpid())
    waiting = engine.create_deployment("web")
    with pytest.raises(ServiceBusy, match=holder.id):
        engine.pipeline.claim(waiting.id)
    with pytest.raises(ServiceBusy):
        engine.pipeline.claim(waiting.id)
    assert Deployment.get_by_id(waiting.id).status == "queued"
    assert len(events_of(waiting.id, "waits for deployment")) == 1
    # the holder dies: a zombie still holds the service until reconcile resumes or fails it (or it is cancelled)
    with engine.store.write():
        Deployment.update(owner_pid=2 ** 22 + 12345).where(Deployment.id == holder.id).execute()
    with pytest.raises(ServiceBusy, match="pipeline is gone"):
        engine.pipeline.claim(waiting.id)
    engine.cancel(holder.id)
    dep, phase = engine.pipeline.claim(waiting.id)
    assert dep.status == "deploying" and dep.wait_reason is None and phase == "PULLING_SOURCE"


def test_a_cancelled_holder_holds_the_service_until_its_pipeline_has_stopped(engine, service_dir):
    engine.add_service("web", str(service_dir))
    holder = _deploying_row(engine, "web", os.getpid())
    engine.cancel(holder.id)  # its (live) pipeline still has to stop and put `current` back
    waiting = engine.create_deployment("web")
    with pytest.raises(ServiceBusy, match=f"{holder.id} of the same service to stop"):
        engine.pipeline.claim(waiting.id)
    with engine.store.write():  # what RunControl.ended() does when the pipeline has stopped
        Deployment.update(heartbeat_at=None).where(Deployment.id == holder.id).execute()
    assert engine.pipeline.claim(waiting.id)[0].status == "deploying"


def test_a_resume_waits_for_a_live_deployment_of_its_service(engine, service_dir):
    engine.add_service("web", str(service_dir))
    failed = engine.create_deployment("web")
    D.move(engine.store, failed.id, "failed", error="x")
    _deploying_row(engine, "web", os.getpid())
    with pytest.raises(ServiceBusy):
        engine.resume(failed.id)
    assert Deployment.get_by_id(failed.id).status == "failed"


def test_the_dispatcher_leaves_a_blocked_deployment_queued_and_starts_another_service(engine, service_dir):
    from console.engine.scheduler import Runtime
    engine.add_service("web", str(service_dir))
    engine.add_service("api", str(service_dir))
    _deploying_row(engine, "web", os.getpid())
    blocked, other = engine.create_deployment("web"), engine.create_deployment("api")
    with engine.store.write():  # the blocked one is older: the dispatcher tries it first, then looks past it
        Deployment.update(created_at=now() - 20).where(Deployment.id == blocked.id).execute()
        Deployment.update(created_at=now() - 10).where(Deployment.id == other.id).execute()
    runtime = Runtime(engine.ctx, engine.pipeline)
    runtime.workers = 1
    runtime.lease.step()
    try:
        counts = runtime.dispatch()
        assert counts["started"] == 1
        assert Deployment.get_by_id(blocked.id).status == "queued"
        assert Deployment.get_by_id(blocked.id).wait_reason
        assert Deployment.get_by_id(other.id).status != "queued"
        wait_for(lambda: not runtime.running_ids(), timeout=90, what="the api deployment to end")
    finally:
        runtime.stop()


def test_reconcile_reports_current_route_and_container_disagreement_as_drift(engine, service_dir, docker_client):
    engine.add_service("web", str(service_dir))
    old, new = engine.deploy("web"), engine.deploy("web")
    assert new.status == "success"
    assert engine.reconcile()["drift"] == []

    atomic_symlink(engine.paths.current("web"), f"../../releases/{old.id}")
    engine.reconcile()
    assert Deployment.get_by_id(new.id).status == "degraded"
    assert events_of(new.id, f"current points at {old.id}")
    # still disagreeing: stays degraded, no flip back to success
    engine.reconcile()
    assert Deployment.get_by_id(new.id).status == "degraded"
    atomic_symlink(engine.paths.current("web"), f"../../releases/{new.id}")
    engine.reconcile()
    assert Deployment.get_by_id(new.id).status == "success"

    releases.route(engine.ctx, new.service, old.id, engine.hosts.gateway())
    engine.reconcile()
    assert Deployment.get_by_id(new.id).status == "degraded"
    assert events_of(new.id, f"route file routes/web.yml points at {old.id}")
    releases.route(engine.ctx, new.service, new.id, engine.hosts.gateway())
    engine.reconcile()
    assert Deployment.get_by_id(new.id).status == "success"

    docker_client.api.stop(container_name("web", new.id), timeout=1)
    engine.reconcile()
    assert Deployment.get_by_id(new.id).status == "degraded"
