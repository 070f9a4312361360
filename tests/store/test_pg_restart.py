"""A PostgreSQL store survives its server's restart (issue 15, item 3).

The test runs its own throwaway cluster (scripts/test-postgres on a free port and a private directory), never the
suite's shared one, because it restarts it with `pg_ctl restart -m fast` and stops it: an `engine` subprocess runs a
deployment and has cleanup tasks due while the server goes away twice. The deployment ends `success` (resumed if the
outage cut its pipeline), every cleanup task completes, the deployment has one container, and the engine holds the
lease again within 15 s after the server answers. While the server is down, the CLI prints one `store unreachable`
line and exits 4.
"""
import time

import pytest

from console.engine import labels as L
from storage.clock import now
from storage.models import CleanupTask, Deployment, Lease
from tests.cli import run_cli
from tests.conftest import make_settings, purge_store_resources, wait_for
from tests.pgcluster import Cluster
from tests.reliability import fast_env, spawn, stop_all, wait_for_fault_pause

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.down()


def _leader_since(pid: int, t: float) -> bool:
    row = Lease.get_or_none(Lease.name == "engine")
    return row is not None and row.holder_pid == pid and (row.renewed_at or 0) >= t and row.expires_at > now()


def test_engine_survives_two_postgres_restarts_during_a_deployment_with_cleanups_due(
        cluster, tmp_path, docker_client, base_image, service_dir, monkeypatch):
    from console.engine.core import Engine
    settings = make_settings(tmp_path / "data", db=cluster.url())
    monkeypatch.setenv("DEPLOYER_DB", settings.store.db)
    engine = Engine(settings)
    env = fast_env(settings, fault="HEALTH_CHECK:4")
    proc = spawn(["engine"], env, tmp_path / "engine.log")
    try:
        engine.add_service("web", str(service_dir))
        wait_for(lambda: _leader_since(proc.pid, 0), timeout=30, what="the engine to take the lease")
        dep = engine.deploy("web", detach=True)
        # three more deployments of the same service wait behind it; cancelled, each leaves a cleanup task due
        waiting = [engine.deploy("web", detach=True) for _ in range(3)]
        assert wait_for_fault_pause("HEALTH_CHECK").id == dep.id
        for w in waiting:
            engine.cancel(w.id)
        assert CleanupTask.select().where(CleanupTask.state.in_(["pending", "running"])).count() >= 1

        cluster.ctl("-m", "fast", "restart")                      # restart 1: while the pipeline is in HEALTH_CHECK
        answered = now()
        wait_for(lambda: _leader_since(proc.pid, answered), timeout=15, what="the leader back after restart 1")

        cluster.ctl("-m", "fast", "stop")                         # restart 2: down for a while, then up again
        try:
            t0 = time.monotonic()
            out = run_cli(["status"], env, timeout=60)
            assert out.returncode == 4, (out.returncode, out.stdout, out.stderr)
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: store unreachable: "), out.stderr
            assert time.monotonic() - t0 < 30
            time.sleep(2.0)  # past the leader's renew deadline in the subprocess (4 s) with the CLI's time
        finally:
            cluster.ctl("start")
        answered = now()
        wait_for(lambda: _leader_since(proc.pid, answered), timeout=15, what="the leader back ≤ 15 s after restart 2")

        final = wait_for(lambda: (d := Deployment.get_by_id(dep.id)).status in ("success", "failed") and d,
                         timeout=90, what="the deployment to end")
        assert final.status == "success", final.error
        wait_for(lambda: not CleanupTask.select().where(CleanupTask.state.in_(["pending", "running"])).exists(),
                 timeout=60, what="every cleanup task to complete")
        states = {t.state for t in CleanupTask.select()}
        assert states <= {"done"}, states
        ours = docker_client.containers.list(all=True, filters={"label": [
            f"{L.STORE}={engine.store_id}", f"{L.DEPLOYMENT}={dep.id}"]})
        assert len(ours) == 1 and ours[0].status == "running", [(c.name, c.status) for c in ours]
        assert proc.poll() is None, "the engine process is still running"
    finally:
        stop_all([proc])
        engine.close()
        purge_store_resources(docker_client, engine.store_id)
        print((tmp_path / "engine.log").read_text()[-6000:])


def test_a_foreground_deploy_waits_out_a_postgres_restart_and_resumes_itself(cluster, tmp_path, docker_client,
                                                                             base_image, service_dir, monkeypatch):
    """`deploy` in the foreground with no engine behind it: the server goes away while the pipeline is in
    HEALTH_CHECK; the CLI says it waits, resumes the deployment from its phase once the server answers, and ends
    `success` with exit 0 (before, it exited 4 and the deployment stayed `deploying` until an engine's zombie_after)."""
    import subprocess

    from console.engine.core import Engine
    from tests.cli import CLI
    settings = make_settings(tmp_path / "data", db=cluster.url())
    monkeypatch.setenv("DEPLOYER_DB", settings.store.db)
    engine = Engine(settings)
    try:
        engine.add_service("web", str(service_dir))
        env = fast_env(settings, fault="HEALTH_CHECK:4")
        proc = subprocess.Popen([*CLI, "deploy", "web"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            dep = wait_for_fault_pause("HEALTH_CHECK")
            cluster.ctl("-m", "fast", "stop")                     # down while the pipeline is paused in the phase
            time.sleep(6.0)                                       # the pause ends: its next write finds no server
            cluster.ctl("start")
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, (out, err)
        assert "resumes here once the store answers" in err and "the store answers again" in err, err
        final = Deployment.get_by_id(dep.id)
        assert final.status == "success" and final.attempts >= 1, (final.status, final.error)
        assert "Resuming deployment" in " ".join(e.message for e in final.events)
    finally:
        engine.close()
        purge_store_resources(docker_client, engine.store_id)
