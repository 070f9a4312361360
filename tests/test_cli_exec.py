"""`exec ID [-- CMD...]` and `clean ID...` from the CLI, against a real container on the real engine."""
import json
import subprocess

import docker
import pytest

from console.engine import labels as L
from console.engine.releases import container_name
from storage.models import CleanupTask, Deployment
from tests.cli import CLI, cli_env
from tests.conftest import make_service_dir
from tests.hosts.test_ssh import sshd  # noqa: F401 - the fixture (a real sshd in front of the second engine)
from tests.test_cli import cli  # noqa: F401 - the fixture


@pytest.fixture
def running(running_web):
    return running_web


def audit_records(cli, action):  # noqa: F811
    out = cli("audit", "--json")
    assert out.returncode == 0, out.stderr
    return [r for r in json.loads(out.stdout) if r["action"] == action]


def test_exec_echo_hi_prints_hi_passes_the_exit_code_through_and_is_audited(cli, running):  # noqa: F811
    out = cli("exec", running.id, "--", "echo", "hi")
    assert (out.returncode, out.stdout) == (0, "hi\n"), out.stderr
    out = cli("exec", running.id, "--", "sh", "-c", "echo out; exit 7")
    assert (out.returncode, out.stdout) == (7, "out\n"), out.stderr
    records = audit_records(cli, "exec")
    assert len(records) == 2 and all(r["outcome"] == "ok" for r in records)
    assert records[0]["target"] == f"{running.id} container {container_name('web', running.id)}"
    assert "echo hi" in records[0]["message"]


def test_exec_in_plain_mode_forwards_stdin_as_docker_exec_i_does(cli, engine, running):  # noqa: F811
    # `echo hi | deployer-console exec ID -- cat` printed nothing: plain mode ran `docker exec` without -i
    out = cli("exec", running.id, "--", "cat", input="hi\n")
    assert (out.returncode, out.stdout) == (0, "hi\n"), out.stderr
    out = cli("exec", running.id, "--", "sh", "-c", "wc -l; exit 5", input="a\nb\nc\n")   # all of it, then its end
    assert (out.returncode, out.stdout.strip()) == (5, "3"), out.stderr
    # a command that does not read its input ends without waiting for ours to end (a pipe left open here)
    proc = subprocess.Popen([*CLI, "exec", running.id, "--", "echo", "done"], env=cli_env(engine),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        assert proc.stdout.read() == "done\n"
    finally:
        proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_exec_refuses_a_foreign_container_with_the_deployments_name_and_leaves_it_alone(cli, running,  # noqa: F811
                                                                                     docker_client):
    name = container_name("web", running.id)
    docker_client.api.remove_container(name, force=True)
    stranger = docker_client.containers.run("deployer/base:busybox", ["sleep", "300"], name=name, detach=True)
    try:
        out = cli("exec", running.id, "--", "echo", "hi")
        assert out.returncode == 2, (out.stdout, out.stderr)
        assert out.stdout == ""
        assert f"container {name}" in out.stderr and "not deployment" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        stranger.reload()
        assert stranger.status == "running"
        assert [r["outcome"] for r in audit_records(cli, "exec")] == ["refused"]
    finally:
        stranger.remove(force=True)


def test_exec_of_an_unknown_id_or_in_read_only_mode_is_refused_and_runs_nothing(cli, running):  # noqa: F811
    out = cli("--read-only", "exec", running.id, "--", "echo", "hi")
    assert out.returncode == 2 and out.stdout == "" and "read-only mode: exec refused" in out.stderr, out.stderr
    out = cli("exec", "abcdef123456", "--", "echo", "hi")
    assert out.returncode == 2 and "unknown deployment abcdef123456" in out.stderr, out.stderr
    assert audit_records(cli, "exec") == []


def test_clean_runs_a_failed_deployments_cleanup_now_and_names_the_ones_it_skips(cli, engine, running,  # noqa: F811
                                                                              tmp_path, docker_client):
    engine.settings.cleanup.cleanup_delay = 600
    engine.settings.pipeline.health_timeout = 3
    engine.add_service("sick", str(make_service_dir(tmp_path / "sick")), health_path="/never")
    failed = engine.deploy("sick")
    assert failed.status == "failed"
    assert docker_client.api.containers(all=True, filters={"label": f"{L.DEPLOYMENT}={failed.id}"})
    out = cli("clean", failed.id, running.id)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stdout.split() == [failed.id, "done"]
    assert out.stderr.strip() == (f"error: {running.id}: deployment {running.id} is success; only failed or "
                                  f"cancelled deployments are cleaned up")
    assert CleanupTask.get(CleanupTask.deployment == failed.id).state == "done"
    assert docker_client.api.containers(all=True, filters={"label": f"{L.DEPLOYMENT}={failed.id}"}) == []
    assert Deployment.get_by_id(running.id).status == "success"
    out = cli("clean", failed.id, "--json")
    assert out.returncode == 2
    assert json.loads(out.stdout) == [{"id": failed.id, "ok": False, "code": 2,
                                       "error": f"deployment {failed.id} is already cleaned up"}]


def test_exec_reaches_the_container_on_the_deployments_own_host_over_a_socket_and_over_ssh(engine, tmp_path, h2,
                                                                                          request):
    """A second engine (unix socket, `-H`) and the same engine behind a real sshd (ssh://, the system ssh client):
    the hostname the command prints is the container's on that engine, not one on the default host."""
    from console.engine import hosts as H
    from tests.hosts.test_hosts import cli as host_cli
    client = docker.DockerClient(base_url=h2.URL, timeout=60)
    engine.add_service("far", str(make_service_dir(tmp_path / "far")), host="h2")
    dep = engine.deploy("far")
    assert dep.status == "success", dep.error
    short_id = client.containers.get(container_name("far", dep.id)).id[:12]
    out = host_cli(engine, "exec", dep.id, "--", "hostname")
    assert (out.returncode, out.stdout) == (0, f"{short_id}\n"), out.stderr

    server = request.getfixturevalue("sshd")[0]
    server.trust_host_key()
    H.add_host(engine, "s1", server.url)
    engine.add_service("viassh", str(make_service_dir(tmp_path / "viassh")), host="s1")
    dep = engine.deploy("viassh")
    assert dep.status == "success", dep.error
    short_id = client.containers.get(container_name("viassh", dep.id)).id[:12]
    out = host_cli(engine, "exec", dep.id, "--", "sh", "-c", "hostname; exit 3", PATH=server.path_env())
    assert (out.returncode, out.stdout) == (3, f"{short_id}\n"), out.stderr
    client.close()


def test_a_tls_host_is_reached_with_its_own_ca_cert_and_key_and_nothing_from_the_environment(monkeypatch):
    """No TLS engine runs here: this checks the docker CLI's options for one (the same files docker-py is given)."""
    from console.engine.hosts import HostSpec
    from console.engine.shell import cli_target
    monkeypatch.setenv("DOCKER_HOST", "tcp://elsewhere:2376")
    monkeypatch.setenv("DOCKER_CERT_PATH", "/elsewhere")
    spec = HostSpec("t1", "tcp://10.0.0.5:2376", "store", tls_ca="/k/ca.pem", tls_cert="/k/cert.pem",
                    tls_key="/k/key.pem")
    args, env = cli_target(spec)
    assert args == ["-H", "tcp://10.0.0.5:2376", "--tlsverify", "--tlscacert", "/k/ca.pem", "--tlscert",
                    "/k/cert.pem", "--tlskey", "/k/key.pem"]
    assert "DOCKER_HOST" not in env and "DOCKER_CERT_PATH" not in env
    args, env = cli_target(HostSpec("local", "", "default"))
    assert args == [] and env["DOCKER_HOST"] == "tcp://elsewhere:2376"   # the default host: as docker-py's from_env
