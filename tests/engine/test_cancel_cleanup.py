"""Cancel goes through cleanup (issue 10, item 4): the pipeline only stops; the cleanup task archives the log, writes
the removal events and waits for `cleanup_delay`. Cancelling a deployment whose process is gone puts `current` and
the route back on what served before."""
import os
import threading
import time

from console.engine import deployments as D
from console.engine.cleanup import Cleaner
from console.engine.paths import link_target
from console.engine.pipeline import container_name
from storage.clock import now
from storage.models import CleanupTask, Deployment, DeploymentEvent
from tests.conftest import make_service_dir, wait_for
from tests.reliability import fast_env, kill, spawn, wait_for_fault_pause


def cleanup_log(dep_id):
    return [e.message for e in DeploymentEvent.select().where(
        (DeploymentEvent.deployment == dep_id) & (DeploymentEvent.kind == "cleanup")).order_by(DeploymentEvent.id)]


def ours(client, dep_id):
    return client.api.containers(all=True, filters={"label": f"deployer.deployment_id={dep_id}"})


def test_cancel_during_a_fault_pause_leaves_removal_to_the_cleanup_task(engine, tmp_path, docker_client,
                                                                       monkeypatch):
    engine.settings.cleanup.cleanup_delay = 3.0
    monkeypatch.setenv("DEPLOYER_FAULT_PAUSE", "HEALTH_CHECK:30")
    engine.add_service("web", str(make_service_dir(tmp_path / "web")))
    dep = engine.create_deployment("web")
    worker = threading.Thread(target=engine.pipeline.run, args=(dep.id,))
    worker.start()
    wait_for(lambda: Deployment.get_by_id(dep.id).phase == "HEALTH_CHECK", timeout=60, what="HEALTH_CHECK")
    engine.cancel(dep.id)
    cancelled_at = time.monotonic()
    worker.join(10)
    assert not worker.is_alive()
    assert len(ours(docker_client, dep.id)) == 1, "the pipeline stops; it does not remove the container"
    assert Cleaner(engine.ctx).run_due()["done"] == 0, "cleanup_delay holds the task back"
    wait_for(lambda: Cleaner(engine.ctx).run_due()["done"] == 1, timeout=20, what="the delayed cleanup")
    assert time.monotonic() - cancelled_at >= 3.0
    assert ours(docker_client, dep.id) == []
    log = cleanup_log(dep.id)
    name = container_name("web", dep.id)
    assert f"Found 1 container(s) for deployment {dep.id}" in log
    assert f"Removing container /{name} for deployment {dep.id}" in log
    assert f"Successfully removed container /{name}" in log
    assert (engine.paths.archive(dep.id) / f"{name}.log.gz").stat().st_size > 0
    assert not [e for e in DeploymentEvent.select().where(DeploymentEvent.deployment == dep.id)
                if "could not remove" in e.message.lower()]


def test_cleanup_waits_while_a_cancelled_pipeline_is_still_stopping(engine, service_dir):
    engine.add_service("web", str(service_dir))
    dep = engine.create_deployment("web")
    with engine.store.write():
        D.move(engine.store, dep.id, "deploying", owner=f"{D.MACHINE}:{os.getpid()}:1", owner_machine=D.MACHINE,
               owner_pid=os.getpid(), heartbeat_at=now(), phase="COPYING_FILES", phase_started_at=now())
    engine.cancel(dep.id)  # its pipeline (this live process) has not stopped yet: the heartbeat is still fresh
    for _ in range(2):
        assert Cleaner(engine.ctx).run_due() == {"done": 0, "kept": 0, "skipped": 1, "retried": 0}
        with engine.store.write():
            CleanupTask.update(due_at=now()).where(CleanupTask.deployment == dep.id).execute()
    waits = [m for m in cleanup_log(dep.id) if "waits for its pipeline" in m]
    assert len(waits) == 1, waits
    task = CleanupTask.get(CleanupTask.deployment == dep.id)
    assert task.state == "pending" and "pipeline" in task.last_error
    with engine.store.write():  # the pipeline ended: it clears its heartbeat
        Deployment.update(heartbeat_at=None).where(Deployment.id == dep.id).execute()
    assert Cleaner(engine.ctx).run_due()["done"] == 1


def test_cancel_of_a_deployment_whose_process_is_gone_restores_current_and_route(engine, service_dir, tmp_path,
                                                                               docker_client):
    engine.add_service("web", str(service_dir))
    good = engine.deploy("web")
    assert good.status == "success"
    proc = spawn(["deploy", "web"], fast_env(engine.settings, fault="HEALTH_CHECK:60"), tmp_path / "deploy.log")
    try:
        dead = wait_for_fault_pause("HEALTH_CHECK")
    finally:
        kill(proc)
    assert link_target(engine.paths.current("web")) == dead.id
    assert f"for deployment {dead.id}\n" in engine.paths.route("web").read_text()
    engine.cancel(dead.id)
    assert Deployment.get_by_id(dead.id).status == "cancelled"
    assert link_target(engine.paths.current("web")) == good.id
    assert f"for deployment {good.id}\n" in engine.paths.route("web").read_text()
    assert DeploymentEvent.select().where((DeploymentEvent.deployment == dead.id) &
                                          DeploymentEvent.message.contains(f"current -> {good.id} restored")).exists()
    # its pipeline is gone: the cleanup runs at once and removes its container
    assert Cleaner(engine.ctx).run_due()["done"] == 1
    assert ours(docker_client, dead.id) == []
    assert docker_client.api.inspect_container(container_name("web", good.id))["State"]["Running"]
