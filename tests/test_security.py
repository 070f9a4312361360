"""Security checks (issue 6): private files and directories, `--read-only` refusing every mutation, the actor on
every operator action, and secrets given with `--env` never shown (events, logs, `--json`, files under the data
dir). Everything goes through the installed `deployer-console` binary against a real store and the real engine."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import cli
from console.engine import deployments as D
from console.engine import labels as L
from console.engine.cleanup import Cleaner
from storage.models import MODELS, Deployment, DeploymentEvent
from tests.conftest import make_service_dir

CLI = [str(Path(sys.executable).with_name("deployer-console"))]
if not Path(CLI[0]).exists():
    CLI = [sys.executable, "-m", "console.cli"]
SECRET = "s3cr3t-Value-0f-the-token"
OTHER_SECRET = "pl41n-looking-but-secret"


def env_for(engine, **extra) -> dict:
    env = dict(os.environ, DEPLOYER_DATA_DIR=str(engine.settings.data_dir), DEPLOYER_HEALTH_TIMEOUT="20", **extra)
    env.pop("DEPLOYER_READ_ONLY", None)
    if engine.settings.store.db:
        env["DEPLOYER_DB"] = engine.settings.store.db
    return env


def run(args, env, timeout=120):
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=timeout)


def dump() -> list:
    return [sorted(map(repr, m.select().tuples())) for m in MODELS]


# ---------------------------------------------------------------------------------------------- file modes
@pytest.mark.sqlite_only
def test_store_archive_release_and_route_files_are_0600_and_directories_0700(engine, tmp_path, service_dir):
    engine.add_service("web", str(service_dir), route_host="web.example.com")
    assert engine.deploy("web").status == "success"
    crash = make_service_dir(tmp_path / "crash", dockerfile='FROM deployer/base:busybox\n'
                             'CMD ["sh", "-c", "echo bye; exit 3"]\n')
    engine.add_service("crash", str(crash), volumes=["data:/data"])
    failed = engine.deploy("crash")
    assert failed.status == "failed"
    assert Cleaner(engine.ctx).run_due()["done"] == 1
    data = engine.settings.data_dir
    archive = data / "archive" / failed.id
    assert list(archive.glob("*.log.gz")) and list(archive.glob("*.tar.gz")), list(archive.iterdir())

    wrong = []
    for path in [data, *data.rglob("*")]:
        rel = path.relative_to(data)
        if len(rel.parts) >= 3 and rel.parts[0] == "releases" and rel.parts[2] == "source":
            continue  # the operator's own source tree, copied as it is
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if stat.S_IMODE(st.st_mode) != want:
            wrong.append(f"{rel} {oct(stat.S_IMODE(st.st_mode))}")
    assert wrong == [], wrong
    assert (data / "deployer.db").exists() and (data / "routes" / "web.yml").exists()
    assert (data / "releases" / failed.id).exists() is False


def test_a_new_data_dir_and_db_given_by_flags_are_private(tmp_path):
    env = dict(os.environ)
    env.pop("DEPLOYER_DB", None)
    data = tmp_path / "deep" / "er" / "data"
    result = run(["--data-dir", str(data), "--db", str(tmp_path / "elsewhere" / "store.db"), "ls"], env)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "elsewhere").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "elsewhere" / "store.db").stat().st_mode) == 0o600


# ---------------------------------------------------------------------------------------------- read-only
@pytest.fixture
def ro_world(engine, tmp_path, service_dir, docker_client):
    engine.add_service("web", str(service_dir))
    queued = engine.create_deployment("web")
    failed = engine.create_deployment("web")
    D.move(engine.store, failed.id, "failed", error="BUILDING: boom")
    with engine.store.write():
        engine.hosts.add("hx", "unix:///run/nonexistent-hx.sock")
    return {"queued": queued.id, "failed": failed.id, "source": str(service_dir)}


def _mutations(w) -> dict[str, list[str]]:
    return {
        "service add": ["service", "add", "api", "--source", w["source"]],
        "service add --replace": ["service", "add", "web", "--source", w["source"], "--replace", "--port", "9090"],
        "deploy": ["deploy", "web"],
        "deploy --detach": ["deploy", "web", "--detach"],
        "cancel": ["cancel", w["queued"]],
        "resume": ["resume", w["failed"]],
        "resume --detach": ["resume", w["failed"], "--detach"],
        "rollback": ["rollback", "web"],
        "cleanup": ["cleanup"],
        "reconcile": ["reconcile"],
        "host add": ["host", "add", "h9", "unix:///run/nonexistent-h9.sock"],
        "host rm": ["host", "rm", "hx"],
        "demo": ["demo", "--no-console"],
    }


# the mutations issue 6 names; every one must exist and be refused
REQUIRED = ["service add", "deploy", "cancel", "resume", "rollback", "cleanup", "reconcile", "host add", "host rm"]


def _exists(words: list[str]) -> bool:
    group = cli
    for word in words:
        if not hasattr(group, "commands") or word not in group.commands:
            return False
        group = group.commands[word]
    return True


def test_every_mutation_the_issue_names_exists():
    missing = [name for name in REQUIRED if not _exists(name.split())]
    assert missing == [], f"mutating commands not built yet: {missing}"


def _store_resources(client, store_id):
    flt = {"label": [f"{L.STORE}={store_id}"]}
    return (sorted(c["Id"] for c in client.api.containers(all=True, filters=flt)),
            sorted(i["Id"] for i in client.api.images(filters=flt)))


@pytest.mark.parametrize("name", list(_mutations({"queued": "q", "failed": "f", "source": "s"})))
@pytest.mark.parametrize("how", ["flag", "env"])
def test_read_only_refuses_every_mutation(engine, ro_world, docker_client, name, how):
    args = _mutations(ro_world)[name]
    words = [a for a in args if not a.startswith("-")][:2]
    if not _exists(words[:1]) or (len(words) > 1 and args[0] in ("service", "host") and not _exists(words)):
        pytest.skip(f"`{name}` does not exist (yet)")
    before, docker_before = dump(), _store_resources(docker_client, engine.store_id)
    env = env_for(engine)
    if how == "flag":
        result = run(["--read-only"] + args, env, timeout=60)
    else:
        result = run(args, dict(env, DEPLOYER_READ_ONLY="1"), timeout=60)
    assert result.returncode == 2, (name, result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "read-only" in lines[0], (name, result.stderr)
    assert dump() == before, f"`{name}` changed the store in read-only mode"
    assert _store_resources(docker_client, engine.store_id) == docker_before


def test_a_read_only_engine_only_follows(engine, ro_world):
    """`engine --read-only` is a follower by design (it never takes the lease): it must not run the queued
    deployment nor the due cleanup task while it runs."""
    if not _exists(["engine"]):
        pytest.skip("`engine` does not exist (yet)")
    from storage.models import CleanupTask
    proc = subprocess.Popen(CLI + ["--read-only", "engine"], env=env_for(engine), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(6)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.communicate(timeout=30)
    assert Deployment.get_by_id(ro_world["queued"]).status == "queued"
    assert CleanupTask.get(CleanupTask.deployment == ro_world["failed"]).state == "pending"


@pytest.mark.parametrize("args", [["ls"], ["ls", "--json"], ["service", "ls"],
                                  ["containers", "--all", "--host", "local"], ["cleanup", "--dry-run"],
                                  ["reconcile", "--dry-run"], ["host", "ls", "--no-probe"], ["status"]])
def test_read_only_still_reads(engine, ro_world, args):
    words = []
    for a in args:  # the command words, up to the first option
        if a.startswith("-"):
            break
        words.append(a)
    if not _exists(words):
        pytest.skip(f"`{' '.join(args)}` does not exist (yet)")
    result = run(["--read-only"] + args, env_for(engine), timeout=60)
    assert result.returncode == 0, (args, result.stderr)


# ---------------------------------------------------------------------------------------------- the actor
def test_every_operator_action_records_the_actor_with_the_ssh_client_address(engine, service_dir):
    env = env_for(engine, USER="alice", SSH_CLIENT="203.0.113.7 52311 22")
    env.pop("SSH_CONNECTION", None)
    actor = "alice@203.0.113.7"
    assert run(["service", "add", "web", "--source", str(service_dir)], env).returncode == 0
    result = run(["deploy", "web", "--detach", "--json"], env)
    assert result.returncode == 0, result.stderr
    queued = json.loads(result.stdout)["id"]
    assert Deployment.get_by_id(queued).actor == actor
    assert run(["cancel", queued], env).returncode == 0
    failed = engine.create_deployment("web")
    D.move(engine.store, failed.id, "failed", error="BUILDING: boom")
    assert run(["resume", failed.id, "--detach"], env).returncode == 0
    assert run(["cleanup"], env).returncode == 0
    result = run(["deploy", "web"], env)  # foreground: the deployment row and its first event carry the actor too
    assert result.returncode == 0, result.stderr
    foreground = Deployment.select().order_by(Deployment.created_at.desc()).first()
    assert foreground.actor == actor and foreground.status == "success"

    def acted(message_part, deployment=None):
        q = DeploymentEvent.select().where(DeploymentEvent.message.contains(message_part) &
                                           (DeploymentEvent.actor == actor))
        if deployment:
            q = q.where(DeploymentEvent.deployment == deployment)
        return q.exists()

    assert acted("Service web added")
    assert acted("queued", queued)
    assert acted("cancelled", queued)
    assert acted("Resume of", failed.id)
    assert acted("Cleanup run by")
    assert acted("queued", foreground.id) and acted("started", foreground.id)
    if _exists(["reconcile"]):
        assert run(["reconcile"], env).returncode == 0
        assert acted("Reconciliation pass run by")


# ---------------------------------------------------------------------------------------------- secrets
def test_env_secrets_never_appear_in_events_logs_json_or_files(engine, service_dir, docker_client):
    env = env_for(engine)
    outputs = []

    def cli_ok(*args):
        result = run(list(args), env)
        assert result.returncode == 0, (args, result.stderr)
        outputs.append(result.stdout + result.stderr)
        return result.stdout

    added = json.loads(cli_ok("service", "add", "web", "--source", str(service_dir), "--env",
                              f"API_TOKEN={SECRET}", "--env", f"GREETING={OTHER_SECRET}", "--json"))
    assert added["env"] == {"API_TOKEN": "***", "GREETING": "***"}
    listed = json.loads(cli_ok("service", "ls", "--json"))
    assert listed[0]["env"] == {"API_TOKEN": "***", "GREETING": "***"}
    dep = json.loads(cli_ok("deploy", "web", "--json"))
    assert dep["status"] == "success"
    cli_ok("show", dep["id"], "--json")
    cli_ok("show", dep["id"])
    cli_ok("ls", "--json")
    cli_ok("containers", "--all", "--json")
    # a mistyped --env must not echo the value either
    bad = run(["service", "add", "api", "--source", str(service_dir), "--env", f"BAD KEY={SECRET}"], env)
    assert bad.returncode == 2
    outputs.append(bad.stdout + bad.stderr)
    # the container itself does get the value (that is the point of --env)
    name = f"deployer-web-{dep['id']}"
    assert f"API_TOKEN={SECRET}" in docker_client.api.inspect_container(name)["Config"]["Env"]

    for text in outputs:
        assert SECRET not in text and OTHER_SECRET not in text, text
    for e in DeploymentEvent.select():
        assert SECRET not in e.message and OTHER_SECRET not in e.message, e.message
    release = json.loads((engine.paths.release(dep["id"]) / "release.json").read_text())
    assert release["env"] == ["API_TOKEN", "GREETING"]
    for path in engine.settings.data_dir.rglob("*"):
        if path.is_file() and not path.name.startswith("deployer.db"):
            data = path.read_bytes()
            assert SECRET.encode() not in data and OTHER_SECRET.encode() not in data, path


def test_read_only_refuses_queueing_a_deployment_through_the_engine_too(engine, ro_world):
    from console.engine.errors import ReadOnlyError
    before = Deployment.select().count()
    engine.settings.read_only = True
    try:
        with pytest.raises(ReadOnlyError):
            engine.create_deployment("web")
    finally:
        engine.settings.read_only = False
    assert Deployment.select().count() == before
