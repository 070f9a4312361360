"""An interrupted rollback recovers (issue 10, item 5): a `deployer-console rollback` killed with SIGKILL mid-way is
finished or undone by reconcile, one stopped with SIGTERM undoes itself; store, `current`, route and the running
container then agree, a rollback of the service is allowed again, and cleanup says it skips once, not every pass."""
import signal

import pytest

from console.engine import deployments as D
from console.engine.cleanup import Cleaner
from console.engine.errors import InputError
from console.engine.paths import link_target
from console.engine.pipeline import container_name
from storage import migrations
from storage.clock import now
from storage.models import CleanupTask, Deployment, DeploymentEvent, Rollback
from tests.conftest import make_service_dir, wait_for
from tests.oldstore import downgrade_to_v1
from tests.reliability import fast_env, kill, spawn, wait_for_fault_pause


@pytest.fixture
def two_releases(engine, tmp_path):
    engine.add_service("web", str(make_service_dir(tmp_path / "web")))
    first = engine.deploy("web")
    second = engine.deploy("web")
    assert (first.status, second.status) == ("success", "success")
    return engine, first, second


def running(docker_client, name) -> bool:
    return docker_client.api.inspect_container(name)["State"]["Running"]


def rollback_paused(engine, tmp_path):
    """A `deployer-console rollback web` paused after its route is written, before the health check."""
    proc = spawn(["rollback", "web"], fast_env(engine.settings, fault="ROLLBACK:60"), tmp_path / "rollback.log")
    try:
        wait_for_fault_pause("ROLLBACK")
    except BaseException:
        kill(proc)
        raise
    rb = Rollback.get(Rollback.state == "active")
    assert rb.owner_pid == proc.pid and rb.heartbeat_at is not None
    return proc, rb


def events(kind, contains):
    return [e.message for e in DeploymentEvent.select().where((DeploymentEvent.kind == kind) &
                                                              DeploymentEvent.message.contains(contains))]


def assert_serving(engine, docker_client, serving, other):
    """Store, current, route and running container all say `serving`; `other` is superseded and stopped."""
    assert Deployment.get_by_id(serving.id).status == "success"
    assert Deployment.get_by_id(other.id).status == "superseded"
    assert link_target(engine.paths.current("web")) == serving.id
    assert f"deployment {serving.id}" in engine.paths.route("web").read_text()
    assert running(docker_client, container_name("web", serving.id))
    assert not running(docker_client, container_name("web", other.id))
    assert not Rollback.select().where(Rollback.state == "active").exists()
    plan = engine.reconcile(dry_run=True)
    assert plan["drift"] == [] and plan["orphans"] == [] and plan["rollbacks"] == []


def test_killed_rollback_whose_target_answers_is_finished_by_reconcile(two_releases, docker_client, tmp_path):
    engine, first, second = two_releases
    proc, rb = rollback_paused(engine, tmp_path)
    try:
        assert engine.reconcile(dry_run=True)["rollbacks"] == [], "a live rollback (fresh heartbeat) is left alone"
    finally:
        kill(proc)
    with pytest.raises(InputError, match="already in progress .*its process is gone.*reconcile"):
        engine.rollback("web")
    # a cleanup task of a deployment the dead rollback involves: skipped, and said once, not every pass
    with engine.store.write():
        D.enqueue_cleanup(first.id, "superseded")
    cleaner = Cleaner(engine.ctx)
    for _ in range(3):
        with engine.store.write():
            CleanupTask.update(due_at=now()).where(CleanupTask.deployment == first.id).execute()
        assert cleaner.run_due(deployment_id=first.id)["skipped"] == 1
    assert len(events("cleanup", f"Skipping cleanup for deployment {first.id}")) == 1

    result = engine.reconcile()
    assert [(r["rollback_id"], r["result"]) for r in result["rollbacks"]] == [(rb.id, "finished")]
    assert "owner pid" in result["rollbacks"][0]["reason"]
    assert Rollback.get_by_id(rb.id).state == "completed"
    assert events("rollback", f"Reconcile: rollback of web to {first.id} finished")
    assert_serving(engine, docker_client, first, second)
    assert link_target(engine.paths.previous("web")) == second.id
    # the service can be rolled back again
    assert engine.rollback("web").state == "completed"
    assert_serving(engine, docker_client, second, first)


def test_killed_rollback_whose_target_does_not_answer_is_undone_by_reconcile(two_releases, docker_client,
                                                                             tmp_path):
    engine, first, second = two_releases
    proc, rb = rollback_paused(engine, tmp_path)
    kill(proc)
    docker_client.api.stop(container_name("web", first.id), timeout=1)  # the target died with the rollback
    result = engine.reconcile()
    assert [(r["rollback_id"], r["result"]) for r in result["rollbacks"]] == [(rb.id, "undone")]
    row = Rollback.get_by_id(rb.id)
    assert row.state == "failed" and row.error.startswith("interrupted") and "reconcile" in row.error
    assert events("rollback", f"Reconcile: rollback of web to {first.id} undone")
    assert_serving(engine, docker_client, second, first)
    assert link_target(engine.paths.previous("web")) == first.id, "the target stays the rollback target"
    assert engine.rollback("web").state == "completed"


def test_rollback_without_a_heartbeat_for_the_zombie_window_is_recovered(two_releases, docker_client):
    """An owner on another machine (its pid cannot be checked here) is judged by its heartbeat alone."""
    engine, first, second = two_releases
    engine.settings.scheduler.zombie_after = 5
    with engine.store.write():
        rb = Rollback.create(service=first.service, from_deployment=second.id, to_deployment=first.id,
                             owner="elsewhere:1:1", owner_machine="elsewhere", owner_pid=1,
                             heartbeat_at=now() - 3)
    assert engine.reconcile()["rollbacks"] == [], "inside the zombie window it is left alone"
    with engine.store.write():
        Rollback.update(heartbeat_at=now() - 6).where(Rollback.id == rb.id).execute()
    result = engine.reconcile()
    assert [r["result"] for r in result["rollbacks"]] == ["undone"]  # the target's container was never started
    assert "no heartbeat for" in result["rollbacks"][0]["reason"]
    assert_serving(engine, docker_client, second, first)


def test_sigterm_during_rollback_undoes_it_before_the_process_ends(two_releases, docker_client, tmp_path):
    engine, first, second = two_releases
    proc, rb = rollback_paused(engine, tmp_path)
    assert link_target(engine.paths.current("web")) == first.id and running(docker_client,
                                                                           container_name("web", first.id))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130  # after the undo (stopping the target's container takes a few seconds)
    row = Rollback.get_by_id(rb.id)
    assert row.state == "failed" and row.error.startswith("interrupted")
    assert_serving(engine, docker_client, second, first)
    assert link_target(engine.paths.previous("web")) == first.id


def test_a_store_from_before_rollback_owners_migrates_in_place(engine, tmp_path):
    engine.add_service("web", str(make_service_dir(tmp_path / "web")))
    dep = engine.create_deployment("web")
    with engine.store.write():
        Rollback.create(service=dep.service, to_deployment=dep.id, state="completed")
        downgrade_to_v1(engine.store)
    assert migrations.migrate(engine.store) == migrations.LATEST
    row = Rollback.get()
    assert row.state == "completed" and row.to_deployment_id == dep.id and row.owner is None


def test_running_engine_recovers_a_lost_rollback_within_the_zombie_window(two_releases, docker_client):
    """With the engine running: cleanup re-checks every couple of seconds while the rollback holds it back, but says
    so once; the scheduled reconcile undoes the rollback once its heartbeat is older than `zombie_after`."""
    engine, first, second = two_releases
    engine.settings.scheduler.zombie_after = 6
    with engine.store.write():  # the owner ran on another machine, so only its heartbeat can tell
        rb = Rollback.create(service=first.service, from_deployment=second.id, to_deployment=first.id,
                             owner="elsewhere:1:1", owner_machine="elsewhere", owner_pid=1, heartbeat_at=now())
        D.enqueue_cleanup(first.id, "superseded")
    runtime = engine.start_runtime()
    wait_for(lambda: Rollback.get_by_id(rb.id).state != "active", timeout=30, what="reconcile to recover it")
    assert now() - rb.heartbeat_at >= 6
    assert Rollback.get_by_id(rb.id).state == "failed"
    assert runtime.is_leader
    assert len(events("cleanup", f"Skipping cleanup for deployment {first.id}")) == 1
    assert events("rollback", f"Reconcile: rollback of web to {first.id} undone")
    assert_serving(engine, docker_client, second, first)
