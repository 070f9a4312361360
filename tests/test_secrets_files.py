"""Secrets and files: a store URL never prints its password, the store file and data dir stay private (tightened
with a warning, refused when another user owns them), and a SQLite file that is not ours is never written to."""
import hashlib
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from storage.db import StoreError, open_store, redact_url
from tests import cli

NOBODY = 65534


def run_cli(args, data_dir, db=None, timeout=60):
    return cli.run_cli(args, cli.cli_env(data_dir, DEPLOYER_DB=db), timeout)


def mode(path) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------- redaction
@pytest.mark.parametrize("url, secret, shown", [
    ("postgresql://u:p@ssw0rd@db.example/app", "ssw0rd", "postgresql://***@db.example/app"),
    ("postgresql://u:plain@db.example:5432/app", "plain", "postgresql://***@db.example:5432/app"),
    ("postgresql://u:p%40ss@db.example/app", "p%40ss", "postgresql://***@db.example/app"),
    ("postgresql://db.example/app?user=u&password=s3cr3t&sslmode=require", "s3cr3t",
     "postgresql://db.example/app?user=u&password=***&sslmode=require"),
    ("postgresql://u@db.example/app?PASSWORD=s3cr3t", "s3cr3t", "postgresql://***@db.example/app?PASSWORD=***"),
])
def test_a_store_url_is_printed_without_its_password(url, secret, shown):
    assert redact_url(url) == shown
    assert secret not in redact_url(url)


def test_a_store_that_cannot_be_reached_names_it_without_the_password(tmp_path):
    for url in ("postgresql://u:p@ssw0rd@127.0.0.1:1/app?connect_timeout=3",
                "postgresql://127.0.0.1:1/app?user=u&password=s3cr3t&connect_timeout=3"):
        with pytest.raises(StoreError) as e:
            open_store(url)
        assert "ssw0rd" not in str(e.value) and "s3cr3t" not in str(e.value) and "127.0.0.1" in str(e.value)
        proc = run_cli(["ls"], tmp_path / "data", db=url)
        # a server that does not answer is "store unreachable" (exit 4), never with its password
        assert proc.returncode == 4 and proc.stderr.startswith("error: store unreachable") and \
            "postgresql://" in proc.stderr
        assert "ssw0rd" not in proc.stderr and "s3cr3t" not in proc.stderr and proc.stderr.count("\n") == 1


# ------------------------------------------------------------------------------------------------ file modes
@pytest.mark.sqlite_only
def test_an_open_store_file_and_data_dir_are_tightened_with_a_warning(tmp_path):
    data = tmp_path / "data"
    assert run_cli(["ls"], data).returncode == 0
    db = data / "deployer.db"
    os.chmod(data, 0o755)
    os.chmod(db, 0o644)
    proc = run_cli(["ls"], data)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert any(f"data dir {data} was mode 0755" in w and "0700" in w for w in warnings), proc.stderr
    assert any(f"store file {db} was mode 0644" in w and "0600" in w for w in warnings), proc.stderr
    assert mode(data) == 0o700 and mode(db) == 0o600
    assert "tightened" in (data / "deployer.log").read_text()
    again = run_cli(["ls"], data)
    assert again.returncode == 0 and "warning" not in again.stderr  # once tightened, nothing more to say


@pytest.mark.sqlite_only
def test_a_store_file_of_another_user_is_refused(tmp_path):
    if os.getuid() != 0:
        pytest.fail("this test gives a file to another user: run it as root (as the suite does)")
    db = tmp_path / "store.db"
    open_store(db).close()
    os.chown(db, NOBODY, NOBODY)
    before = sha256(db)
    with pytest.raises(StoreError, match=f"owned by uid {NOBODY}"):
        open_store(db)
    proc = run_cli(["--db", str(db), "ls"], tmp_path / "data")
    assert proc.returncode == 1 and f"owned by uid {NOBODY}" in proc.stderr and proc.stderr.count("\n") == 1
    assert sha256(db) == before and Path(db).stat().st_uid == NOBODY and mode(db) == 0o600


def test_a_data_dir_of_another_user_is_refused(tmp_path):
    if os.getuid() != 0:
        pytest.fail("this test gives a directory to another user: run it as root (as the suite does)")
    data = tmp_path / "theirs"
    data.mkdir(mode=0o755)
    os.chown(data, NOBODY, NOBODY)
    proc = run_cli(["ls"], data, db=str(tmp_path / "mine.db"))
    assert proc.returncode == 1 and f"data dir {data} is owned by uid {NOBODY}" in proc.stderr
    assert mode(data) == 0o755 and data.stat().st_uid == NOBODY


# ------------------------------------------------------------------------------------------ a foreign SQLite
@pytest.mark.sqlite_only
@pytest.mark.parametrize("schema", [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES ('version', '3');",
    "CREATE TABLE meta (name TEXT, data BLOB); INSERT INTO meta VALUES ('x', x'00');",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);",
])
def test_a_sqlite_file_with_a_meta_table_that_is_not_ours_is_refused_untouched(tmp_path, schema):
    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.executescript(schema)
    con.close()
    os.chmod(db, 0o600)
    before = sha256(db)
    with pytest.raises(StoreError, match="another program"):
        open_store(db)
    proc = run_cli(["--db", str(db), "ls"], tmp_path / "data")
    assert proc.returncode == 1 and "another program" in proc.stderr and proc.stderr.count("\n") == 1
    assert sha256(db) == before
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()  # never switched to WAL
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


@pytest.mark.sqlite_only
def test_our_own_store_still_opens(tmp_path):
    db = tmp_path / "ours.db"
    first = open_store(db)
    store_id = first.meta("store_id")
    first.close()
    again = open_store(db)
    assert again.meta("store_id") == store_id and again.warnings == []
    again.close()
