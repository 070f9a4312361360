"""The CLI's quick path (console/quick.py): `ls` and `status` on a SQLite store answered with the standard library
alone, printing what the full CLI prints; everything it cannot answer handed to the full CLI, with nothing written
before. The installed `deployer-console` (tests/cli.py) is the entry point under test; DEPLOYER_QUICK=0 is the full
CLI for comparison."""
import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from storage.models import DeploymentEvent, Host
from tests.cli import cli_env, run_cli
from tests.fixtures.seed import seed

HEAVY = ["click", "peewee", "docker", "requests", "textual", "apscheduler", "psycopg2", "playhouse"]


def quick(args, env) -> subprocess.CompletedProcess:
    """The entry point in a process that then says which heavy modules it loaded (on its last stderr line)."""
    code = ("import sys\n"
            f"sys.argv = ['deployer-console', *{[str(a) for a in args]!r}]\n"
            "from console.quick import main\n"
            "try:\n    main()\n"
            "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
            f"print(sorted(m for m in {HEAVY!r} if sys.modules.get(m) is not None), file=sys.stderr)\n"
            "sys.exit(code)\n")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def loaded(result) -> list[str]:
    return json.loads(result.stderr.strip().splitlines()[-1].replace("'", '"'))


@pytest.fixture
def seeded(engine):
    seed(engine.store, extra=20, at=time.time())
    return engine


def _same_shape(text: str) -> list[list[str]]:
    """Text output with its ages and durations blanked (two runs a second apart print `59s` and `1m0s`), as words:
    the columns' widths follow the widest value."""
    return [[re.sub(r"^(\d+[dhms])+$", "T", word) for word in line.split()] for line in text.splitlines()]


@pytest.mark.parametrize("args", [["ls", "--json"], ["--json", "ls"], ["ls"], ["ls", "--status", "failed", "--json"],
                                  ["ls", "--service=web", "--limit", "3", "--json"], ["ls", "--host", "local"],
                                  ["ls", "--limit", "0", "--json"], ["--read-only", "ls", "--json"]])
def test_ls_prints_what_the_full_cli_prints(seeded, args):
    env = cli_env(seeded)
    fast, full = run_cli(args, env), run_cli(args, cli_env(seeded, DEPLOYER_QUICK=0))
    assert fast.returncode == full.returncode == 0, (fast.stderr, full.stderr)
    assert _same_shape(fast.stdout) == _same_shape(full.stdout) and fast.stdout.strip()
    assert fast.stderr == full.stderr == ""


def test_status_prints_what_the_full_cli_prints(seeded):
    fast = run_cli(["status", "--json"], cli_env(seeded))
    full = run_cli(["status", "--json"], cli_env(seeded, DEPLOYER_QUICK=0))
    assert fast.returncode == full.returncode == 0, (fast.stderr, full.stderr)
    a, b = json.loads(fast.stdout), json.loads(full.stdout)
    for st in (a, b):
        for h in st["hosts"]:
            assert h.pop("last_seen_at") > time.time() - 60   # seen now, by each run
    assert a == b
    text = run_cli(["status"], cli_env(seeded))
    assert text.returncode == 0 and text.stdout.startswith("leader: ") and "cleanup queue: " in text.stdout


@pytest.mark.sqlite_only
@pytest.mark.parametrize("args", [["ls", "--json"], ["status", "--json"], ["ls"], ["status"]])
def test_the_quick_path_loads_no_database_or_cli_library(seeded, args):
    result = quick(args, cli_env(seeded))
    assert result.returncode == 0, result.stderr
    assert loaded(result) == [], "the quick path handed over, or imported a heavy module"
    assert result.stdout.strip()


@pytest.mark.parametrize("args, words", [(["ls", "--status", "bogus"], "bogus"), (["ls", "--limit=many"], "many"),
                                         (["ls", "--colour"], "colour"), (["ls", "--service", "Bad Name"], "Bad Name"),
                                         (["status", "extra"], "extra")])
def test_input_the_full_cli_refuses_is_refused_the_same_way(seeded, args, words):
    fast, full = run_cli(args, cli_env(seeded)), run_cli(args, cli_env(seeded, DEPLOYER_QUICK=0))
    assert fast.returncode == full.returncode == 2
    assert fast.stderr == full.stderr and len(fast.stderr.strip().splitlines()) == 1 and words in fast.stderr


def test_help_and_other_commands_go_to_the_full_cli(seeded):
    result = run_cli(["ls", "--help"], cli_env(seeded))
    assert result.returncode == 0 and "--status" in result.stdout
    shown = run_cli(["service", "ls", "--json"], cli_env(seeded))
    assert shown.returncode == 0 and {s["name"] for s in json.loads(shown.stdout)} >= {"web", "api"}


def test_a_store_that_needs_a_migration_is_migrated_by_the_full_cli(seeded):
    """The quick path reads only a store at today's schema; an old one goes to the full CLI, which migrates it in
    place, every row kept."""
    from storage import SCHEMA_VERSION, migrations
    from tests.oldstore import downgrade_to_v1
    before = {r["id"] for r in seeded.deployments()}
    with seeded.store.write():
        downgrade_to_v1(seeded.store)
    result = run_cli(["ls", "--json", "--limit", "0"], cli_env(seeded))
    assert result.returncode == 0, result.stderr
    assert {r["id"] for r in json.loads(result.stdout)} == before
    assert migrations.current_version(seeded.store) == SCHEMA_VERSION


def test_a_host_that_does_not_answer_is_the_full_clis_to_note(seeded, tmp_path):
    """`status` of a host that does not answer: handed over before anything is written; the full CLI notes it down
    and writes the event, as it always did."""
    config = tmp_path / "config.toml"
    config.write_text(f'[hosts.gone]\nurl = "unix://{tmp_path}/no-engine.sock"\n')
    result = run_cli(["status", "--json"], cli_env(seeded, DEPLOYER_CONFIG=config))
    assert result.returncode == 0, result.stderr
    gone = next(h for h in json.loads(result.stdout)["hosts"] if h["name"] == "gone")
    assert gone["reachable"] is False and "no-engine.sock" in gone["last_error"]
    assert DeploymentEvent.select().where(DeploymentEvent.message.startswith("Docker host gone is unreachable")).count()


def test_a_host_that_accepts_and_never_answers_is_asked_once(seeded, tmp_path):
    """An engine that takes the connection and never answers: the quick path's ping waits its host_timeout and hands
    the failure to the full CLI, which says it without asking (and waiting) again."""
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    config = tmp_path / "config.toml"
    config.write_text(f'[scheduler]\nhost_timeout = 1\n[hosts.hung]\nurl = "unix://{path}"\n')
    try:
        result = run_cli(["status", "--json"], cli_env(seeded, DEPLOYER_CONFIG=config))
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    hung = next(h for h in json.loads(result.stdout)["hosts"] if h["name"] == "hung")
    assert len(accepted) == 1, accepted
    assert hung["reachable"] is False and "accepted" in hung["last_error"], hung


@pytest.mark.sqlite_only
def test_status_notes_a_store_host_that_answers(seeded, h2):
    """A Host row on a local socket that answers: the quick path pings it and notes it seen, as Hosts.record does."""
    Host.update(last_seen_at=1.0, reachable=True).where(Host.name == "h2").execute()
    result = quick(["status", "--json"], cli_env(seeded))
    assert result.returncode == 0 and loaded(result) == [], result.stderr
    row = Host.get(Host.name == "h2")
    assert row.reachable is True and row.last_error is None and row.last_seen_at > time.time() - 60
    shown = next(h for h in json.loads(result.stdout)["hosts"] if h["name"] == "h2")
    assert shown["reachable"] is True and shown["source"] == "store"
    # read-only: answered the same way, and the row is left as it was
    Host.update(last_seen_at=1.0).where(Host.name == "h2").execute()
    result = quick(["--read-only", "status", "--json"], cli_env(seeded))
    assert result.returncode == 0 and loaded(result) == [], result.stderr
    assert Host.get(Host.name == "h2").last_seen_at == 1.0


def test_a_store_host_coming_back_is_an_event_the_full_cli_writes(seeded, h2):
    Host.update(reachable=False, last_error="was down").where(Host.name == "h2").execute()
    result = run_cli(["status", "--json"], cli_env(seeded))
    assert result.returncode == 0, result.stderr
    assert Host.get(Host.name == "h2").reachable is True
    assert DeploymentEvent.select().where(DeploymentEvent.message == "Docker host h2 is reachable again").count() == 1


@pytest.mark.sqlite_only
def test_no_store_yet_goes_to_the_full_cli(tmp_path):
    """A data dir without a store: the full CLI creates it (the quick path creates nothing)."""
    env = cli_env(tmp_path / "fresh", hermetic=True, DEPLOYER_CONFIG=tmp_path / "none.toml")
    result = run_cli(["ls", "--json"], env)
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stderr
    assert (tmp_path / "fresh" / "deployer.db").is_file()
