"""A host on another machine than the proxy: its containers publish their port on the host's `address` (`host add
--address`, `[hosts.NAME] address`), and the route the proxy gets dials that address. Without one they publish on
the host's loopback, which a proxy on another machine cannot reach: the check through the proxy fails and the route
never moves there (before, the route said 127.0.0.1:PORT, the proxy's own loopback).

The other machine is h2's engine in its own network namespace (tests/dockerd.py), reached from this one through a
veth pair: h2's end has ADDRESS, as a second machine on a private network would. Caddy runs here."""
import json
import os
import subprocess
import urllib.request

import docker
import pytest

from console import config
from console.engine import doctor
from console.engine.errors import InputError
from console.engine.host_specs import HostSpec, checked_address, on_this_machine
from console.engine.releases import container_name
from storage.models import Host
from tests.cli import cli_env, run_cli
from tests.conftest import purge_store_resources
from tests.engine.test_routing import versioned
from tests.hosts.sshd import Sshd

ADDRESS, HERE = "10.79.0.2", "10.79.0.1"
ROUTE_HOST = "web.test"


@pytest.fixture
def link(h2_session, routed):
    """A veth pair between this namespace and h2's; h2's end has ADDRESS. What the test's engine (`routed`, through
    the test's Caddy: tests/conftest.py) left on h2 is removed after."""
    h2_session.start()
    tag = os.getpid() % 100000
    here, there = f"pa{tag}r", f"pa{tag}n"
    ns = ["nsenter", f"--net=/var/run/netns/{h2_session.NETNS}"]

    def ip(*args, inside=False):
        subprocess.run([*(ns if inside else []), "ip", *args], check=True, capture_output=True, timeout=30)
    for stale in subprocess.run(["ip", "-o", "addr", "show", "to", HERE], capture_output=True, text=True).stdout \
            .splitlines():   # a link a killed run left (its peer in h2 goes with it)
        subprocess.run(["ip", "link", "del", stale.split()[1].split("@")[0]], capture_output=True)
    ip("link", "add", here, "type", "veth", "peer", "name", there)
    ip("link", "set", there, "netns", h2_session.NETNS)
    ip("addr", "add", f"{HERE}/30", "dev", here)
    ip("link", "set", here, "up")
    ip("addr", "add", f"{ADDRESS}/30", "dev", there, inside=True)
    ip("link", "set", there, "up", inside=True)
    yield h2_session
    subprocess.run(["ip", "link", "del", here], capture_output=True)
    client = docker.DockerClient(base_url=h2_session.URL, timeout=60)
    purge_store_resources(client, routed.store_id)
    client.close()


def deploy_on(routed, tmp_path, host: str, version: str):
    """Service `web` (answering `version`, routed by ROUTE_HOST) pinned to `host`, deployed."""
    src = tmp_path / "src"
    versioned(src, version)
    routed.add_service("web", str(src), route_host=ROUTE_HOST, host=host)
    return routed.deploy("web")


def test_a_deployment_on_another_machine_is_routed_to_its_address(routed, caddy, link, tmp_path):
    routed.hosts.add("h2", link.URL, address=ADDRESS)
    dep = deploy_on(routed, tmp_path, "h2", "from-h2")
    assert dep.status == "success", dep.error
    assert caddy.get("/", ROUTE_HOST) == (200, "from-h2")
    client = docker.DockerClient(base_url=link.URL, timeout=60)
    try:
        ports = client.api.inspect_container(container_name("web", dep.id))["NetworkSettings"]["Ports"]["8080/tcp"]
    finally:
        client.close()
    assert ports[0]["HostIp"] == ADDRESS
    with urllib.request.urlopen(f"{caddy.admin}/config/", timeout=5) as answer:
        upstreams = answer.read().decode()
    assert f'"dial":"{ADDRESS}:{ports[0]["HostPort"]}"' in upstreams and '"dial":"127.0.0.1' not in upstreams


@pytest.fixture
def edge(tmp_path, link, monkeypatch):
    """h2's engine over ssh:// by a name (`edge-h2`, an alias in the test's ssh config for this machine's sshd), as
    a host on another machine is reached."""
    server = Sshd(tmp_path / "sshd").start()
    with open(server.root / "ssh_config", "a") as f:
        f.write(f"Host edge-h2\n  HostName 127.0.0.1\n  Port {server.port}\n")
    server.trust_host_key()
    monkeypatch.setenv("PATH", server.path_env())
    yield "ssh://root@edge-h2"
    server.stop()


def test_over_ssh_without_an_address_the_route_never_moves_to_that_machines_loopback(routed, caddy, edge,
                                                                                      tmp_path):
    src = tmp_path / "src"
    versioned(src, "v1")
    routed.add_service("web", str(src), route_host=ROUTE_HOST)
    v1 = routed.deploy("web")
    assert v1.status == "success", v1.error
    routed.hosts.add("edge", edge)
    versioned(src, "from-edge")
    routed.add_service("web", str(src), route_host=ROUTE_HOST, host="edge", replace=True)
    dep = routed.deploy("web")
    assert dep.status == "failed" and dep.error.startswith("UPDATING_ROUTES: container "), dep.error
    assert "listens on that machine's loopback (127.0.0.1), which no proxy here reaches" in dep.error
    assert routed.router.routed(["web"]) == {"web": v1.id} and caddy.get("/", ROUTE_HOST) == (200, "v1")


def test_over_ssh_with_an_address_the_route_dials_it(routed, caddy, edge, tmp_path):
    routed.hosts.add("edge", edge, address=ADDRESS)
    dep = deploy_on(routed, tmp_path, "edge", "from-edge")
    assert dep.status == "success", dep.error
    assert caddy.get("/", ROUTE_HOST) == (200, "from-edge")


def test_a_local_socket_is_trusted_to_share_this_machines_loopback(routed, caddy, link, tmp_path):
    """A unix socket is this machine's engine (h2 in another network namespace is the exception only a test makes):
    the route moves, and the check through the proxy catches that it leads nowhere; the route is put back."""
    routed.hosts.add("h2", link.URL)
    routed.settings.pipeline.health_timeout = 3
    dep = deploy_on(routed, tmp_path, "h2", "from-h2")
    assert dep.status == "failed" and "health check through the proxy timed out" in dep.error, dep.error
    assert routed.router.routed(["web"]) == {"web": None}


def test_addresses_are_checked_stored_shown_and_said_by_doctor(engine, tmp_path, monkeypatch):
    assert checked_address("h", "10.0.0.5") == "10.0.0.5" and checked_address("h", "[fd00::5]") == "fd00::5"
    assert checked_address("h", None) is None and checked_address("h", "") is None
    assert on_this_machine(HostSpec("a", "", "default"))
    assert on_this_machine(HostSpec("b", "unix:///run/x.sock", "store"))
    assert on_this_machine(HostSpec("c", "tcp://127.0.0.1:2376", "store"))
    assert on_this_machine(HostSpec("d", "ssh://deploy@localhost", "store"))
    assert not on_this_machine(HostSpec("e", "ssh://deploy@edge.example.net", "store"))
    assert not on_this_machine(HostSpec("f", "tcp://10.0.0.5:2376", "store"))
    for bad in ("web-1.internal", "10.0.0", "0.0.0.0", "::"):
        with pytest.raises(InputError, match="address"):
            checked_address("h", bad)
    env = cli_env(engine, DEPLOYER_DOCKER_HOST=None, DEPLOYER_CONFIG=None)
    refused = run_cli(["host", "add", "far", "tcp://10.0.0.5:2376", "--address", "far.example", "--force"], env)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "error: address 'far.example' of host far is not an IP address (the one a proxy reaches the host's "
        "containers at)"], refused.stderr
    assert Host.get_or_none(Host.name == "far") is None
    added = run_cli(["host", "add", "far", "ssh://deploy@10.0.0.5", "--address", "10.0.0.5", "--force", "--json"],
                    env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["address"] == "10.0.0.5" and Host.get(Host.name == "far").address == "10.0.0.5"
    listed = run_cli(["host", "ls", "--no-probe", "--json"], env)
    assert {r["name"]: r["address"] for r in json.loads(listed.stdout)} == {"local": "127.0.0.1", "far": "10.0.0.5"}
    assert "PUBLISH" in run_cli(["host", "ls", "--no-probe"], env).stdout

    # a config host on another machine without an address: doctor says the proxy cannot reach its containers
    cfg = tmp_path / "config.toml"
    cfg.write_text('[hosts.edge]\nurl = "ssh://deploy@10.0.0.9"\n[hosts.near]\nurl = "ssh://deploy@10.0.0.8"\n'
                   'address = "10.0.0.8"\n')
    monkeypatch.setenv("DEPLOYER_CONFIG", str(cfg))
    settings = config.load(data_dir=engine.settings.data_dir, db=engine.settings.store.db)
    warned = {c["name"]: c for c in doctor._addresses(settings, doctor._specs(settings, engine.store))}
    assert set(warned) == {"address edge"} and warned["address edge"]["level"] == doctor.WARN
    assert "[hosts.edge] address" in warned["address edge"]["fix"]
