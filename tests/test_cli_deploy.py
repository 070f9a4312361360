"""`deploy` in the foreground as an operator runs it: a progress line per phase, Ctrl-C cancels and cleans up."""
import json
import os
import signal
import subprocess
import time

from tests.cli import CLI, cli_env, run_cli
from tests.conftest import make_service_dir, wait_for


def test_deploy_prints_a_line_per_phase_and_json_keys(engine, tmp_path):
    env = cli_env(engine, DEPLOYER_HEALTH_TIMEOUT=20)
    src = make_service_dir(tmp_path / "web")
    assert run_cli(["service", "add", "web", "--source", str(src)], env).returncode == 0
    result = run_cli(["deploy", "web"], env, timeout=180)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert [line.split()[1] for line in lines] == ["PULLING_SOURCE", "BUILDING", "COPYING_FILES",
                                                   "CREATING_SYMLINKS", "UPDATING_ROUTES", "HEALTH_CHECK"]
    rows = json.loads(run_cli(["ls", "--json"], env).stdout)
    assert set(rows[0]) >= {"id", "service", "status", "phase", "host", "error", "created_at", "updated_at",
                            "finished_at"}
    shown = json.loads(run_cli(["show", rows[0]["id"], "--json"], env).stdout)
    assert shown["status"] == "success" and len(shown["phases"]) == 6 and shown["events"]


def test_ctrl_c_cancels_a_foreground_deploy_and_cleans_it(engine, tmp_path, docker_client):
    env = cli_env(engine, DEPLOYER_HEALTH_TIMEOUT=20)
    src = make_service_dir(tmp_path / "slow", extra="RUN sleep 30")
    assert run_cli(["service", "add", "slow", "--source", str(src)], env).returncode == 0
    proc = subprocess.Popen(CLI + ["deploy", "slow"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    from storage.models import Deployment
    dep = wait_for(lambda: Deployment.select().where(Deployment.phase == "BUILDING").first(), timeout=60,
                   what="BUILDING")
    time.sleep(1)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5
    assert proc.returncode != 0
    assert "cancelled" in out + err, (out, err)
    assert Deployment.get_by_id(dep.id).status == "cancelled"
    shown = json.loads(run_cli(["show", dep.id, "--json"], env).stdout)
    assert shown["cleanup"]["state"] == "done", shown["cleanup"]
    assert docker_client.api.containers(all=True, filters={"label": f"deployer.deployment_id={dep.id}"}) == []


def test_deploy_of_a_busy_service_waits_queued_saying_why_and_ctrl_c_cancels_it(engine, tmp_path):
    from console.engine import deployments as D
    from storage.clock import now
    from storage.models import Deployment
    env = cli_env(engine, DEPLOYER_HEALTH_TIMEOUT=20)
    src = make_service_dir(tmp_path / "web")
    assert run_cli(["service", "add", "web", "--source", str(src)], env).returncode == 0
    holder = engine.create_deployment("web")  # deploying, owned by this live process
    with engine.store.write():
        D.move(engine.store, holder.id, "deploying", owner=f"{D.MACHINE}:{os.getpid()}:1", owner_machine=D.MACHINE,
               owner_pid=os.getpid(), heartbeat_at=now(), phase="BUILDING", phase_started_at=now())
    proc = subprocess.Popen(CLI + ["deploy", "web"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    waiting = wait_for(lambda: Deployment.select().where(Deployment.wait_reason.is_null(False)).first(),
                       timeout=30, what="the deploy to wait for the service")
    assert waiting.status == "queued" and holder.id in waiting.wait_reason
    rows = json.loads(run_cli(["ls", "--json"], env).stdout)
    assert [r["wait_reason"] for r in rows if r["id"] == waiting.id] == [waiting.wait_reason]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert f"waits for deployment {holder.id}" in err, err
    assert Deployment.get_by_id(waiting.id).status == "cancelled"
    assert Deployment.get_by_id(holder.id).status == "deploying"
