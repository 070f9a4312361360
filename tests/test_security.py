"""Security checks (issue 6): private files and directories, `--read-only` refusing every mutation, the actor on
every operator action, and secrets given with `--env` never shown (events, logs, `--json`, files under the data
dir). Everything goes through the installed `deployer-console` binary against a real store and the real engine."""
import json
import stat
import subprocess

import pytest

from console.cli import cli
from console.engine import deployments as D
from console.engine import labels as L
from console.engine.cleanup import Cleaner
from storage.clock import now
from storage.models import MODELS, Deployment, DeploymentEvent
from tests.cli import CLI, cli_env, run_cli
from tests.conftest import make_service_dir, wait_for

SECRET = "s3cr3t-Value-0f-the-token"
OTHER_SECRET = "pl41n-looking-but-secret"


def env_for(engine, **extra) -> dict:
    return cli_env(engine, DEPLOYER_HEALTH_TIMEOUT=20, **extra)


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
    env = cli_env(DEPLOYER_DB=None)
    data = tmp_path / "deep" / "er" / "data"
    result = run_cli(["--data-dir", str(data), "--db", str(tmp_path / "elsewhere" / "store.db"), "ls"], env)
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
        if not hasattr(group, "commands"):
            return True   # a command: the words after it are its arguments
        if word not in group.commands:
            return False
        group = group.commands[word]
    return True


def _words(args: list[str]) -> list[str]:
    """The command words of an argument list: up to its first option."""
    words = []
    for a in args:
        if a.startswith("-"):
            break
        words.append(a)
    return words


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
    assert _exists(_words(args)), f"`{name}` is not a command: this test would prove nothing"
    before, docker_before = dump(), _store_resources(docker_client, engine.store_id)
    env = env_for(engine)
    if how == "flag":
        result = run_cli(["--read-only"] + args, env, timeout=60)
    else:
        result = run_cli(args, dict(env, DEPLOYER_READ_ONLY="1"), timeout=60)
    assert result.returncode == 2, (name, result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "read-only" in lines[0], (name, result.stderr)
    assert dump() == before, f"`{name}` changed the store in read-only mode"
    assert _store_resources(docker_client, engine.store_id) == docker_before


def test_a_read_only_engine_only_follows(engine, ro_world):
    """`engine --read-only` is a follower by design (it never takes the lease): it must not run the queued
    deployment nor the due cleanup task while it runs. It must really run all that time (an engine that crashed at
    start would also leave both alone), and the same world with a plain engine does get its cleanup task done (so
    there was something a leader would have done)."""
    from storage.models import CleanupTask
    env = env_for(engine, DEPLOYER_DISPATCH_INTERVAL=0.5, DEPLOYER_CLEANUP_INTERVAL=0.5, DEPLOYER_LEASE_RETRY=0.5)
    task = CleanupTask.get(CleanupTask.deployment == ro_world["failed"])
    assert task.state == "pending" and task.due_at <= now()
    proc = subprocess.Popen(CLI + ["--read-only", "engine"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ended = proc.wait(6)   # None: still running after a dozen dispatch and cleanup ticks
    except subprocess.TimeoutExpired:
        ended = None
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert ended is None, f"the read-only engine ended within 6 s (exit {ended}), so it proved nothing: {err}"
    assert "started" in err and "read-only: following only" in err, err
    assert Deployment.get_by_id(ro_world["queued"]).status == "queued"
    assert CleanupTask.get_by_id(task.id).state == "pending"

    leader = subprocess.Popen(CLI + ["engine"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: CleanupTask.get_by_id(task.id).state == "done", timeout=60,
                 what="a plain engine to run the due cleanup task")
    finally:
        leader.terminate()
        leader.wait(timeout=30)


@pytest.mark.parametrize("args", [["ls"], ["ls", "--json"], ["service", "ls"],
                                  ["containers", "--all", "--host", "local"], ["cleanup", "--dry-run"],
                                  ["reconcile", "--dry-run"], ["host", "ls", "--no-probe"], ["status"]])
def test_read_only_still_reads(engine, ro_world, args):
    assert _exists(_words(args)), f"`{' '.join(args)}` is not a command: this test would prove nothing"
    result = run_cli(["--read-only"] + args, env_for(engine), timeout=60)
    assert result.returncode == 0, (args, result.stderr)


# ---------------------------------------------------------------------------------------------- the actor
def test_every_operator_action_records_the_actor_with_the_ssh_client_address(engine, service_dir):
    env = env_for(engine, USER="alice", SSH_CLIENT="203.0.113.7 52311 22")
    env.pop("SSH_CONNECTION", None)
    actor = "alice@203.0.113.7"
    assert run_cli(["service", "add", "web", "--source", str(service_dir)], env).returncode == 0
    result = run_cli(["deploy", "web", "--detach", "--json"], env)
    assert result.returncode == 0, result.stderr
    queued = json.loads(result.stdout)["id"]
    assert Deployment.get_by_id(queued).actor == actor
    assert run_cli(["cancel", queued], env).returncode == 0
    failed = engine.create_deployment("web")
    D.move(engine.store, failed.id, "failed", error="BUILDING: boom")
    assert run_cli(["resume", failed.id, "--detach"], env).returncode == 0
    assert run_cli(["cleanup"], env).returncode == 0
    result = run_cli(["deploy", "web"], env)  # foreground: the deployment row and its first event carry the actor too
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
    assert run_cli(["reconcile"], env).returncode == 0
    assert acted("Reconciliation pass run by")


# ---------------------------------------------------------------------------------------------- secrets
def test_env_secrets_never_appear_in_events_logs_json_or_files(engine, service_dir, docker_client):
    env = env_for(engine)
    outputs = []

    def cli_ok(*args):
        result = run_cli(list(args), env)
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
    bad = run_cli(["service", "add", "api", "--source", str(service_dir), "--env", f"BAD KEY={SECRET}"], env)
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
