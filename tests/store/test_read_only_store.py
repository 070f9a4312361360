"""`--read-only` writes nothing, on either store: the database itself refuses writes (SQLite query_only, PostgreSQL
default_transaction_read_only), and a store that does not exist yet is not created."""
import os
import subprocess
import sys
from pathlib import Path

import peewee
import pytest

from console.engine import deployments as D
from storage.db import StoreError, open_store
from storage.models import DeploymentEvent, Project

CLI = [str(Path(sys.executable).with_name("deployer-console"))]


def test_a_read_only_store_refuses_writes_at_the_database(settings):
    store = open_store(settings.db_url)
    with store.write():
        Project.create(name="p")
        D.event(None, "written before", kind="host")
    store.close()

    ro = open_store(settings.db_url, read_only=True)
    try:
        assert [p.name for p in Project.select()] == ["p"]           # it reads
        with pytest.raises((StoreError, peewee.DatabaseError), match="read.only|readonly"):
            with ro.write():                                         # and whatever code tries, the database refuses
                D.event(None, "written in read-only mode", kind="host")
        assert [e.message for e in DeploymentEvent.select()] == ["written before"]
    finally:
        ro.close()


@pytest.mark.sqlite_only
def test_read_only_does_not_create_a_missing_store(tmp_path):
    path = tmp_path / "data" / "nothing-here.db"
    with pytest.raises(StoreError, match="no store at .*--read-only creates nothing"):
        open_store(path, read_only=True)
    assert not path.exists()
    env = dict(os.environ, DEPLOYER_DATA_DIR=str(tmp_path / "data"), DEPLOYER_DB=str(path))
    env.pop("DEPLOYER_READ_ONLY", None)
    proc = subprocess.run(CLI + ["--read-only", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "creates nothing" in lines[0], proc.stderr
    assert not path.exists()
