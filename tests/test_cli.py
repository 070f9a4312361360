"""The CLI as an operator runs it (the installed `deployer-console` binary, real store, real engine): the `--json`
keys issue 2 promises, and bad input as one line on stderr with exit code 2 and no traceback."""
import json
import subprocess
import sys

import pytest

from console.engine import deployments as D
from tests.cli import cli_env, run_cli
from tests.conftest import make_service_dir

DEPLOYMENT_KEYS = {"id", "service", "status", "phase", "host", "error", "created_at", "updated_at", "finished_at"}
CONTAINER_KEYS = {"id", "name", "deployment_id", "service", "state", "host"}


@pytest.fixture
def cli(engine):
    env = cli_env(engine, DEPLOYER_HEALTH_TIMEOUT=20)

    def run(*args, timeout=120, input=None):
        return run_cli(args, env, timeout, input)
    return run


def one_error_line(result, code=2):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_json_keys_of_deployments_shows_and_containers(cli, engine, service_dir):
    assert cli("service", "add", "web", "--source", str(service_dir)).returncode == 0
    result = cli("deploy", "web", "--json")
    assert result.returncode == 0, result.stderr
    dep = json.loads(result.stdout)
    assert DEPLOYMENT_KEYS <= set(dep) and dep["status"] == "success" and dep["service"] == "web"

    rows = json.loads(cli("ls", "--json").stdout)
    assert [r["id"] for r in rows] == [dep["id"]] and DEPLOYMENT_KEYS <= set(rows[0])
    assert json.loads(cli("--json", "ls").stdout) == rows  # the global flag works the same

    shown = json.loads(cli("show", dep["id"], "--json").stdout)
    assert DEPLOYMENT_KEYS | {"phases", "events"} <= set(shown)
    assert [p["phase"] for p in shown["phases"]] == ["PULLING_SOURCE", "BUILDING", "COPYING_FILES",
                                                     "CREATING_SYMLINKS", "UPDATING_ROUTES", "HEALTH_CHECK"]
    assert all({"time", "level", "kind", "message", "actor"} <= set(e) for e in shown["events"])
    assert json.loads(cli("show", dep["id"][:6], "--json").stdout)["id"] == dep["id"]  # a unique prefix

    containers = json.loads(cli("containers", "--all", "--host", "local", "--json").stdout)
    assert len(containers) == 1 and CONTAINER_KEYS <= set(containers[0])
    assert containers[0]["deployment_id"] == dep["id"] and containers[0]["state"] == "running"

    queued = json.loads(cli("deploy", "web", "--detach", "--json").stdout)
    assert DEPLOYMENT_KEYS <= set(queued) and queued["status"] == "queued"
    cancelled = json.loads(cli("cancel", queued["id"], "--json").stdout)
    assert DEPLOYMENT_KEYS <= set(cancelled) and cancelled["status"] == "cancelled"
    assert json.loads(cli("ls", "--status", "cancelled", "--json").stdout)[0]["id"] == queued["id"]


def test_a_failing_deploy_exits_1_with_the_reason(cli, tmp_path):
    src = make_service_dir(tmp_path / "crash", dockerfile='FROM deployer/base:busybox\nCMD ["sh", "-c", "exit 3"]\n')
    assert cli("service", "add", "crash", "--source", str(src)).returncode == 0
    result = cli("deploy", "crash")
    assert result.returncode == 1
    assert "failed" in result.stdout and "UPDATING_ROUTES" in result.stdout  # it never answered: no route led to it
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args,needle", [
    (["show", "abcdef12"], "unknown deployment"),
    (["show", "../../etc"], "invalid deployment id"),
    (["cancel", "zzzz"], "invalid deployment id"),
    (["resume", "abcdef12"], "unknown deployment"),
    (["deploy", "nope"], "unknown service"),
    (["deploy", "Bad_Name"], "invalid service name"),
    (["service", "add", "api", "--source", "/nonexistent/dir"], "not a directory"),
    (["service", "add", "api"], "--source"),
    (["service", "add", "../api", "--source", "{src}"], "invalid service name"),
    (["service", "add", "api", "--source", "{src}", "--volume", "data:../../etc"], "invalid volume"),
    (["service", "add", "api", "--source", "{src}", "--volume", "../x:/data"], "invalid volume"),
    (["service", "add", "api", "--source", "{src}", "--port", "70000"], "invalid port"),
    (["service", "add", "api", "--source", "{src}", "--env", "A B=secret"], "invalid env"),
    (["ls", "--status", "exploded"], "exploded"),
    (["ls", "--host", "../x"], "invalid host name"),
    (["show"], "Missing argument"),
    (["no-such-command"], "No such command"),
    (["ls", "--no-such-flag"], "No such option"),
])
def test_bad_input_is_one_line_on_stderr_with_exit_2(cli, engine, service_dir, args, needle):
    line = one_error_line(cli(*[a.replace("{src}", str(service_dir)) for a in args]))
    assert needle in line, line


def test_an_illegal_move_is_one_line_with_exit_2(cli, engine, service_dir):
    engine.add_service("web", str(service_dir))
    dep = engine.create_deployment("web")
    D.move(engine.store, dep.id, "cancelled")
    line = one_error_line(cli("cancel", dep.id))
    assert "only queued or deploying" in line
    line = one_error_line(cli("resume", dep.id))
    assert "cancelled" in line


def test_a_bare_group_prints_its_help(cli, engine):
    result = cli("service")
    assert result.returncode == 0 and "Commands:" in result.stdout and result.stderr == ""


@pytest.mark.parametrize("args", [["ls", "--json"], ["status", "--json"], ["show", "--help"],
                                  ["service", "ls", "--json"]])
def test_a_read_command_imports_only_what_it_uses(engine, args):
    """The full CLI's start for read commands (`DEPLOYER_QUICK=0`, a PostgreSQL store, or a read the quick path hands
    over; tests/test_cli_quick.py holds the quick path's own, stricter shape): no docker-py (nor requests or
    paramiko), Textual, APScheduler, prometheus_client or apprise; on a SQLite store no PostgreSQL driver and none of
    playhouse's backends either. `status` pings the machine's engine on its unix
    socket without docker-py (console/engine/docker_ping.py)."""
    from console.engine.docker_ping import socket_path
    assert socket_path(None), "this test needs the machine's Docker engine on a unix socket (DOCKER_HOST unset)"
    heavy = ["docker", "requests", "paramiko", "textual", "apscheduler", "prometheus_client", "apprise"]
    if not engine.settings.store.db:
        heavy += ["psycopg2", "psycopg", "playhouse.migrate", "playhouse.db_url", "playhouse.postgres_ext"]
    code = ("import runpy, sys\n"
            f"sys.argv = ['deployer-console', *{args!r}]\n"
            "try:\n    runpy.run_module('console.cli', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            f"print(sorted(m for m in {heavy!r} if sys.modules.get(m) is not None), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(engine), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[]"
    if args[0] == "status":   # and it did ask the engine
        assert json.loads(result.stdout)["hosts"][0]["reachable"] is True, result.stdout
