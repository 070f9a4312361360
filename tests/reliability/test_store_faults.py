"""Store faults, produced for real (issue 6): a second process holding the SQLite write lock, damaged and foreign
database files, and a full disk under the archive directory (a real tmpfs, mounted small and filled)."""
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from console.engine import deployments as D
from console.engine.cleanup import Cleaner
from storage.models import CleanupTask, Deployment, DeploymentEvent
from tests.cli import CLI, cli_env, run_cli
from tests.conftest import make_service_dir, wait_for

# Takes the write lock like a second deployer-console (or a sqlite3 shell) would, writes a row, holds it, commits.
LOCK_HOLDER = r"""
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("BEGIN EXCLUSIVE")
con.execute("INSERT INTO deployment_event (deployment_id, time, level, kind, message) "
            "VALUES (NULL, ?, 'info', 'audit', 'lock holder was here')", (time.time(),))
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
print("released", flush=True)
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_clean_line(stderr: str):
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr


# ---------------------------------------------------------------------------------------------- the write lock
@pytest.mark.sqlite_only
def test_writers_wait_for_a_10s_write_lock_held_by_another_process_and_succeed(engine, service_dir):
    """A second process holds BEGIN EXCLUSIVE for 10 s. Meanwhile: the CLI `cancel` (another process), a status
    move and a burst of event writes (threads here) all wait and succeed once it commits; nobody sees "database is
    locked"; a reader (`ls`) is not held up by the lock at all."""
    engine.add_service("web", str(service_dir))
    to_cancel = engine.create_deployment("web")
    to_fail = engine.create_deployment("web")
    db = Path(engine.store.url)
    env = cli_env(engine.settings)

    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(db), "10"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        locked_at = time.monotonic()
        results: dict[str, object] = {}

        def timed(name, fn):
            try:
                fn()
                results[name] = time.monotonic() - locked_at
            except BaseException as e:  # reported by the assertions below
                results[name] = e

        def status_move():
            D.move(engine.store, to_fail.id, "failed", error="BUILDING: test failure", expect=D.ACTIVE)

        def event_burst():
            for i in range(20):
                with engine.store.write():
                    D.event(to_fail.id, f"event {i} written under the lock", kind="audit")

        threads = [threading.Thread(target=timed, args=(name, fn)) for name, fn in
                   (("move", status_move), ("events", event_burst))]
        cancel = subprocess.Popen(CLI + ["cancel", to_cancel.id, "--json"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        for t in threads:
            t.start()
        reader = run_cli(["ls", "--json"], env)
        reader_s = time.monotonic() - locked_at
        out, err = cancel.communicate(timeout=60)
        cancel_s = time.monotonic() - locked_at
        for t in threads:
            t.join(60)
        assert holder.wait(30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()

    assert reader.returncode == 0, reader.stderr
    assert reader_s < 5, f"a reader waited {reader_s:.1f} s for another process's write lock"
    assert cancel.returncode == 0, err
    assert "locked" not in err.lower() and "traceback" not in err.lower()
    assert cancel_s >= 9, f"cancel finished after {cancel_s:.1f} s although the lock was held 10 s"
    for name in ("move", "events"):
        assert not isinstance(results[name], BaseException), f"{name}: {results[name]!r}"
        assert results[name] >= 9, f"{name} finished after {results[name]:.1f} s: it did not wait for the lock"
    assert Deployment.get_by_id(to_cancel.id).status == "cancelled"
    assert Deployment.get_by_id(to_fail.id).status == "failed"
    assert CleanupTask.select().where(CleanupTask.deployment.in_([to_cancel.id, to_fail.id])).count() == 2
    assert DeploymentEvent.select().where(DeploymentEvent.message.startswith("event ")).count() == 20
    assert DeploymentEvent.select().where(DeploymentEvent.message == "lock holder was here").count() == 1


# ----------------------------------------------------------------------------------- damaged and foreign files
def _make_store(tmp_path: Path, service_dir: Path) -> Path:
    """A real store written by the CLI, closed (WAL checkpointed into the file)."""
    data = tmp_path / "maker"
    env = cli_env(data)
    result = run_cli(["service", "add", "web", "--source", str(service_dir)], env)
    assert result.returncode == 0, result.stderr
    db = data / "deployer.db"
    assert not Path(f"{db}-wal").exists()
    return db


def _damage(kind: str, store: Path, dest: Path) -> None:
    raw = store.read_bytes()
    if kind == "text":
        dest.write_text("this is my shopping list, not a database\n")
    elif kind == "zeros":
        dest.write_bytes(b"\0" * 8192)
    elif kind == "truncated":
        dest.write_bytes(raw[:5000])
    elif kind == "damaged-page":
        con = sqlite3.connect(store)
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'deployment'").fetchone()[0]
        con.close()
        damaged = bytearray(raw)
        damaged[(root - 1) * page_size: root * page_size] = b"\xcd" * page_size
        dest.write_bytes(bytes(damaged))
    elif kind == "foreign-sqlite":
        con = sqlite3.connect(dest)
        con.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
        con.execute("INSERT INTO moz_places (url) VALUES ('https://example.com/')")
        con.commit()
        con.close()
    else:
        raise AssertionError(kind)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("kind", ["text", "zeros", "truncated", "damaged-page", "foreign-sqlite"])
def test_a_damaged_or_foreign_db_file_gives_one_clear_line_and_stays_untouched(tmp_path, service_dir, kind):
    store = _make_store(tmp_path, service_dir)
    victim = tmp_path / f"{kind}.db"
    _damage(kind, store, victim)
    before = sha256(victim)
    env = cli_env(tmp_path / "other-data")
    for args in (["ls"], ["service", "ls", "--json"], ["cancel", "abcd1234"],
                 ["service", "add", "api", "--source", str(service_dir)]):
        result = run_cli(["--db", str(victim)] + args, env)
        assert result.returncode != 0, (args, result.stdout)
        if "--json" in args:  # with --json the one line is a JSON object (issue 13)
            error = json.loads(result.stderr)
            assert set(error) == {"error", "code"} and error["code"] == result.returncode, result.stderr
            assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
        else:
            assert_one_clean_line(result.stderr)
        assert str(victim) in result.stderr, result.stderr
        assert result.stdout == "", result.stdout
        assert sha256(victim) == before, f"{args} changed the file"
    if kind == "foreign-sqlite":
        con = sqlite3.connect(victim)
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["moz_places"]
        con.close()


# ---------------------------------------------------------------------------------------------- disk full
@pytest.fixture
def tiny_archive(engine):
    """<data>/archive on a real 64 KiB tmpfs (needs root and mount)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    archive = engine.paths.ensure(engine.paths.archive_root())
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(archive)], check=True)
    try:
        yield archive
    finally:
        if subprocess.run(["umount", str(archive)]).returncode != 0:
            subprocess.run(["umount", "-l", str(archive)])


def _fill(directory: Path) -> Path:
    """Write until the file system says ENOSPC (unbuffered, so nothing is left to fail at close)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\xff" * 4096)
        except OSError as e:
            assert e.errno == 28, e
    with pytest.raises(OSError):
        (directory / "probe").write_bytes(b"x" * 4096)
    return filler


def test_disk_full_on_the_archive_keeps_the_container_and_cleanup_completes_once_space_is_freed(
        engine, tmp_path, docker_client, tiny_archive):
    src = make_service_dir(tmp_path / "crash", dockerfile='FROM deployer/base:busybox\n'
                           'CMD ["sh", "-c", "echo precious-log-line; exit 3"]\n')
    engine.add_service("crash", str(src))
    dep = engine.deploy("crash")
    assert dep.status == "failed", dep.error
    ours = [c["Id"] for c in docker_client.api.containers(
        all=True, filters={"label": [f"deployer.store={engine.store_id}", f"deployer.deployment_id={dep.id}"]})]
    assert len(ours) == 1

    filler = _fill(tiny_archive)
    for _ in range(3):  # it stays that way however often the worker tries
        wait_for(lambda: Cleaner(engine.ctx).run_due(deployment_id=dep.id)["retried"] == 1, timeout=10,
                 what="a cleanup attempt")
        task = CleanupTask.get(CleanupTask.deployment == dep.id)
        assert task.state == "pending"
        assert "No space left" in (task.last_error or ""), task.last_error
        assert docker_client.api.inspect_container(ours[0])["Id"] == ours[0], "the container was removed"
    assert task.attempts == 3
    assert not list(tiny_archive.rglob("*.part")), "a half-written archive was left on the full disk"
    assert DeploymentEvent.select().where((DeploymentEvent.deployment == dep.id) &
                                          (DeploymentEvent.message.contains("No space left"))).exists()

    filler.unlink()
    started = time.monotonic()
    wait_for(lambda: Cleaner(engine.ctx).run_due(deployment_id=dep.id)["done"] == 1, timeout=10,
             what="the cleanup to complete once space is back")
    assert time.monotonic() - started < 10
    assert CleanupTask.get(CleanupTask.deployment == dep.id).state == "done"
    assert docker_client.api.containers(all=True, filters={"id": ours[0]}) == []
    archived = list((tiny_archive / dep.id).glob("*.log.gz"))
    assert len(archived) == 1
    assert b"precious-log-line" in gzip.decompress(archived[0].read_bytes())
