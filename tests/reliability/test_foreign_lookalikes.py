"""Nothing foreign touched (issue 10, items 1-2): a stranger holding one of our container names is never stopped,
started or exec'd by a deploy, a resume or a rollback -- each says which container it refused -- and a Dockerfile
cannot set a `deployer.*` label that would change what is ours.

The look-alike is created here, with no labels (as `docker run -d --name deployer-web-<id> ... sleep 3600` would),
and removed at the end by the id recorded at creation. What happened to it is read from the engine's own event
stream: no start, stop, kill, die or exec_* event may name it.

Also here (item 12): a cancelled build leaves no untagged image behind once its cleanup ran."""
import threading
import time
import uuid

import docker
import pytest

from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.engine.errors import ForeignContainer
from console.engine.paths import link_target
from console.engine.pipeline import container_name, image_tag
from console.engine.rollback import RollbackFailed
from storage.models import Deployment, DeploymentEvent
from tests.conftest import make_service_dir, wait_for

ACTIONS = ("start", "stop", "kill", "die", "restart", "pause", "rename", "destroy")


@pytest.fixture
def look_alike(docker_client):
    """`make(name)`: a running busybox container with no labels under `name`, standing in for a stranger's."""
    made = []

    def make(name: str) -> str:
        api = docker_client.api
        cid = api.create_container("deployer/base:busybox", command=["sleep", "3600"], name=name,
                                   host_config=api.create_host_config(init=True))["Id"]
        api.start(cid)
        made.append(cid)
        return cid

    yield make
    for cid in made:
        try:
            docker_client.api.remove_container(cid, force=True)
        except docker.errors.APIError:
            pass


def engine_events(client, cid: str, since: float) -> list[str]:
    """Every action the engine recorded on container `cid` since `since` (epoch seconds)."""
    stream = client.api.events(since=int(since), until=int(time.time()) + 1, filters={"container": cid},
                               decode=True)
    return [e.get("Action") or e.get("status") for e in stream]


def touched(client, cid: str, since: float) -> list[str]:
    return [a for a in engine_events(client, cid, since) if a.split(":")[0] in ACTIONS or a.startswith("exec_")]


def test_a_same_named_stranger_is_never_stopped_started_or_execd_by_deploy_resume_or_rollback(
        engine, tmp_path, docker_client, look_alike):
    engine.add_service("web", str(make_service_dir(tmp_path / "web")))
    s1 = engine.deploy("web")
    assert s1.status == "success"
    name = container_name("web", s1.id)
    docker_client.api.remove_container(name, force=True)
    stranger = look_alike(name)
    since = time.time() - 1

    # deploy again: the new release succeeds, the superseded "container" is a stranger: reported, not stopped
    s2 = engine.deploy("web")
    assert s2.status == "success"
    assert docker_client.api.inspect_container(stranger)["State"]["Running"]
    warning = DeploymentEvent.get((DeploymentEvent.deployment == s1.id) & (DeploymentEvent.level == "warning") &
                                  DeploymentEvent.message.contains(name))
    assert "nothing was done to it" in warning.message

    # rollback to S1: refused, naming the stranger; S2 keeps serving
    with pytest.raises(RollbackFailed, match=f"container {name} on host local is not deployment {s1.id}'s"):
        engine.rollback("web", to=s1.id)
    assert Deployment.get_by_id(s2.id).status == "success"
    assert link_target(engine.paths.current("web")) == s2.id
    assert s2.id in engine.paths.route("web").read_text()

    # a stopped stranger is not started either
    docker_client.api.stop(stranger, timeout=1)
    since_stop = time.time() + 1
    time.sleep(1.2)
    with pytest.raises(RollbackFailed, match=name):
        engine.rollback("web", to=s1.id)
    assert not docker_client.api.inspect_container(stranger)["State"]["Running"]
    assert touched(docker_client, stranger, since_stop) == []
    docker_client.api.start(stranger)
    since_start = time.time() + 1
    time.sleep(1.2)

    # resuming S1 runs the completion checks of COPYING_FILES and UPDATING_ROUTES: it fails naming the stranger
    with engine.store.write():
        Deployment.update(status="failed").where(Deployment.id == s1.id).execute()
    again = engine.resume(s1.id, from_phase="HEALTH_CHECK")
    assert again.status == "failed"
    assert name in again.error and "nothing was done to it" in again.error
    assert docker_client.api.inspect_container(stranger)["State"]["Running"]
    assert touched(docker_client, stranger, since_start) == []
    # over the whole test: the engine only ever saw our own calls (create/start/stop by the test) on it
    assert [a for a in touched(docker_client, stranger, since) if a.startswith("exec_")] == []


def test_a_handle_whose_ownership_was_not_checked_is_refused(engine, docker_client, look_alike):
    from console.engine.docker_gateway import Gateway
    stranger = look_alike(f"fgn-unchecked-{engine.store_id}")
    gw = Gateway("local", docker_client)
    info = gw._find_by_name(f"fgn-unchecked-{engine.store_id}")
    with pytest.raises(ForeignContainer, match="nothing was done to it"):
        gw.stop(info)
    with pytest.raises(ForeignContainer):
        gw.stop(stranger)
    with pytest.raises(ForeignContainer):
        gw.http_check(info, 8080, "/")
    with pytest.raises(ForeignContainer, match="not deployment 0123456789ab's"):
        gw.find_ours(f"fgn-unchecked-{engine.store_id}", engine.store_id, "0123456789ab")
    assert docker_client.api.inspect_container(stranger)["State"]["Running"]


def test_a_dockerfile_deployer_label_is_refused_naming_it_and_leaves_no_image(engine, tmp_path, docker_client):
    src = make_service_dir(tmp_path / "sneaky", extra="LABEL deployer.scope=project deployer.store=someone")
    engine.add_service("sneaky", str(src))
    dep = engine.deploy("sneaky")
    assert dep.status == "failed"
    assert dep.error.startswith("BUILDING: ") and "deployer.scope=project" in dep.error
    assert "deployer.store" not in dep.error  # ours win over the Dockerfile's for the labels we set
    assert not docker_client.api.images(filters={"reference": image_tag("sneaky", dep.id)})
    assert docker_client.api.containers(all=True, filters=L.managed_filter(engine.store_id, dep.id)) == []


def test_a_cancelled_build_leaves_no_untagged_image_behind_after_its_cleanup(engine, tmp_path, docker_client):
    token = uuid.uuid4().hex
    src = make_service_dir(tmp_path / "slow", dockerfile=(
        "FROM deployer/base:busybox\n"
        f"RUN echo {token}-one > /one\n"
        f"RUN echo {token}-two > /two\n"
        f"RUN echo {token}-sleep >/dev/null && sleep 30\n"
        'CMD ["httpd", "-f", "-p", "8080"]\n'))
    engine.settings.cleanup.cleanup_delay = 0
    engine.add_service("slow", str(src))
    dep = engine.create_deployment("slow")
    worker = threading.Thread(target=engine.pipeline.run, args=(dep.id,))
    worker.start()
    wait_for(lambda: [c for c in docker_client.api.containers() if f"{token}-sleep" in (c.get("Command") or "")],
             timeout=60, what="the build to reach its slow step")
    engine.cancel(dep.id)
    worker.join(10)
    wait_for(lambda: not [c for c in docker_client.api.containers(all=True)
                          if token in (c.get("Command") or "")], timeout=20, what="the build container to go")

    def left_by_the_build() -> list[str]:
        found = []
        for image in docker_client.api.images(all=True):
            try:
                cmd = docker_client.api.inspect_image(image["Id"]).get("ContainerConfig", {}).get("Cmd") or []
            except docker.errors.NotFound:
                continue
            if token in " ".join(cmd):
                found.append(image["Id"])
        return found

    assert left_by_the_build(), "the reproduction: the cancelled build committed its first steps"
    assert Cleaner(engine.ctx).run_due()["done"] == 1
    assert left_by_the_build() == []
    assert DeploymentEvent.select().where((DeploymentEvent.deployment == dep.id) &
                                          DeploymentEvent.message.contains("untagged image(s) left by the build")
                                          ).exists()
