"""Small truths (issue 10, item 12): names Docker can use, no silently dropped volumes or env keys, an actor that is a
name, phase rows that do not stay `running` after their pipeline died, `containers` marking as orphan exactly what
reconcile sweeps, and a DURATION that is the deployment's own run time."""
import os
import pwd

import pytest

from console.engine import deployments as D
from console.engine.errors import InputError
from storage.models import Deployment, DeploymentEvent, PhaseRun, Service
from tests.reliability import cli_env, kill, run_cli, spawn, wait_for_fault_pause


# --------------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("name", ["web-", "-web", "a..b", "Web", "a_b", "a.b", "web--", "w" * 41])
def test_a_service_name_docker_cannot_use_is_refused(engine, service_dir, name):
    with pytest.raises(InputError, match="invalid service name"):
        engine.add_service(name, str(service_dir))
    proc = run_cli(["service", "add", "--source", str(service_dir), "--", name], cli_env(engine.settings))
    assert proc.returncode == 2 and proc.stderr.startswith("error: invalid service name")
    assert Service.select().count() == 0


def test_names_in_dockers_grammar_are_accepted_and_build(engine, service_dir):
    for name in ("web-2", "a--b", "w" * 40):
        engine.add_service(name, str(service_dir))
    assert engine.deploy("web-2").status == "success"


# ------------------------------------------------------------------------------------------ volumes and env
@pytest.mark.parametrize("volumes, shared, message", [
    (["data:/data", "data:/other"], [], "volume name 'data' is given twice"),
    (["data:/data"], ["data:/shared"], "volume name 'data' is given twice"),
    (["a:/data", "b:/data/"], [], "two volumes mount at /data"),
    (["a:/srv/data"], ["b:/srv/./data"], "two volumes mount at /srv/data"),
])
def test_a_volume_given_twice_is_refused(engine, service_dir, volumes, shared, message):
    with pytest.raises(InputError, match=message):
        engine.add_service("web", str(service_dir), volumes=volumes, shared_volumes=shared)
    assert Service.select().count() == 0


def test_an_env_key_given_twice_is_refused_without_its_values(engine, service_dir):
    with pytest.raises(InputError, match="env key 'TOKEN' is given twice") as e:
        engine.add_service("web", str(service_dir), env=["TOKEN=first-secret", "OTHER=1", "TOKEN=second-secret"])
    assert "secret" not in str(e.value)
    args = ["service", "add", "web", "--source", str(service_dir), "--env", "A=x1", "--env", "A=x2"]
    proc = run_cli(args, cli_env(engine.settings))
    assert proc.returncode == 2 and "env key 'A' is given twice" in proc.stderr and "x1" not in proc.stderr
    assert Service.select().count() == 0


# -------------------------------------------------------------------------------------------------- actor
def test_the_actor_is_the_login_name_when_user_and_logname_are_unset(engine, service_dir, monkeypatch):
    name = pwd.getpwuid(os.getuid()).pw_name
    for var in ("USER", "LOGNAME", "SSH_CLIENT", "SSH_CONNECTION"):
        monkeypatch.delenv(var, raising=False)
    assert D.actor() == name
    engine.add_service("web", str(service_dir))
    dep = engine.create_deployment("web")
    env = {k: v for k, v in cli_env(engine.settings).items() if k not in ("USER", "LOGNAME")}
    proc = run_cli(["cancel", dep.id], env)
    assert proc.returncode == 0, proc.stderr
    event = DeploymentEvent.get((DeploymentEvent.deployment == dep.id) & (DeploymentEvent.kind == "deployment") &
                                DeploymentEvent.message.contains("cancelled by"))
    assert event.message.endswith(f"cancelled by {name}") and event.actor == name


# ------------------------------------------------------------------------------------- phase rows of the dead
def _killed_in(engine, tmp_path, phase):
    proc = spawn(["deploy", "web"], cli_env(engine.settings, fault=f"{phase}:60"), tmp_path / "deploy.log")
    try:
        dep = wait_for_fault_pause(phase)
    finally:
        kill(proc)
    open_rows = list(PhaseRun.select().where((PhaseRun.deployment == dep.id) & PhaseRun.finished_at.is_null()))
    assert [r.phase for r in open_rows] == [phase], "the killed pipeline left its phase row open"
    return dep


def _phases(dep_id):
    return {r.phase: r for r in PhaseRun.select().where(PhaseRun.deployment == dep_id)}


def test_a_zombie_failed_by_reconcile_has_no_running_phase_rows(engine, service_dir, tmp_path):
    engine.add_service("web", str(service_dir))
    engine.settings.zombie_policy = "fail"
    dep = _killed_in(engine, tmp_path, "COPYING_FILES")
    result = engine.reconcile()
    assert [z["deployment_id"] for z in result["zombies"]] == [dep.id]
    assert Deployment.get_by_id(dep.id).status == "failed"
    rows = _phases(dep.id)
    assert all(r.finished_at is not None for r in rows.values())
    assert rows["COPYING_FILES"].outcome == "interrupted" and "pipeline gone" in rows["COPYING_FILES"].detail
    assert rows["BUILDING"].outcome == "done"
    shown = engine.show(dep.id)["phases"]
    assert "running" not in [p["outcome"] or "running" for p in shown]


def test_a_cancelled_dead_pipeline_has_no_running_phase_rows(engine, service_dir, tmp_path):
    engine.add_service("web", str(service_dir))
    dep = _killed_in(engine, tmp_path, "BUILDING")
    engine.cancel(dep.id)
    rows = _phases(dep.id)
    assert Deployment.get_by_id(dep.id).status == "cancelled"
    assert rows["BUILDING"].outcome == "interrupted" and rows["BUILDING"].finished_at is not None
    assert "cancelled it" in rows["BUILDING"].detail
