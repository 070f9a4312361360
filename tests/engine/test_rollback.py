"""Rollback on a real engine: recorded, health-checked, and a failed rollback keeps what was serving."""
import pytest

from console.engine.paths import link_target
from console.engine.pipeline import container_name
from console.engine.rollback import RollbackFailed
from storage.models import Deployment, DeploymentEvent, Rollback
from tests.conftest import make_service_dir


@pytest.fixture
def two_releases(engine, tmp_path):
    engine.add_service("web", str(make_service_dir(tmp_path / "web")))
    first = engine.deploy("web")
    second = engine.deploy("web")
    assert (first.status, second.status) == ("success", "success")
    return engine, first, second


def test_rollback_brings_the_previous_release_back(two_releases, docker_client):
    engine, first, second = two_releases
    rb = engine.rollback("web")
    assert rb.state == "completed" and rb.to_deployment_id == first.id and rb.from_deployment_id == second.id
    assert Deployment.get_by_id(first.id).status == "success"
    assert Deployment.get_by_id(second.id).status == "superseded"
    assert link_target(engine.paths.current("web")) == first.id
    assert docker_client.api.inspect_container(container_name("web", first.id))["State"]["Running"]
    assert not docker_client.api.inspect_container(container_name("web", second.id))["State"]["Running"]
    assert first.id in engine.paths.route("web").read_text()
    assert DeploymentEvent.select().where((DeploymentEvent.kind == "rollback") &
                                          DeploymentEvent.actor.is_null(False)).exists()


def test_failed_rollback_is_recorded_and_the_service_keeps_serving(two_releases, docker_client):
    engine, first, second = two_releases
    docker_client.api.remove_container(container_name("web", first.id), force=True)
    with pytest.raises(RollbackFailed, match="gone"):
        engine.rollback("web")
    rb = Rollback.select().order_by(Rollback.id.desc()).get()
    assert rb.state == "failed" and rb.error
    assert Deployment.get_by_id(second.id).status == "success"
    assert link_target(engine.paths.current("web")) == second.id
    assert docker_client.api.inspect_container(container_name("web", second.id))["State"]["Running"]


def test_rollback_without_a_previous_release_says_why(engine, tmp_path):
    engine.add_service("web", str(make_service_dir(tmp_path / "web")))
    assert engine.deploy("web").status == "success"
    from console.engine.errors import InputError
    with pytest.raises(InputError, match="no previous successful release"):
        engine.rollback("web")


def test_the_rollback_target_named_beforehand_is_the_one_rolled_back_to(two_releases):
    engine, first, second = two_releases
    plan = engine.rollback_target("web")
    assert plan == {"serving": {"id": second.id, "status": "success"}, "target": first.id}
    rb = engine.rollback("web", to=plan["target"])
    assert rb.state == "completed" and rb.to_deployment_id == first.id


def test_a_service_with_nothing_to_roll_back_to_has_no_rollback_target(engine, tmp_path):
    engine.add_service("web", str(make_service_dir(tmp_path / "web")))
    from console.engine.errors import InputError
    with pytest.raises(InputError, match="no previous successful release"):
        engine.rollback_target("web")
