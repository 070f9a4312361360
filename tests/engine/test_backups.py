"""Backups outlive their volumes (issue 10, item 6), on the real engine: the archive budget never takes a young
volume backup (logs go first), a backup that does not fit keeps its volume, a backup helper left by a run that died
is removed and the retry succeeds, and SIGTERM abandons a big backup within 5 s."""
import os
import signal
import time

import pytest

from console import config
from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.engine.docker_gateway import BASE_IMAGE
from console.engine.pipeline import container_name, deployment_volume
from storage.clock import now
from storage.models import CleanupTask, DeploymentEvent
from tests.conftest import make_service_dir, wait_for
from tests.engine.test_cleanup import FAILING, messages, ours, volume_names
from tests.reliability import fast_env, spawn, stop_all

MB = 1024 * 1024
DAY = 86400


@pytest.fixture
def failing(engine, tmp_path):
    engine.settings.pipeline.health_timeout = 3
    src = make_service_dir(tmp_path / "failing", dockerfile=FAILING)
    engine.add_service("failing", str(src), volumes=["data:/data"], shared_volumes=["shared:/shared"])
    return engine


def fill(client, volume: str, mb: int) -> None:
    """`mb` MB of random data (nothing to compress) in the volume, written by a container of the base image."""
    client.containers.run(BASE_IMAGE, ["dd", "if=/dev/urandom", "of=/data/random", "bs=1048576", f"count={mb}"],
                          remove=True, volumes={volume: {"bind": "/data", "mode": "rw"}})


def age(path, days: float) -> None:
    t = time.time() - days * DAY
    os.utime(path, (t, t))


def pruned_events() -> list[str]:
    return [e.message for e in DeploymentEvent.select().where(DeploymentEvent.message.startswith("Pruned archive"))]


def test_a_backup_alone_over_the_budget_is_kept_while_young_and_logs_are_pruned_first(failing, docker_client):
    dep = failing.deploy("failing")
    fill(docker_client, deployment_volume(dep.id, "data"), 3)
    assert Cleaner(failing.ctx).run_due()["done"] == 1
    archive = failing.paths.archive(dep.id)
    log = archive / f"{container_name('failing', dep.id)}.log.gz"
    backup = archive / f"{deployment_volume(dep.id, 'data')}.tar.gz"
    assert log.exists() and backup.stat().st_size > 3 * MB  # the only copy of a volume that is gone

    failing.settings.cleanup.archive_max_mb = 1  # the backup alone is three times the budget
    assert Cleaner(failing.ctx).retention()["archives_pruned"] == 1
    assert not log.exists(), "the container log goes first"
    assert backup.exists(), "a backup younger than backup_keep_days was pruned"
    assert pruned_events() == [f"Pruned archive {dep.id}/{log.name} (archive over 1 MB)"]
    assert Cleaner(failing.ctx).retention()["archives_pruned"] == 0  # and at every later pass

    # past backup_keep_days the budget may take it (archive_max_age_days alone would keep it 100 days)
    failing.settings.cleanup.archive_max_age_days = 100
    failing.settings.cleanup.backup_keep_days = 2
    age(backup, 1)
    assert Cleaner(failing.ctx).retention()["archives_pruned"] == 0 and backup.exists()
    age(backup, 3)
    assert Cleaner(failing.ctx).retention()["archives_pruned"] == 1
    assert not backup.exists() and not archive.exists()
    assert pruned_events()[-1] == f"Pruned archive {dep.id}/{backup.name} (archive over 1 MB)"


def test_age_prunes_logs_but_a_backup_only_past_backup_keep_days(failing, docker_client):
    dep = failing.deploy("failing")
    Cleaner(failing.ctx).run_due()
    archive = failing.paths.archive(dep.id)
    log, backup = next(archive.glob("*.log.gz")), next(archive.glob("*.tar.gz"))
    failing.settings.cleanup.archive_max_age_days = 1
    failing.settings.cleanup.backup_keep_days = 10
    for path in (log, backup):
        age(path, 5)
    assert Cleaner(failing.ctx).retention()["archives_pruned"] == 1
    assert not log.exists() and backup.exists()
    age(backup, 11)
    assert Cleaner(failing.ctx).retention()["archives_pruned"] == 1 and not backup.exists()


@pytest.mark.parametrize("name", ["archive_max_mb", "backup_keep_days"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_zero_or_negative_archive_budget_or_backup_keep_days_is_refused(tmp_path, monkeypatch, name, value):
    monkeypatch.setenv(f"DEPLOYER_{name.upper()}", value)
    with pytest.raises(config.ConfigError) as e:
        config.load(data_dir=str(tmp_path / "data"))
    assert name in str(e.value) and len(str(e.value).splitlines()) == 1
    monkeypatch.delenv(f"DEPLOYER_{name.upper()}")
    (tmp_path / "config.toml").write_text(f"[cleanup]\n{name} = {value}\n")
    monkeypatch.setenv("DEPLOYER_CONFIG", str(tmp_path / "config.toml"))
    with pytest.raises(config.ConfigError, match=name):
        config.load(data_dir=str(tmp_path / "data"))


def test_a_backup_that_does_not_fit_keeps_the_volume_and_the_task_waits(failing, docker_client):
    dep = failing.deploy("failing")
    volume = deployment_volume(dep.id, "data")
    fill(docker_client, volume, 3)
    failing.settings.cleanup.archive_max_mb = 2
    assert Cleaner(failing.ctx).run_due()["retried"] == 1
    assert volume in volume_names(docker_client, dep.id), "the volume was removed without its backup"
    archive = failing.paths.archive(dep.id)
    assert not list(archive.glob("*.tar.gz*")), "a partial backup was left or taken for a backup"
    task = CleanupTask.get(CleanupTask.deployment == dep.id)
    assert task.state == "pending" and task.due_at > now() + 60 and task.attempts == 0
    waits = [m for m in messages(dep.id) if m.startswith("Volume kept:")]
    assert len(waits) == 1 and volume in waits[0] and "archive_max_mb=2" in waits[0]

    # rechecked later: still no room, no second event
    CleanupTask.update(due_at=now()).where(CleanupTask.id == task.id).execute()
    assert Cleaner(failing.ctx).run_due()["retried"] == 1
    assert len([m for m in messages(dep.id) if m.startswith("Volume kept:")]) == 1

    failing.settings.cleanup.archive_max_mb = 100  # room again (an operator raised the budget)
    CleanupTask.update(due_at=now()).where(CleanupTask.id == task.id).execute()
    assert Cleaner(failing.ctx).run_due()["done"] == 1
    assert volume_names(docker_client, dep.id) == []
    assert (archive / f"{volume}.tar.gz").stat().st_size > 3 * MB


def leave_a_helper(client, engine, volume: str) -> str:
    """A backup helper exactly as a run that died mid-backup leaves it: the volume mounted, our labels."""
    labels = client.api.inspect_volume(volume)["Labels"]
    helper = client.api.create_container(BASE_IMAGE, ["true"], labels=L.backup_helper_labels(labels),
                                         host_config=client.api.create_host_config(
                                             binds={volume: {"bind": "/data", "mode": "ro"}}))
    return helper["Id"]


def test_a_helper_left_by_a_died_backup_is_removed_and_the_retry_succeeds(failing, docker_client):
    dep = failing.deploy("failing")
    volume = deployment_volume(dep.id, "data")
    helper = leave_a_helper(docker_client, failing, volume)
    assert Cleaner(failing.ctx).run_due()["done"] == 1
    assert docker_client.api.containers(all=True, filters={"id": helper}) == []
    assert volume_names(docker_client, dep.id) == [] and ours(docker_client, dep.id) == []
    log = messages(dep.id)
    assert f"Found 1 container(s) for deployment {dep.id}" in log, "the helper was counted as the deployment's"
    assert any(m.startswith("Removed backup helper") for m in log)
    archive = failing.paths.archive(dep.id)
    assert [p.name for p in archive.glob("*.log.gz")] == [f"{container_name('failing', dep.id)}.log.gz"]


def test_reconcile_removes_a_leftover_helper_and_the_volume_can_go(failing, docker_client):
    dep = failing.deploy("failing")
    assert Cleaner(failing.ctx).run_due()["done"] == 1
    volume = docker_client.api.create_volume(labels=L.deployment_labels(failing.store_id, dep.id, "failing", 1))
    helper = leave_a_helper(docker_client, failing, volume["Name"])
    failing.settings.scheduler.orphan_grace = 0
    result = failing.reconcile()
    found = [o for o in result["orphans"] if o["kind"] == "backup-helper"]
    assert [o["id"] for o in found] == [helper] and found[0]["result"] == "removed"
    assert docker_client.api.containers(all=True, filters={"id": helper}) == []
    assert any("removed backup helper" in m for m in messages(dep.id, kind="reconcile"))
    assert len(list(failing.paths.archive(dep.id).glob("*.log.gz"))) == 1, "the helper's log was archived"
    docker_client.api.remove_volume(volume["Name"])  # not held any more


def test_a_backup_helper_carries_our_labels_while_it_reads(failing, docker_client):
    dep = failing.deploy("failing")
    seen = []

    def look():  # asked at the first chunk, while the helper exists
        seen.extend(docker_client.api.containers(all=True, filters={"label": [
            f"{L.STORE}={failing.store_id}", f"{L.DEPLOYMENT}={dep.id}", f"{L.ROLE}={L.BACKUP_HELPER}"]}))
        return False
    gw = failing.hosts.gateway()
    volume = next(v for v in gw.list_volumes(failing.store_id, dep.id))
    failing_archive = failing.paths.ensure(failing.paths.archive(dep.id))
    Cleaner(failing.ctx).archive.backup_volume(gw, volume, failing_archive, should_stop=look)
    assert len(seen) >= 1 and seen[0]["Labels"][L.MANAGED] == "true"
    assert docker_client.api.containers(all=True, filters={"id": seen[0]["Id"]}) == []


@pytest.mark.slow
def test_sigterm_during_a_400_mb_backup_stops_the_engine_within_5_s(failing, docker_client, tmp_path):
    dep = failing.deploy("failing")
    volume = deployment_volume(dep.id, "data")
    fill(docker_client, volume, 400)
    archive = failing.paths.archive(dep.id)
    part = archive / f"{volume}.tar.gz.part"
    proc = spawn(["engine"], fast_env(failing.settings), tmp_path / "engine.log")
    try:
        wait_for(lambda: part.exists() and part.stat().st_size > MB, timeout=60, interval=0.05,
                 what="the backup to be under way")
        helpers = docker_client.api.containers(all=True, filters={"label": [
            f"{L.DEPLOYMENT}={dep.id}", f"{L.ROLE}={L.BACKUP_HELPER}"]})
        assert len(helpers) == 1
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        stop_all([proc])
    log = (failing.settings.data_dir / "deployer.log").read_text()[-3000:]
    assert elapsed <= 5.0 and proc.returncode == 0, f"SIGTERM took {elapsed:.1f} s, exit {proc.returncode}\n{log}"
    assert not list(archive.glob("*.tar.gz*")), "the abandoned backup left a file or was taken for a backup"
    assert volume in volume_names(docker_client, dep.id)
    assert docker_client.api.containers(all=True, filters={"id": helpers[0]["Id"]}) == []
    task = CleanupTask.get(CleanupTask.deployment == dep.id)
    assert task.state == "pending" and task.attempts == 0
    assert any("abandoned" in m for m in messages(dep.id))
