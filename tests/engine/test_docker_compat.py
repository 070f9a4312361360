"""Issue 12, item 5: the few docker-py internals we rely on live in console/engine/docker_compat.py, checked against
the installed docker-py on the real engine; the gateway's breaker and call hook are public collaborators."""
import time

import docker
import pytest
import requests

from console.engine import docker_compat
from console.engine import labels as L
from console.engine.breaker import Breaker
from console.engine.docker_gateway import BASE_IMAGE, Gateway
from console.engine.errors import Cancelled, EngineUnavailable
from tests.conftest import make_service_dir
from tests.servers import CuttableProxy


def test_the_installed_docker_py_is_one_the_compat_module_was_checked_with():
    low, high = docker_compat.TESTED
    assert low <= docker_compat.docker_py_version() < high
    docker_compat.check_version()


def test_a_public_build_stream_exposes_its_response_and_socket(docker_client, base_image, tmp_path):
    """What cancelling a build relies on: the generator of APIClient.build() holds its HTTP response."""
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nRUN true\n")
    stream = docker_client.api.build(path=str(tmp_path), rm=True, forcerm=True, decode=True,
                                     labels={L.MANAGED: "true", L.STORE: "compat-test"})
    response = docker_compat.build_response(stream)
    assert isinstance(response, requests.Response)
    assert docker_compat.response_socket(docker_client.api, response) is not None
    chunks = list(stream)
    image = next(c["aux"]["ID"] for c in chunks if "aux" in c)
    docker_client.api.remove_image(image, force=True)


def test_a_bounded_ping_answers_and_an_absent_engine_raises(docker_client, tmp_path):
    docker_compat.ping_within(docker_client.api, 5)
    dead = docker.APIClient(base_url=f"unix://{tmp_path / 'nothing.sock'}", version="1.41")
    with pytest.raises(requests.exceptions.ConnectionError):
        docker_compat.ping_within(dead, 2)


def test_cancelling_a_build_through_the_public_api_stops_it(docker_client, base_image, tmp_path):
    src = make_service_dir(tmp_path / "slow", extra="RUN sleep 30")
    gw = Gateway("local", docker_client)
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        gw.build(str(src), "deployer-compat-test:cancel", {L.MANAGED: "true", L.STORE: "compat-test"},
                 on_line=lambda line: None, should_stop=lambda: time.monotonic() - t0 > 2)


def test_the_breaker_is_a_collaborator_and_on_call_counts_each_docker_call(docker_client, tmp_path):
    calls = []
    failures = []
    breaker = Breaker(5.0, on_failure=failures.append)
    dead_client = docker.DockerClient(base_url=f"unix://{tmp_path / 'nothing.sock'}", version="1.41", timeout=2)
    dead = Gateway("dead", dead_client, breaker=breaker, on_call=lambda host, what: calls.append((host, what)))
    with pytest.raises(EngineUnavailable, match="unreachable while"):
        dead.list_volumes("compat-test")
    with pytest.raises(EngineUnavailable, match="failed under 5 s ago"):  # failed fast: no second call was made
        dead.list_volumes("compat-test")
    assert calls == [("dead", "listing volumes")] and failures == ["dead"]
    live = Gateway("local", docker_client, breaker=breaker, on_call=lambda host, what: calls.append((host, what)))
    assert live.ping() and calls[-1] == ("local", "pinging")


def test_a_followed_log_stream_exposes_its_response(docker_client, base_image):
    """What closing a followed log over ssh:// relies on: the CancellableStream holds its HTTP response."""
    c = docker_client.containers.run(BASE_IMAGE, ["sh", "-c", "echo hi; sleep 30"], detach=True,
                                     labels={L.MANAGED: "true", L.STORE: "compat-test"})
    try:
        stream = docker_client.api.logs(c.id, stream=True, follow=True)
        response = docker_compat.stream_response(stream)
        assert isinstance(response, requests.Response)
        assert docker_compat.ssh_channel(response) is None   # a unix socket: no paramiko channel under it
        stream.close()
    finally:
        c.remove(force=True)


def test_the_ssh_socket_docker_py_opens_is_one_ssh_py_can_subclass():
    base = docker_compat.ssh_socket_base()
    assert all(callable(getattr(base, name, None)) for name in ("connect", "_write", "close", "shutdown"))
    docker_compat.use_ssh_socket(base)   # putting docker-py's own class back is a no-op
    assert docker_compat.ssh_socket_base() is base


@pytest.fixture
def proxy(tmp_path):
    p = CuttableProxy(tmp_path / "docker.sock")
    yield p
    p.close()


def test_a_build_whose_connection_breaks_is_one_engine_unavailable_line(docker_client, base_image, tmp_path, proxy):
    """docker-py reads a build's answer with urllib3 itself: a connection cut between two chunks is urllib3's
    ProtocolError (what failed CI once, when the cancel watcher cut it), to be reported as an unreachable engine."""
    src = make_service_dir(tmp_path / "chatty",
                           extra='RUN i=0; while [ $i -lt 300 ]; do echo "line $i"; i=$((i+1)); sleep 0.1; done')
    gw = Gateway("local", docker.DockerClient(base_url=f"unix://{proxy.path}", version="1.41", timeout=30))
    seen = []

    def on_line(line):
        seen.append(line)
        if sum("line " in s for s in seen) == 3:
            proxy.cut()

    with pytest.raises(EngineUnavailable, match="build stream broke"):
        gw.build(str(src), "deployer-compat-test:cut", {L.MANAGED: "true", L.STORE: "compat-test"},
                 on_line=on_line, should_stop=lambda: False)


def test_a_volume_backup_whose_connection_breaks_is_engine_unavailable_and_leaves_nothing(
        docker_client, base_image, tmp_path, proxy):
    volume = docker_client.volumes.create(labels={L.MANAGED: "true", L.STORE: "compat-test"})
    try:
        docker_client.containers.run(BASE_IMAGE, ["dd", "if=/dev/urandom", "of=/data/blob", "bs=1048576",
                                                  "count=24"], volumes={volume.name: {"bind": "/data"}}, remove=True)
        gw = Gateway("local", docker.DockerClient(base_url=f"unix://{proxy.path}", version="1.41", timeout=30))
        calls = []

        def should_stop():
            calls.append(1)
            if len(calls) == 1:
                proxy.cut()
            return False

        dest = tmp_path / "vol.tar.gz"
        with pytest.raises(EngineUnavailable, match="volume stream broke"):
            gw.backup_volume(volume.name, dest, {L.MANAGED: "true", L.STORE: "compat-test"}, should_stop=should_stop)
        assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()
        assert not docker_client.containers.list(all=True, filters={"label": f"{L.STORE}=compat-test"})
    finally:
        volume.remove(force=True)
