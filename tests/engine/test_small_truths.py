"""Small truths (issue 10, item 12): names Docker can use, no silently dropped volumes or env keys, an actor that is a
name, phase rows that do not stay `running` after their pipeline died, `containers` marking as orphan exactly what
reconcile sweeps, and a DURATION that is the deployment's own run time."""
import os
import pwd
import uuid

import pytest

from console.engine import deployments as D
from console.engine import labels as L
from console.engine.docker_gateway import BASE_IMAGE
from console.engine.errors import InputError
from storage.models import Deployment, DeploymentEvent, PhaseRun, Service
from tests.cli import run_cli
from tests.reliability import fast_env, kill, spawn, wait_for_fault_pause


# --------------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("name", ["web-", "-web", "a..b", "Web", "a_b", "a.b", "web--", "w" * 41])
def test_a_service_name_docker_cannot_use_is_refused(engine, service_dir, name):
    with pytest.raises(InputError, match="invalid service name"):
        engine.add_service(name, str(service_dir))
    proc = run_cli(["service", "add", "--source", str(service_dir), "--", name], fast_env(engine.settings))
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
    proc = run_cli(args, fast_env(engine.settings))
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
    env = {k: v for k, v in fast_env(engine.settings).items() if k not in ("USER", "LOGNAME")}
    proc = run_cli(["cancel", dep.id], env)
    assert proc.returncode == 0, proc.stderr
    event = DeploymentEvent.get((DeploymentEvent.deployment == dep.id) & (DeploymentEvent.kind == "deployment") &
                                DeploymentEvent.message.contains("cancelled by"))
    assert event.message.endswith(f"cancelled by {name}") and event.actor == name


# ------------------------------------------------------------------------------------- phase rows of the dead
def _killed_in(engine, tmp_path, phase):
    proc = spawn(["deploy", "web"], fast_env(engine.settings, fault=f"{phase}:60"), tmp_path / "deploy.log")
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
    engine.settings.scheduler.zombie_policy = "fail"
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


# -------------------------------------------------------------------------------- containers vs reconcile
def _create(client, name, labels, running=False):
    c = client.api.create_container(BASE_IMAGE, command=["sleep", "300"], name=name, labels=labels,
                                    host_config=client.api.create_host_config(init=True))
    if running:
        client.api.start(c["Id"])
    return c["Id"]


def test_containers_marks_as_orphan_exactly_what_reconcile_would_sweep(engine, service_dir, docker_client):
    engine.settings.scheduler.orphan_grace = 0
    engine.add_service("web", str(service_dir))
    sid, token, project = engine.store_id, uuid.uuid4().hex[:6], engine.service("web").project_id
    ghost = uuid.uuid4().hex[:12]
    # a failed deployment whose cleanup is still queued: cleanup owns it, reconcile leaves it alone
    failed = engine.create_deployment("web")
    D.move(engine.store, failed.id, "failed", error="test", cleanup_delay=3600)
    superseded = engine.create_deployment("web")
    for to in ("deploying", "success", "superseded"):
        D.move(engine.store, superseded.id, to)
    ids = {
        "ghost": _create(docker_client, f"sm-{token}-ghost", L.deployment_labels(sid, ghost, "web", project)),
        "queued-cleanup": _create(docker_client, f"sm-{token}-failed",
                                  L.deployment_labels(sid, failed.id, "web", project)),
        "superseded": _create(docker_client, f"sm-{token}-superseded",
                              L.deployment_labels(sid, superseded.id, "web", project)),
        "suffix": _create(docker_client, f"sm-{token}-suffix",
                          {**L.deployment_labels(sid, ghost, "web", project), L.DEPLOYMENT: f"{ghost}-x"}),
        "upper": _create(docker_client, f"sm-{token}-upper",
                         {**L.deployment_labels(sid, ghost, "web", project), L.DEPLOYMENT: "ABCDEF012345"}),
        "project-scope": _create(docker_client, f"sm-{token}-scope",
                                 {**L.deployment_labels(sid, ghost, "web", project), L.SCOPE: "project"}),
        "no-deployment": _create(docker_client, f"sm-{token}-nodep",
                                 {L.MANAGED: "true", L.STORE: sid, L.SERVICE: "web"}, running=True),
    }
    short = {cid[:12]: what for what, cid in ids.items()}
    plan = engine.reconcile(dry_run=True)
    swept = {short[o["id"][:12]] for o in plan["orphans"] if o["kind"] == "container"}
    rows = {short[r["id"]]: r for r in engine.containers(all=True) if r["id"] in short}
    assert swept == {"ghost"}
    assert {what for what, r in rows.items() if r["orphan"]} == swept
    assert {what for what, r in rows.items() if r["foreign"]} == {"suffix", "upper", "project-scope",
                                                                   "no-deployment"}
    assert not rows["queued-cleanup"]["orphan"] and not rows["superseded"]["orphan"]
    proc = run_cli(["containers", "--all"], fast_env(engine.settings, orphan_grace=0))
    marks = {line.split()[1]: line.split()[-1] for line in proc.stdout.splitlines()[1:] if f"sm-{token}" in line}
    assert marks[f"sm-{token}-ghost"] == "orphan" and marks[f"sm-{token}-suffix"] == "foreign"

    # the pass sweeps exactly that, and the look-alikes stay
    engine.reconcile()
    left = {short[r["id"]] for r in engine.containers(all=True) if r["id"] in short}
    assert left == set(ids) - {"ghost"}


# ------------------------------------------------------------------------------------------------ duration
def test_finished_at_is_the_runs_own_end_whatever_supersedes_or_rolls_back(engine, service_dir):
    engine.add_service("web", str(service_dir))
    a, b, c = (engine.deploy("web") for _ in range(3))
    assert a.status == b.status == c.status == "success"
    ended = {d.id: d.finished_at for d in (a, b, c)}
    assert Deployment.get_by_id(a.id).status == "superseded"
    engine.rollback("web")                 # b serves again, c is superseded
    assert Deployment.get_by_id(b.id).status == "success"
    engine.rollback("web", to=a.id)        # a serves again, b is superseded
    assert {d.id: d.finished_at for d in Deployment.select()} == ended
    assert {d.id: d.status for d in Deployment.select()} == {a.id: "success", b.id: "superseded",
                                                             c.id: "superseded"}
    # the default target is still the release that served last, not the newest run
    engine.rollback("web")
    assert Deployment.get_by_id(b.id).status == "success"
    assert {d.id: d.finished_at for d in Deployment.select()} == ended
    rows = {r["id"]: r for r in engine.deployments()}
    for dep in (a, b, c):
        assert rows[dep.id]["finished_at"] - Deployment.get_by_id(dep.id).started_at < 120
