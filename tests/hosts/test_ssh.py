"""`ssh://` Docker hosts end to end (issue 15, item 1): a real OpenSSH server (Debian's openssh-server, key
authentication only) in front of the second engine, reached with the system `ssh` client. Where sshd listens and why:
see tests/hosts/sshd.py (root namespace, 127.0.0.1, sessions pointed at h2's engine socket)."""
import socket
import time
import uuid

import docker
import pytest

from console.engine import hosts as H
from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.engine.errors import EngineUnavailable
from console.engine.pipeline import link_target
from storage.models import Deployment, Host
from tests.conftest import make_service_dir, purge_store_resources, wait_for
from tests.hosts.sshd import Sshd
from tests.hosts.test_hosts import BAD, cli

pytestmark = pytest.mark.slow
GHOST = "0123456789ab"


@pytest.fixture
def sshd(tmp_path, h2_session, engine, monkeypatch):
    h2_session.start()
    server = Sshd(tmp_path / "sshd").start()
    monkeypatch.setenv("PATH", server.path_env())   # `ssh` = the system client with this test's keys/known_hosts
    engine.settings.scheduler.host_timeout = 10.0
    client = docker.DockerClient(base_url=h2_session.URL, timeout=60)
    yield server, client
    server.stop()
    purge_store_resources(client, engine.store_id)
    client.close()


def _ours(client, store_id, deployment_id):
    return client.containers.list(all=True, filters={"label": [f"{L.STORE}={store_id}",
                                                               f"{L.DEPLOYMENT}={deployment_id}"]})


def test_an_unknown_host_key_is_refused_with_one_line_and_host_add_base_image_builds_over_ssh(engine, sshd):
    server, h2 = sshd
    proc = cli(engine, "host", "add", "s1", server.url, "--base-image", PATH=server.path_env())
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "not known" in proc.stderr and "ssh-keyscan" in proc.stderr, proc.stderr
    assert Host.select().count() == 0, "nothing is added when the engine cannot be reached"

    server.trust_host_key()   # the operator's one step: ssh-keyscan (or `ssh HOST` once) into known_hosts
    proc = cli(engine, "host", "add", "s1", server.url, "--base-image", PATH=server.path_env())
    assert proc.returncode == 0, proc.stderr
    assert "deployer/base:busybox present" in proc.stdout, proc.stdout
    # the build itself over ssh (the shared base image stays: other tests use it), under a tag of this test's own
    tag = f"deployer/base:ssh-{uuid.uuid4().hex[:8]}"
    try:
        assert engine.hosts.gateway("s1").ensure_base_image(tag=tag) is True
        assert h2.images.get(tag).labels.get(L.ROLE) == "base"
    finally:
        try:
            h2.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def test_deploy_fail_cleanup_rollback_and_orphan_sweep_over_ssh(engine, sshd, tmp_path):
    server, h2 = sshd
    server.trust_host_key()
    H.add_host(engine, "s1", server.url)
    engine.add_service("web", str(make_service_dir(tmp_path / "web")), host="s1")

    first = engine.deploy("web")                                   # build (context upload), create, start, health
    assert first.status == "success", first.error
    [c1] = _ours(h2, engine.store_id, first.id)
    assert c1.status == "running"
    gw = engine.hosts.gateway("s1")
    assert isinstance(gw.logs(c1.id), bytes)
    stream = gw.follow_logs(c1.id, tail=5)                         # the console follows logs over ssh
    stream.close()

    second = engine.deploy("web")
    assert second.status == "success", second.error
    engine.rollback("web")                                         # back to the first, over ssh
    assert link_target(engine.paths.current("web")) == first.id
    assert _ours(h2, engine.store_id, first.id)[0].status == "running"

    engine.add_service("bad", str(make_service_dir(tmp_path / "bad", dockerfile=BAD)), host="s1",
                       volumes=["data:/data"])
    failed = engine.deploy("bad")
    assert failed.status == "failed"
    Cleaner(engine.ctx).run_due()                                      # its cleanup removes its container over ssh
    assert _ours(h2, engine.store_id, failed.id) == []
    archived = {p.name for p in engine.paths.archive(failed.id).iterdir()}
    assert any(n.endswith(".log.gz") for n in archived), archived          # its log, archived over ssh
    assert any("data" in n and n.endswith(".tar.gz") for n in archived), archived   # its volume, backed up
    assert Deployment.get_by_id(failed.id).status == "failed"

    project = engine.service("web").project_id
    ghost = h2.api.create_container("deployer/base:busybox", command=["sleep", "300"], name=f"ghost-{GHOST}-"
                                    f"{uuid.uuid4().hex[:4]}", labels=L.deployment_labels(engine.store_id, GHOST,
                                                                                         "web", project))
    engine.settings.scheduler.orphan_grace = 0.0
    result = engine.reconcile()                                    # the orphan sweep lists and removes over ssh
    assert ghost["Id"] in {o["id"] for o in result["orphans"]}, result
    with pytest.raises(docker.errors.NotFound):
        h2.api.inspect_container(ghost["Id"])


def test_an_ssh_server_that_never_answers_is_given_up_within_host_timeout(engine):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)                                    # accepts, never sends a banner: a wedged host
    try:
        t0 = time.monotonic()
        proc = cli(engine, "host", "add", "sx", f"ssh://root@127.0.0.1:{silent.getsockname()[1]}",
                   DEPLOYER_HOST_TIMEOUT="3")
        assert proc.returncode == 3 and proc.stderr.count("\n") == 1 and "no answer" in proc.stderr, proc.stderr
        assert time.monotonic() - t0 < 3 + 5
        assert Host.select().count() == 0
    finally:
        silent.close()


def test_an_engine_that_takes_a_request_and_never_answers_over_ssh_times_out(engine, sshd):
    """The ssh connection is alive (sshd answers its keep-alives) but the engine behind it is frozen (SIGSTOP): a
    request is taken and never answered. docker-py read the ssh pipe with no timeout, so such a call held its
    caller (a cleanup run, reconcile's observe step) for ever; now it ends with the connection's read timeout, and
    the same gateway works again once the engine does."""
    import os
    import signal
    import threading

    from tests import dockerd
    server, _ = sshd
    server.trust_host_key()
    engine.hosts.timeout = 4.0            # the read timeout of this run's clients (60 s by default)
    engine.hosts.add("s1", server.url)
    gw = engine.hosts.gateway("s1")
    assert gw.list_managed(engine.store_id) == []          # the connection works (and is pooled)
    pid = dockerd._pid()
    assert pid, "h2's engine is not running"
    outcome = {}

    def call():
        t0 = time.monotonic()
        try:
            gw.list_managed(engine.store_id)
            outcome["result"] = "answered"
        except Exception as e:  # noqa: BLE001 - which error is checked below
            outcome["result"] = e
        outcome["took"] = time.monotonic() - t0

    os.kill(pid, signal.SIGSTOP)
    try:
        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        worker.join(30)
        assert not worker.is_alive(), "the call over ssh still waits 30 s after its 4 s read timeout"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert isinstance(outcome["result"], EngineUnavailable) and "ReadTimeout" in str(outcome["result"]), outcome
    assert 3.5 < outcome["took"] < 15, outcome

    def answers():   # the breaker fails calls fast for a few seconds after a failure, then lets one through
        try:
            return gw.list_managed(engine.store_id) == []
        except EngineUnavailable:
            return False
    wait_for(answers, timeout=30, what="the gateway to answer again once the engine does")


def test_a_host_alias_with_its_port_in_the_ssh_config_is_used_as_ssh_would(engine, sshd):
    """`ssh://root@edge` without a port: the alias's Port in the ssh config applies, as for `ssh edge` (docker-py
    made it 22, so such a host never answered)."""
    server, _ = sshd
    with open(server.root / "ssh_config", "a") as f:
        f.write(f"Host edge-alias\n  HostName 127.0.0.1\n  Port {server.port}\n")
    server.trust_host_key()
    proc = cli(engine, "host", "add", "edge", "ssh://root@edge-alias", PATH=server.path_env())
    assert proc.returncode == 0, proc.stderr
    assert engine.hosts.gateway("edge").ping(timeout=10, probe=True)
    assert engine.hosts.gateway("edge").version()["ApiVersion"]
