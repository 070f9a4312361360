"""The operator's toolbox (issue 13, items 3-7), run as an operator runs it: the installed `deployer-console` binary
against a real store (SQLite, or PostgreSQL under `make test-pg`) and the real Docker engine. The event stream and its
--follow, the audit trail of console and CLI actions, the engine's stderr log, `doctor`, --json errors."""
import datetime
import json
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

from console.engine import deployments as D
from console.engine import hosts as H
from storage.clock import now
from storage.models import Deployment
from tests.cli import CLI, cli_env, run_cli


@pytest.fixture
def cli(engine):
    def run(*args, timeout=120, **env):
        return run_cli(args, cli_env(engine, **env), timeout)
    return run


class Lines:
    """A subprocess's stream read line by line in a thread, so a test can wait for a line with a timeout."""

    def __init__(self, stream):
        self.q: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def wait_for(self, predicate, timeout: float) -> str | None:
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            self.seen.append(line)
            if predicate(line):
                return line
        return None


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_events_print_one_line_each_filter_and_json_lines_parse(cli, engine, service_dir):
    engine.add_service("web", str(service_dir))
    engine.add_service("api", str(service_dir))
    web = engine.deploy("web", detach=True)
    api = engine.deploy("api", detach=True)
    engine.cancel(api.id)
    with engine.store.write():  # an event from two hours ago
        engine.store.db.execute_sql(
            "INSERT INTO deployment_event (deployment_id, time, level, kind, message) VALUES "
            f"({engine.store.db.param}, {engine.store.db.param}, 'info', 'deployment', 'an old one')",
            (web.id, now() - 7200))

    text = cli("events")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    # 2 services added (an audit record each); 2 deployments queued and 1 cancelled (an event and an audit record
    # each); and the old one
    assert len(lines) == 9 and "an old one" in lines[-1]  # newest last: by when it was stored
    assert any(api.id in line and "cancelled by" in line for line in lines)

    rows = json_lines(cli("events", "--json").stdout)
    assert len(rows) == 9 and [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert {"id", "time", "at", "level", "kind", "message", "actor", "deployment_id", "service", "host"} <= set(rows[0])
    assert datetime.datetime.fromisoformat(rows[0]["at"]).timestamp() == pytest.approx(rows[0]["time"], abs=0.01)
    assert json_lines(cli("--json", "events").stdout) == rows  # the global flag works the same

    assert {r["kind"] for r in json_lines(cli("events", "--json", "--kind", "audit").stdout)} == {"audit"}
    only_api = json_lines(cli("events", "--json", "--deployment", api.id[:6]).stdout)
    assert only_api and {r["deployment_id"] for r in only_api} == {api.id}
    only_web = json_lines(cli("events", "--json", "--service", "web").stdout)
    assert only_web and {r["service"] for r in only_web} == {"web"}
    recent = json_lines(cli("events", "--json", "--since", "1h").stdout)
    assert len(recent) == 8 and "an old one" not in [r["message"] for r in recent]
    assert len(json_lines(cli("events", "--json", "--since", "3h").stdout)) == 9
    future = datetime.datetime.fromtimestamp(now() + 3600).isoformat(timespec="seconds")
    assert cli("events", "--since", future).stdout == ""
    assert len(json_lines(cli("events", "--json", "--limit", "2").stdout)) == 2

    bad = cli("events", "--since", "yesterday")
    assert bad.returncode == 2 and bad.stderr.startswith("error: invalid --since 'yesterday'")
    assert cli("events", "--kind", "Bad Kind").returncode == 2
    assert cli("events", "--service", "nope").returncode == 2


def test_events_follow_json_streams_a_new_event_within_2_s_and_ctrl_c_ends_it_quietly(engine):
    """On SQLite and (make test-pg) on PostgreSQL: the follower polls by id."""
    with engine.store.write():
        D.event(None, "before the follow", kind="host")
    proc = subprocess.Popen(CLI + ["events", "--follow", "--json"], env=cli_env(engine), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out = Lines(proc.stdout)
        assert out.wait_for(lambda line: "before the follow" in line, timeout=20), out.seen
        time.sleep(1.0)  # the backlog is printed; it is following now
        for i in range(2):
            with engine.store.write():
                D.event(None, f"stored while following {i}", kind="host")
            t0 = time.monotonic()
            line = out.wait_for(lambda line, i=i: f"stored while following {i}" in line, timeout=2.0)
            assert line is not None, ("no line within 2 s", out.seen)
            assert time.monotonic() - t0 < 2.0
            assert json.loads(line)["kind"] == "host"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.postgres_only
def test_follow_sees_an_event_committed_after_a_higher_id_on_postgresql(engine):
    """PostgreSQL takes an id at insert and shows the row at commit: a lower id can appear after a higher one."""
    from playhouse.db_url import connect
    follower = engine.follow_events()
    slow = connect(engine.settings.store.db)
    slow.connect()
    try:
        slow.execute_sql("BEGIN")
        slow.execute_sql("INSERT INTO deployment_event (time, level, kind, message) VALUES (%s, 'info', 'host', "
                         "'the slow one')", (now(),))
        D.event(None, "the quick one", kind="host")  # autocommit: a higher id, visible first
        assert [e["message"] for e in follower.poll()] == ["the quick one"]
        slow.execute_sql("COMMIT")
        assert [e["message"] for e in follower.poll()] == ["the slow one"]
        assert follower.poll() == []
    finally:
        slow.close()


def test_audit_lists_a_cancel_done_in_the_console_with_its_actor(cli, engine, service_dir, monkeypatch):
    from console.tui.app import DeployerConsole
    from tests.tui.conftest import SIZE, first_render, run, wait_until
    from tests.tui.test_pilot import screen_name, select
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("SSH_CLIENT", "203.0.113.9 50022 22")
    engine.add_service("web", str(service_dir))
    dep = engine.deploy("web", detach=True)  # queued: no engine runs it here

    async def scenario():
        app = DeployerConsole(engine, host_runtime=False)
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await select(pilot, dep.id)
            await pilot.press("c")
            await wait_until(pilot, lambda: screen_name(app) == "ConfirmScreen", what="the confirmation")
            await pilot.press("y")
            await wait_until(pilot, lambda: Deployment.get_by_id(dep.id).status == "cancelled", what="cancelled")
    run(scenario())

    result = cli("audit", "--json", USER="bob", SSH_CLIENT="")  # who reads the audit does not matter
    assert result.returncode == 0, result.stderr
    cancels = [r for r in json.loads(result.stdout) if r["action"] == "cancel"]
    assert len(cancels) == 1
    c = cancels[0]
    assert (c["user"], c["address"], c["actor"]) == ("alice", "203.0.113.9", "alice@203.0.113.9")
    assert (c["target"], c["deployment_id"], c["outcome"]) == (dep.id, dep.id, "ok")
    text = cli("audit").stdout.splitlines()
    assert text[0].split() == ["TIME", "ACTOR", "FROM", "ACTION", "TARGET", "OUTCOME", "DETAIL"]
    assert any(re.search(rf"alice\s+203\.0\.113\.9\s+cancel\s+{dep.id}\s+ok", line) for line in text), text


def test_every_operator_action_is_audited_with_its_outcome(cli, engine, service_dir, monkeypatch):
    monkeypatch.setenv("USER", "carol")
    monkeypatch.delenv("SSH_CLIENT", raising=False)
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    engine.add_service("web", str(service_dir))
    dep = engine.deploy("web", detach=True)
    engine.cancel(dep.id)
    with pytest.raises(Exception):
        engine.cancel(dep.id)                     # refused: already cancelled
    with pytest.raises(Exception):
        engine.resume(dep.id)                     # refused: cancelled deployments are not resumed
    engine.cleanup()
    engine.reconcile()
    engine.reconcile(dry_run=True)                # a plan changes nothing: not an action
    H.add_host(engine, "spare", "tcp://127.0.0.1:9", force=True)
    H.remove_host(engine, "spare")
    with pytest.raises(Exception):
        engine.rollback("web")                    # refused: nothing to roll back to
    assert cli("service", "add", "api", "--source", str(service_dir), SSH_CLIENT="198.51.100.7 1 22").returncode == 0

    rows = json.loads(cli("audit", "--json").stdout)
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("service add", "ok"), ("deploy", "ok"), ("cancel", "ok"), ("cancel", "refused"), ("resume", "refused"),
        ("cleanup", "ok"), ("reconcile", "ok"), ("host add", "ok"), ("host rm", "ok"), ("rollback", "refused"),
        ("service add", "ok")]
    assert {r["user"] for r in rows} == {"carol"} and rows[-1]["address"] == "198.51.100.7"
    assert "already" in rows[3]["error"] or "cancelled" in rows[3]["error"]
    assert rows[7]["target"] == "spare" and rows[1]["deployment_id"] == dep.id
    assert json.loads(cli("audit", "--json", "--since", "1h").stdout) == rows
    assert json.loads(cli("audit", "--json", "--since", "2099-01-01T00:00").stdout) == []


def test_engine_logs_one_line_per_notable_thing_on_stderr(engine):
    proc = subprocess.Popen(CLI + ["engine", "--log-level", "info"], env=cli_env(engine), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        err = Lines(proc.stderr)
        assert err.wait_for(lambda line: "lease taken by" in line, timeout=30), err.seen
        assert err.wait_for(lambda line: "job reconcile ok" in line, timeout=30), err.seen
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        err.wait_for(lambda line: False, timeout=2)  # the rest of it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # journald adds the time: each line is `LEVEL logger: message`
    assert all(re.match(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S", line) for line in err.seen), err.seen
    assert any(line.startswith("INFO console.engine.scheduler: lease taken by") for line in err.seen)
    assert any("stopped" in line for line in err.seen)
    assert not any("Traceback" in line for line in err.seen)
    log = (engine.settings.data_dir / "deployer.log").read_text()
    assert "lease taken by" in log  # the data dir's log has them too


def test_doctor_passes_on_a_healthy_machine(cli, engine):
    result = cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    data = json.loads(cli("doctor", "--json").stdout)
    assert data["ok"] is True
    levels = {c["name"]: c["level"] for c in data["checks"]}
    for name in ("config", "data dir", "store schema", "lease", "engine local", "base image local", "archive disk",
                 "metrics port"):
        assert name in levels, levels
    assert levels["engine local"] == levels["base image local"] == levels["store schema"] == "OK"
    engine_line = next(c for c in data["checks"] if c["name"] == "engine local")
    assert re.search(r"API \d+\.\d+", engine_line["detail"])
    assert all(set(c) == {"name", "level", "detail", "fix"} for c in data["checks"])
    assert all(c["fix"] for c in data["checks"] if c["level"] != "OK")


def test_doctor_fails_naming_the_fix_when_the_engine_is_stopped(cli, engine, tmp_path):
    dead = f"unix://{tmp_path}/stopped-docker.sock"
    result = cli("--docker-host", dead, "doctor", timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("FAIL  engine local"))
    assert "stopped-docker.sock" in lines[at] and "start Docker" in lines[at + 1] and "fix:" in lines[at + 1]
    data = json.loads(cli("--docker-host", dead, "doctor", "--json").stdout)
    assert data["ok"] is False
    failed = [c for c in data["checks"] if c["level"] == "FAIL"]
    assert [c["name"] for c in failed] == ["engine local"] and "start Docker" in failed[0]["fix"]


def test_doctor_fails_on_an_invalid_config_naming_the_file(cli, engine):
    path = engine.settings.data_dir / "config.toml"
    path.write_text("no_such_setting = 1\n")
    data = json.loads(cli("doctor", "--json").stdout)
    config_check = next(c for c in data["checks"] if c["name"] == "config")
    assert config_check["level"] == "FAIL" and "no_such_setting" in config_check["detail"]
    assert str(path) in config_check["fix"] and data["ok"] is False


def test_with_json_an_error_is_a_json_object_on_stderr_with_the_exit_code(cli, engine, tmp_path):
    cases = [(["cancel", "abcd", "--json"], 2, "unknown deployment abcd"),
             (["--json", "show", "zz"], 2, "invalid deployment id"),
             (["ls", "--json", "--no-such-flag"], 2, "no-such-flag"),
             (["--docker-host", f"unix://{tmp_path}/none.sock", "containers", "--host", "local", "--json"], 3,
              "unreachable")]
    for args, code, needle in cases:
        result = cli(*args)
        assert result.returncode == code, (args, result.stderr)
        error = json.loads(result.stderr)
        assert set(error) == {"error", "code"} and error["code"] == code and needle in error["error"], error
        assert result.stdout == ""
    plain = cli("cancel", "abcd")  # without --json: the usual one line
    assert plain.returncode == 2 and plain.stderr == "error: unknown deployment abcd\n"


def test_shell_completion_is_clicks(engine):
    env = cli_env(engine, _DEPLOYER_CONSOLE_COMPLETE="bash_source")
    script = subprocess.run(CLI, env=env, capture_output=True, text=True, timeout=60).stdout
    assert "_deployer_console_completion()" in script and "complete " in script
    env.update(_DEPLOYER_CONSOLE_COMPLETE="bash_complete", COMP_WORDS="deployer-console ev", COMP_CWORD="1")
    assert subprocess.run(CLI, env=env, capture_output=True, text=True, timeout=60).stdout.split() == ["plain,events"]


def test_events_into_a_closed_pipe_end_quietly(engine):
    with engine.store.write():
        for i in range(300):
            D.event(None, f"event {i} " + "x" * 200, kind="host")
    result = subprocess.run(" ".join(CLI) + " events --limit 0 | head -1", shell=True, env=cli_env(engine),
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("20") and result.stderr == ""


def test_a_store_from_before_structured_audit_migrates_in_place_and_its_audit_rows_stay_listed(tmp_path):
    from console.engine.core import Engine
    from storage import migrations
    from storage.db import open_store
    from storage.models import DeploymentEvent
    from tests.conftest import make_settings
    settings = make_settings(tmp_path / "old")
    store = open_store(settings.db_url)
    D.event(None, "Docker host h3 added (tcp://h3:2376) by dave", kind="audit", actor_name="dave@192.0.2.4")
    D.event(None, "Engine x acquired the lease", kind="reconcile")
    from tests.oldstore import downgrade_to_v1
    with store.write():
        downgrade_to_v1(store)  # the schema before structured audit (and every later step)
    store.close()

    engine = Engine(settings)
    try:
        assert migrations.current_version(engine.store) == migrations.LATEST
        assert [(e.message, e.detail) for e in DeploymentEvent.select().order_by(DeploymentEvent.id)] == [
            ("Docker host h3 added (tcp://h3:2376) by dave", None), ("Engine x acquired the lease", None)]
        [old] = engine.audit()
        assert (old["user"], old["address"], old["action"], old["message"]) == (
            "dave", "192.0.2.4", None, "Docker host h3 added (tcp://h3:2376) by dave")
    finally:
        engine.close()


def test_a_traceback_stays_in_the_log_file_while_stderr_gets_one_line():
    import io
    import logging

    from console.cli import OneLineFormatter
    stderr, journal, file = io.StringIO(), io.StringIO(), io.StringIO()
    log = logging.getLogger("tests.toolbox.oneline")
    handlers = [logging.StreamHandler(stderr), logging.StreamHandler(journal), logging.StreamHandler(file)]
    handlers[0].setFormatter(OneLineFormatter(journald=False))
    handlers[1].setFormatter(OneLineFormatter(journald=True))
    handlers[2].setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for h in handlers:
        log.addHandler(h)
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("job cleanup failed\nsecond line")
    finally:
        for h in handlers:
            log.removeHandler(h)
    assert stderr.getvalue() == ("ERROR tests.toolbox.oneline: job cleanup failed second line (traceback in "
                                 "deployer.log)\n")
    assert journal.getvalue().startswith("<3>ERROR tests.toolbox.oneline: job cleanup failed")
    assert "Traceback (most recent call last)" in file.getvalue() and "ValueError: boom" in file.getvalue()
