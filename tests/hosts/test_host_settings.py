"""Issue 10, items 7-9 on the real engine: one run's hosts stay in that run (--docker-host, DEPLOYER_DOCKER_HOST,
[hosts] never reach the store, and --read-only leaves the store's bytes as they were); a dead host can be
decommissioned (`host rm --force`); commands that need an engine exit 3 when it does not answer, and `status`
probes instead of repeating what was stored.

A dead engine is a unix socket path nothing listens on; a wedged one is a socket that accepts and never answers."""
import hashlib
import json
import socket
import time
from pathlib import Path

import pytest

from console.engine import deployments as D
from console.engine import hosts as H
from storage.models import CleanupTask, Deployment, DeploymentEvent, Host
from tests.cli import cli_env, run_cli
from tests.conftest import make_service_dir

BAD = 'FROM deployer/base:busybox\nCMD ["httpd", "-f", "-p", "8080", "-h", "/nonexistent"]\n'


def cli(engine, *args, timeout=90, **env_extra):
    # this run's hosts come only from what a test gives: no DEPLOYER_DOCKER_HOST or config file of the caller's
    env = cli_env(engine, **{"DEPLOYER_DOCKER_HOST": None, "DEPLOYER_CONFIG": None, **env_extra})
    return run_cli(args, env, timeout)


def one_error_line(proc, code):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture
def dead(tmp_path):
    """The URL of a Docker engine that is not there: a socket path nothing listens on."""
    return f"unix://{tmp_path / 'none.sock'}"


@pytest.fixture
def silent(tmp_path):
    """A unix socket that accepts connections and never answers: a wedged engine."""
    path = tmp_path / "silent.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(50)
    yield f"unix://{path}"
    srv.close()


def store_bytes(engine) -> str:
    """sha256 of the store file and its WAL, after a checkpoint that empties the WAL: any write shows."""
    engine.store.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Path(engine.store.url)
    digest = hashlib.sha256(path.read_bytes())
    wal = Path(f"{path}-wal")
    digest.update(wal.read_bytes() if wal.exists() else b"")
    return digest.hexdigest()


def hosts_of(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return {r["name"]: r for r in json.loads(proc.stdout)}


@pytest.mark.sqlite_only  # the store file's bytes
def test_read_only_run_with_a_dead_docker_host_leaves_the_store_bytes_unchanged(engine, dead):
    assert cli(engine, "host", "ls").returncode == 0
    before = store_bytes(engine)
    for args in (["status"], ["host", "ls"], ["ls"], ["containers"], ["reconcile", "--dry-run"]):
        proc = cli(engine, "--read-only", "--docker-host", dead, *args)
        assert proc.returncode in (0, 3), (args, proc.stderr)
        assert store_bytes(engine) == before, f"--read-only {' '.join(args)} changed the store"
    proc = cli(engine, "--read-only", "status", DEPLOYER_DOCKER_HOST=dead)
    assert proc.returncode == 0, proc.stderr
    assert store_bytes(engine) == before


def test_a_runs_docker_host_and_config_hosts_stay_in_that_run(engine, dead, tmp_path):
    # neither the flag nor the environment is written to the store, read-only or not
    for extra in ([], ["--read-only"]):
        local = hosts_of(cli(engine, *extra, "--docker-host", dead, "host", "ls", "--json"))["local"]
        assert local["reachable"] is False and local["source"] == "flag", local
    rows = hosts_of(cli(engine, "host", "ls", "--json", DEPLOYER_DOCKER_HOST=dead))
    assert rows["local"]["source"] == "env" and rows["local"]["reachable"] is False
    assert rows["local"]["url"] == dead
    assert Host.select().count() == 0, [h.url for h in Host.select()]
    # later commands talk to the default engine again
    rows = hosts_of(cli(engine, "host", "ls", "--json"))
    assert rows["local"]["reachable"] is True and rows["local"]["source"] == "default", rows["local"]
    src = make_service_dir(tmp_path / "src")
    assert cli(engine, "service", "add", "web", "--source", str(src)).returncode == 0
    proc = cli(engine, "deploy", "web", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["host"] == "local", proc.stderr
    # [hosts] of the config file apply to the runs that read it; `host add` hosts live in the store
    config = tmp_path / "other.toml"
    config.write_text(f'[hosts.far]\nurl = "{dead}"\n')
    assert cli(engine, "host", "add", "kept", dead, "--force").returncode == 0
    rows = hosts_of(cli(engine, "host", "ls", "--json", "--no-probe", DEPLOYER_CONFIG=str(config)))
    assert {n: r["source"] for n, r in rows.items()} == {"local": "default", "far": "config", "kept": "store"}
    assert [h.name for h in Host.select()] == ["kept"]
    rows = hosts_of(cli(engine, "host", "ls", "--json", "--no-probe"))
    assert set(rows) == {"local", "kept"}
    one_error_line(cli(engine, "host", "rm", "far", DEPLOYER_CONFIG=str(config)), 2)


def test_host_rm_force_abandons_the_open_cleanups_of_a_dead_host_and_removes_it(engine, dead, tmp_path):
    engine.settings.scheduler.host_timeout = 2.0
    H.add_host(engine, "gone", dead, force=True)
    src = make_service_dir(tmp_path / "bad", dockerfile=BAD)
    engine.add_service("bad", str(src), host="gone")
    failed = engine.deploy("bad")
    assert failed.status == "failed" and "unreachable" in (failed.error or ""), failed.error
    queued = engine.create_deployment("bad")
    task = CleanupTask.get(CleanupTask.deployment == failed.id)
    assert task.state in ("pending", "running")
    proc = cli(engine, "host", "rm", "gone")
    assert "in use" in one_error_line(proc, 2)
    proc = cli(engine, "host", "rm", "gone", "--force")
    assert "pinned" in one_error_line(proc, 2)   # a service pinned to it must be moved first
    engine.add_service("bad", str(src), replace=True)

    proc = cli(engine, "host", "rm", "gone", "--force")
    assert proc.returncode == 0, proc.stderr
    assert Host.get_or_none(Host.name == "gone") is None and "gone" not in engine.hosts.names()
    assert Deployment.get_by_id(queued.id).status == "cancelled"
    for dep_id in (failed.id, queued.id):
        tasks = list(CleanupTask.select().where(CleanupTask.deployment == dep_id))
        assert tasks and all(t.state == "abandoned" and t.finished_at for t in tasks), [t.state for t in tasks]
        events = [e.message for e in DeploymentEvent.select().where(
            (DeploymentEvent.deployment == dep_id) & (DeploymentEvent.kind == "cleanup"))]
        assert any("abandoned" in m and dead in m and "may remain" in m for m in events), events
    # abandoned is terminal: a cleanup run does not pick them up again
    proc = cli(engine, "cleanup", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["plan"] == []
    assert {t.state for t in CleanupTask.select()} == {"abandoned"}


def test_commands_that_need_an_engine_exit_3_when_it_does_not_answer(engine, dead, tmp_path):
    src = make_service_dir(tmp_path / "src")
    engine.add_service("web", str(src))
    flag = ["--docker-host", dead]
    t0 = time.monotonic()
    line = one_error_line(cli(engine, *flag, "deploy", "web", DEPLOYER_HOST_TIMEOUT="2"), 3)
    assert "local" in line and time.monotonic() - t0 < 15
    assert Deployment.select().count() == 0 and CleanupTask.select().count() == 0   # nothing recorded
    for args in (["containers"], ["containers", "--all"], ["reconcile"], ["reconcile", "--dry-run"]):
        line = one_error_line(cli(engine, *flag, *args), 3)
        assert "local" in line, (args, line)
    # cleanup needs the engine of its open tasks
    dep = engine.create_deployment("web")
    D.move(engine.store, dep.id, "failed", error="made to fail")
    line = one_error_line(cli(engine, *flag, "cleanup"), 3)
    assert "local" in line
    task = CleanupTask.get(CleanupTask.deployment == dep.id)
    assert task.state == "pending" and task.attempts == 0
    # one host down of two: the answer of the other, and a warning naming the dead one
    H.add_host(engine, "gone", dead, force=True)
    proc = cli(engine, "containers", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [] and "gone" in proc.stderr and "warning" in proc.stderr
    proc = cli(engine, "reconcile")
    assert proc.returncode == 0 and "gone" in proc.stderr, proc.stderr
    proc = cli(engine, "cleanup")
    assert proc.returncode == 0, proc.stderr
    assert CleanupTask.get(CleanupTask.deployment == dep.id).state == "done"


def test_status_probes_the_hosts_instead_of_repeating_the_store(engine, dead):
    H.add_host(engine, "gone", dead, force=True)
    Host.update(reachable=True, last_error=None).execute()   # what an earlier pass stored
    t0 = time.monotonic()
    proc = cli(engine, "status", "--json", DEPLOYER_HOST_TIMEOUT="2")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 15
    hosts = {h["name"]: h for h in json.loads(proc.stdout)["hosts"]}
    assert hosts["gone"]["reachable"] is False and hosts["gone"]["last_error"]
    assert hosts["local"]["reachable"] is True
    proc = cli(engine, "--docker-host", dead, "status")
    assert proc.returncode == 0, proc.stderr
    local = next(line for line in proc.stdout.splitlines() if line.startswith("local "))
    assert "DOWN" in local, proc.stdout


def test_base_image_against_an_engine_that_never_answers_gives_up_within_host_timeout(engine, silent):
    t0 = time.monotonic()
    proc = cli(engine, "--docker-host", silent, "base-image", DEPLOYER_HOST_TIMEOUT="2", timeout=60)
    took = time.monotonic() - t0
    one_error_line(proc, 3)
    assert took < 2 + 5, took   # the timeout plus the CLI's start-up


def test_a_local_row_an_older_version_wrote_can_be_removed_and_the_default_socket_is_used_again(engine, dead):
    Host.insert(name="local", url=dead, is_default=True).execute()   # what `--docker-host dead` wrote before
    rows = hosts_of(cli(engine, "host", "ls", "--json"))
    assert rows["local"]["source"] == "store" and rows["local"]["reachable"] is False
    proc = cli(engine, "host", "rm", "local")
    assert proc.returncode == 0, proc.stderr
    rows = hosts_of(cli(engine, "host", "ls", "--json"))
    assert rows["local"]["source"] == "default" and rows["local"]["reachable"] is True and rows["local"]["default"]
    assert "local" in one_error_line(cli(engine, "host", "rm", "local"), 2)   # the default itself cannot go


def test_the_status_bar_checks_the_hosts_only_this_run_knows(engine, dead):
    from console.config import load
    from console.engine.core import Engine
    st = {h["name"]: h for h in engine.status()["hosts"]}
    assert st["local"]["reachable"] is True and st["local"]["source"] == "default"
    other = Engine(load(data_dir=str(engine.settings.data_dir), docker_host=dead,
                        **({"db": engine.settings.store.db} if engine.settings.store.db else {})))
    try:
        st = {h["name"]: h for h in other.status()["hosts"]}
        assert st["local"]["reachable"] is False and st["local"]["source"] == "flag"
    finally:
        other.hosts.close()
    assert Host.select().count() == 0


def test_host_add_is_all_or_nothing_and_force_adds_an_unreachable_host_saying_so(engine, dead, silent):
    engine.settings.scheduler.host_timeout = 2.0
    # a dead engine, with and without --base-image: exit 3, one line, nothing added
    for args in (["host", "add", "gone", dead, "--base-image"], ["host", "add", "gone", dead],
                 ["host", "add", "wedged", silent]):
        t0 = time.monotonic()
        proc = cli(engine, *args, DEPLOYER_HOST_TIMEOUT="2")
        one_error_line(proc, 3)
        assert "not added" in proc.stderr and "--force" in proc.stderr, proc.stderr
        assert time.monotonic() - t0 < 15, "the probe is bounded by host_timeout"
    assert Host.select().count() == 0
    # --force: added, marked down, and the output says it is unreachable
    proc = cli(engine, "host", "add", "gone", dead, "--force", "--base-image", DEPLOYER_HOST_TIMEOUT="2")
    assert proc.returncode == 0, proc.stderr
    assert "added" in proc.stdout and "unreachable" in proc.stdout, proc.stdout
    row = Host.get(Host.name == "gone")
    assert row.reachable is False and row.last_error
    audit = [e.message for e in DeploymentEvent.select().where(DeploymentEvent.kind == "audit")]
    assert any("gone added" in m and "unreachable" in m for m in audit), audit
