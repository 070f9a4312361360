"""A store whose server does not answer (issue 15, item 3): one line `store unreachable: …`, exit code 4 of its own,
and the console's status bar says it. The restart of a real server is tests/store/test_pg_restart.py."""

import peewee
import pytest

from console.engine.errors import STORE_UNREACHABLE_EXIT, EngineUnavailable
from console.tui.widgets.statusbar import status_text
from storage.db import StoreError, StoreUnavailable, is_dropped, open_store
from tests.cli import cli_env, run_cli

NOBODY = "postgresql://deployer:secret-pw@127.0.0.1:1/deployer"   # loopback port 1: refused at once


def test_a_server_that_does_not_answer_is_store_unreachable_exit_4_in_one_line(tmp_path):
    assert STORE_UNREACHABLE_EXIT == StoreUnavailable.exit_code == 4 != EngineUnavailable.exit_code
    with pytest.raises(StoreUnavailable) as e:
        open_store(NOBODY)
    assert str(e.value).startswith("store unreachable: ") and "secret-pw" not in str(e.value)
    assert isinstance(e.value, StoreError) and isinstance(e.value, peewee.OperationalError)
    env = cli_env(tmp_path / "d", hermetic=True, DEPLOYER_DB=NOBODY)
    for args in (["status"], ["ls", "--json"]):
        proc = run_cli(args, env, timeout=60)
        assert proc.returncode == 4, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "store unreachable" in proc.stderr, proc.stderr
        assert "secret-pw" not in proc.stderr


def test_dropped_connections_are_told_apart_from_refusals():
    assert is_dropped(peewee.InterfaceError("connection already closed"))
    assert is_dropped(peewee.OperationalError("server closed the connection unexpectedly"))
    assert is_dropped(peewee.OperationalError("terminating connection due to administrator command"))
    assert not is_dropped(peewee.OperationalError('connection to server at "h", port 5432 failed: FATAL:  password '
                                                  'authentication failed for user "deployer"'))
    assert not is_dropped(peewee.OperationalError("deadlock detected"))


def test_the_status_bar_says_store_unreachable():
    text = status_text({"role": "follower", "store_error": "connection refused"}, False).plain
    assert text.startswith(" store unreachable ") and "connection refused" in text
    assert "unreachable" not in status_text({"role": "follower"}, False).plain
