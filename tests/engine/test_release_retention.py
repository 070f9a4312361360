"""Superseded releases do not pile up (issue 10, item 10): the newest `keep_releases` superseded deployments of a
service keep their stopped container, image and release directory as rollback targets; older ones go through the
cleanup path (log archived, container, image and release directory removed, with events). Never the serving one,
never one `current`/`previous` points at, never one in an active rollback."""
import pytest

from console import config
from console.engine.cleanup import Cleaner
from console.engine.pipeline import container_name
from storage.models import CleanupTask, Deployment, DeploymentEvent, Rollback
from tests.conftest import make_service_dir, make_settings


def kept(engine, docker_client, dep_id) -> dict:
    """Which of the release's parts are still there."""
    name = container_name("web", dep_id)
    return {"container": bool(docker_client.api.containers(all=True, filters={"name": f"^/{name}$"})),
            "image": bool(docker_client.api.images(name=f"deployer/web:{dep_id}")),
            "release": engine.paths.release(dep_id).exists()}


def cleanup_messages(dep_id):
    return [e.message for e in DeploymentEvent.select().where((DeploymentEvent.deployment == dep_id) &
                                                              (DeploymentEvent.kind == "cleanup"))
            .order_by(DeploymentEvent.id)]


def test_only_the_newest_superseded_releases_keep_container_image_and_release(engine, tmp_path, docker_client):
    engine.settings.cleanup.keep_releases = 2
    engine.add_service("web", str(make_service_dir(tmp_path / "web")))
    deps = [engine.deploy("web") for _ in range(7)]
    assert [d.status for d in deps] == ["success"] * 7
    old, rollback_targets, serving = deps[:4], deps[4:6], deps[6]
    # each success queued the cleanup of what fell out of the newest two superseded releases
    assert {t.deployment_id: t.reason for t in CleanupTask.select()} == {d.id: "superseded" for d in old}
    assert Cleaner(engine.ctx).run_due()["done"] == 4
    for dep in old:
        assert kept(engine, docker_client, dep.id) == {"container": False, "image": False, "release": False}
        assert Deployment.get_by_id(dep.id).status == "superseded"
        log = cleanup_messages(dep.id)
        assert f"Starting cleanup of resources for superseded deployment {dep.id}" in log
        assert f"Successfully removed container /{container_name('web', dep.id)}" in log
        assert f"Removed image deployer/web:{dep.id}" in log
        assert log[-1] == f"Completed cleanup for deployment {dep.id}"
        assert (engine.paths.archive(dep.id) / f"{container_name('web', dep.id)}.log.gz").exists()
    for dep in [*rollback_targets, serving]:
        assert kept(engine, docker_client, dep.id) == {"container": True, "image": True, "release": True}
    assert docker_client.api.inspect_container(container_name("web", serving.id))["State"]["Running"]
    # the kept ones are rollback targets, and the retention job finds nothing more to do
    assert engine.rollback("web", to=rollback_targets[0].id).state == "completed"
    assert Cleaner(engine.ctx).retention()["releases_queued"] == 0


def test_retention_job_spares_the_previous_release_and_an_active_rollback(engine, tmp_path, docker_client):
    engine.add_service("web", str(make_service_dir(tmp_path / "web")))
    deps = [engine.deploy("web") for _ in range(4)]
    assert CleanupTask.select().count() == 0, "the default keeps five superseded releases"
    engine.settings.cleanup.keep_releases = 1
    oldest, middle, previous, serving = deps
    with engine.store.write():  # a rollback to the oldest is running (in some other process)
        Rollback.create(service=oldest.service, from_deployment=serving.id, to_deployment=oldest.id)
    assert Cleaner(engine.ctx).retention()["releases_queued"] == 1
    assert [t.deployment_id for t in CleanupTask.select()] == [middle.id]
    assert Cleaner(engine.ctx).run_due()["done"] == 1
    assert kept(engine, docker_client, middle.id) == {"container": False, "image": False, "release": False}
    for dep in (oldest, previous, serving):
        assert kept(engine, docker_client, dep.id) == {"container": True, "image": True, "release": True}
    # once cleaned, a release is not queued again; the rollback's target is, once the rollback ended
    with engine.store.write():
        Rollback.update(state="failed").execute()
    assert Cleaner(engine.ctx).retention()["releases_queued"] == 1
    assert CleanupTask.get(CleanupTask.deployment == oldest.id).reason == "superseded"


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_keep_releases_must_be_a_whole_number_of_at_least_one(tmp_path, monkeypatch, value):
    monkeypatch.setenv("DEPLOYER_KEEP_RELEASES", value)
    with pytest.raises(config.ConfigError, match="keep_releases"):
        make_settings(tmp_path / "data")
