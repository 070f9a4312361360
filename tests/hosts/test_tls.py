"""`tcp://` hosts with TLS end to end: the second engine behind a TLS listener that requires a client certificate
(tests/hosts/tlsfront.py). `host add` with the host's CA, certificate and key; a deployment pinned there succeeds;
its logs and exec in plain mode (the docker CLI with --tlsverify) reach its container; a CA that did not sign the
server's certificate, or no client certificate, is one line and nothing added."""
import docker
import pytest

from console.engine.releases import container_name
from storage.models import Host
from tests.cli import cli_env, run_cli
from tests.conftest import make_service_dir, purge_store_resources
from tests.hosts.test_hosts import cli
from tests.hosts.tlsfront import TlsFront

pytestmark = pytest.mark.slow


@pytest.fixture
def front(tmp_path, h2_session, engine):
    h2_session.start()
    server = TlsFront(tmp_path / "tls").start()
    yield server
    server.stop()
    client = docker.DockerClient(base_url=h2_session.URL, timeout=60)
    purge_store_resources(client, engine.store_id)
    client.close()


def one_error_line(proc, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_a_tls_host_is_added_deployed_to_and_exec_and_logs_reach_its_container(engine, front, tmp_path):
    proc = cli(engine, "host", "add", "t1", front.url, "--tls-ca", front.ca, "--tls-cert", front.cert,
               "--tls-key", front.key, "--base-image")
    assert proc.returncode == 0, proc.stderr
    assert "deployer/base:busybox present" in proc.stdout
    src = make_service_dir(tmp_path / "web")
    assert cli(engine, "service", "add", "web", "--source", str(src), "--host", "t1").returncode == 0
    proc = cli(engine, "deploy", "web", "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    dep = engine.deployments(service="web")[0]
    assert dep["status"] == "success" and dep["host"] == "t1", dep
    out = cli(engine, "exec", dep["id"], "--", "sh", "-c", "echo over-tls; exit 4")
    assert (out.returncode, out.stdout) == (4, "over-tls\n"), out.stderr
    out = run_cli(["exec", dep["id"], "--", "cat"], cli_env(engine), input="piped\n")
    assert (out.returncode, out.stdout) == (0, "piped\n"), out.stderr
    gw = engine.hosts.gateway("t1")   # this process's own client of the host, as the console reads logs with it
    info = gw.find_ours(container_name("web", dep["id"]), engine.store_id, dep["id"])
    assert info is not None and info.running and isinstance(gw.whole_log(info.id), bytes)
    listed = cli(engine, "containers", "--host", "t1", "--json")
    assert listed.returncode == 0 and dep["id"] in listed.stdout, listed.stderr


def test_a_server_certificate_of_another_ca_or_no_client_certificate_is_one_line_and_nothing_added(engine, front):
    line = one_error_line(cli(engine, "host", "add", "t1", front.url, "--tls-ca", front.other_ca(),
                              "--tls-cert", front.cert, "--tls-key", front.key), 3)
    assert "host t1 not added" in line and "CERTIFICATE_VERIFY_FAILED" in line.upper().replace(" ", "_"), line
    line = one_error_line(cli(engine, "host", "add", "t1", front.url, "--tls-ca", front.ca), 3)
    assert "host t1 not added" in line, line
    assert Host.select().count() == 0


def test_the_hosts_own_ca_decides_whatever_the_environments_bundle_says(engine, front, monkeypatch):
    """requests let REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace the CA docker-py set: with a bundle that trusts the
    server, a host pinned to another CA was accepted; with the system bundle, a host's own CA was ignored."""
    import docker.errors

    from console.engine.hosts import make_client
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", front.ca)
    monkeypatch.setenv("CURL_CA_BUNDLE", front.ca)
    with pytest.raises(docker.errors.DockerException, match="CERTIFICATE_VERIFY_FAILED"):
        make_client(front.url, {"tls_ca": front.other_ca(), "tls_cert": front.cert, "tls_key": front.key}, 10, 10)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    client = make_client(front.url, {"tls_ca": front.ca, "tls_cert": front.cert, "tls_key": front.key}, 10, 10)
    try:
        assert client.version()["ApiVersion"]
    finally:
        client.close()
