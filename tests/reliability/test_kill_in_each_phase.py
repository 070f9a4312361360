"""A `deployer-console deploy` process killed with SIGKILL in each of the six phases, with an engine running in this
process: the engine finds the zombie (its pid is provably gone) and resumes it from the recorded phase to `success`,
with no orphan and no duplicate container. With the `fail` policy it ends `failed` and cleaned. An operator's
`resume --from BUILDING` of a failed deployment reaches `success` (issue 4)."""
import time

import pytest

from console.engine import labels as L
from console.engine.paths import link_target
from console.engine.validate import PHASES
from storage.models import CleanupTask, Deployment, DeploymentEvent
from tests.cli import run_cli
from tests.conftest import wait_for
from tests.reliability import fast_env, kill, spawn, wait_for_fault_pause


def _ours(docker_client, store_id):
    return docker_client.api.containers(all=True, filters={"label": f"{L.STORE}={store_id}"})


def _killed_in(engine, tmp_path, phase):
    proc = spawn(["deploy", "web"], fast_env(engine.settings, fault=f"{phase}:60"), tmp_path / "deploy.log")
    try:
        dep = wait_for_fault_pause(phase)
    finally:
        kill(proc)
    row = Deployment.get_by_id(dep.id)
    assert row.status == "deploying" and row.phase == phase and row.owner_pid == proc.pid
    return row


@pytest.mark.parametrize("phase", PHASES)
def test_killed_deploy_is_resumed_to_success(engine, service_dir, docker_client, tmp_path, phase):
    engine.add_service("web", str(service_dir))
    engine.settings.scheduler.reconcile_interval = 1.0
    runtime = engine.start_runtime()
    wait_for(lambda: runtime.is_leader, timeout=5, what="the lease")
    dep = _killed_in(engine, tmp_path, phase)
    t0 = time.monotonic()
    wait_for(lambda: Deployment.get_by_id(dep.id).status not in ("deploying", "queued"), timeout=60,
             what="the engine to resume the zombie")
    row = Deployment.get_by_id(dep.id)
    assert row.status == "success", row.error
    assert row.attempts == 1, "resumed once, as the same deployment"
    assert time.monotonic() - t0 < 30
    assert DeploymentEvent.select().where((DeploymentEvent.deployment == dep.id) &
                                          DeploymentEvent.message.contains(f"from {phase} (zombie: owner pid")
                                          ).exists()
    containers = _ours(docker_client, engine.store_id)
    assert [c["Labels"][L.DEPLOYMENT] for c in containers] == [dep.id], "exactly one container: no duplicate"
    assert containers[0]["State"] == "running"
    assert link_target(engine.paths.current("web")) == dep.id
    plan = engine.reconcile(dry_run=True)
    assert plan["orphans"] == [] and plan["drift"] == [] and plan["zombies"] == [] and plan["in_grace"] == 0


def test_killed_deploy_with_fail_policy_ends_failed_and_cleaned(engine, service_dir, docker_client, tmp_path):
    engine.add_service("web", str(service_dir))
    engine.settings.scheduler.zombie_policy = "fail"
    runtime = engine.start_runtime()
    wait_for(lambda: runtime.is_leader, timeout=5, what="the lease")
    dep = _killed_in(engine, tmp_path, "UPDATING_ROUTES")  # its container is created and running by now
    assert len(_ours(docker_client, engine.store_id)) == 1
    wait_for(lambda: CleanupTask.select().where((CleanupTask.deployment == dep.id) &
                                                (CleanupTask.state == "done")).exists(), timeout=30,
             what="the failed zombie to be cleaned")
    row = Deployment.get_by_id(dep.id)
    assert row.status == "failed" and "zombie_policy=fail" in row.error and row.error.startswith("UPDATING_ROUTES")
    assert _ours(docker_client, engine.store_id) == []
    assert link_target(engine.paths.current("web")) is None, "a failed deployment does not stay current"
    assert not engine.paths.release(dep.id).exists()


def test_resume_from_building_of_a_failed_deployment_reaches_success(engine, service_dir, docker_client, tmp_path):
    engine.add_service("web", str(service_dir))
    engine.settings.scheduler.max_resume_attempts = 0   # the pass gives up at once: failed, with the reason
    engine.settings.cleanup.cleanup_delay = 3600      # the operator resumes before its cleanup is due
    dep = _killed_in(engine, tmp_path, "BUILDING")
    result = engine.reconcile()
    assert [z["deployment_id"] for z in result["zombies"]] == [dep.id]
    row = Deployment.get_by_id(dep.id)
    assert row.status == "failed" and "gave up after 0 resume attempts" in row.error
    proc = run_cli(["resume", dep.id, "--from", "BUILDING"], fast_env(engine.settings))
    assert proc.returncode == 0, proc.stderr
    assert "[2/6] BUILDING" in proc.stdout and "PULLING_SOURCE" not in proc.stdout
    row = Deployment.get_by_id(dep.id)
    assert row.status == "success" and row.attempts == 1
    assert [c["Labels"][L.DEPLOYMENT] for c in _ours(docker_client, engine.store_id)] == [dep.id]
