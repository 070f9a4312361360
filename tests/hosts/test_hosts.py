"""Many Docker hosts (issue 7), on the real main engine and a real second engine (tests/dockerd.py, netns h2).

A deployment on h2 runs and is cleaned on h2 only; h2's engine stopped leaves the local host fully working, `host ls`
shows h2 down, and h2's cleanup completes within 10 s of its engine coming back. The main engine is never stopped.
"""
import json
import socket
import threading
import time

import docker
import pytest

from console.engine import hosts as H
from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.engine.errors import EngineUnavailable, InputError
from console.engine.pipeline import container_name, deployment_volume
from storage.models import CleanupTask, Deployment, DeploymentEvent, Host
from tests.cli import cli_env, run_cli
from tests.conftest import make_service_dir, wait_for

BAD = 'FROM deployer/base:busybox\nCMD ["httpd", "-f", "-p", "8080", "-h", "/nonexistent"]\n'


def cli(engine, *args, timeout=60, **env_extra):
    return run_cli(args, cli_env(engine, **env_extra), timeout)


def h2_client(h2, timeout=60):
    return docker.DockerClient(base_url=h2.URL, timeout=timeout)


def ours(client, dep_id, kind="containers"):
    flt = {"label": [f"{L.DEPLOYMENT}={dep_id}"]}
    if kind == "containers":
        return client.api.containers(all=True, filters=flt)
    if kind == "images":
        return client.api.images(filters=flt)
    return (client.api.volumes(filters=flt) or {}).get("Volumes") or []


def failing_on(engine, tmp_path, host, name="bad", volume=True):
    engine.settings.pipeline.health_timeout = 3
    src = make_service_dir(tmp_path / name, dockerfile=BAD)
    engine.add_service(name, str(src), health_path="/missing", host=host, volumes=["data:/data"] if volume else ())
    dep = engine.deploy(name)
    assert dep.status == "failed" and "UPDATING_ROUTES" in dep.error, dep.error  # it never answered
    return dep


def test_deployment_pinned_to_h2_succeeds_on_h2_only(engine, h2, service_dir, docker_client):
    engine.add_service("web", str(service_dir), host="h2")
    dep = engine.deploy("web")
    assert dep.status == "success", dep.error
    assert dep.host == "h2"
    c2 = h2_client(h2)
    try:
        info = c2.api.inspect_container(container_name("web", dep.id))
        assert info["State"]["Running"]
        labels = info["Config"]["Labels"]
        assert labels[L.DEPLOYMENT] == dep.id and labels[L.STORE] == engine.store_id
        assert ours(c2, dep.id, "images")
    finally:
        c2.close()
    # nothing of it on the main engine: every Docker call went to h2
    assert ours(docker_client, dep.id) == [] and ours(docker_client, dep.id, "images") == []
    hosts = {e.host for e in DeploymentEvent.select().where((DeploymentEvent.deployment == dep.id) &
                                                            DeploymentEvent.host.is_null(False))}
    assert hosts == {"h2"}
    listed = engine.containers(host="h2")
    assert [r["deployment_id"] for r in listed] == [dep.id] and listed[0]["host"] == "h2"
    assert engine.deployments(host="h2")[0]["id"] == dep.id


def test_failed_deployment_on_h2_is_cleaned_on_h2_only(engine, h2, tmp_path, docker_client):
    dep = failing_on(engine, tmp_path, "h2")
    c2 = h2_client(h2)
    try:
        assert ours(c2, dep.id) and ours(c2, dep.id, "volumes")
        # a decoy on the main engine with exactly the deployment's labels: a cleanup that asked the wrong engine
        # would remove it
        labels = L.deployment_labels(engine.store_id, dep.id, "bad", dep.service.project_id)
        decoy = docker_client.api.create_container("deployer/base:busybox", command=["sleep", "300"], labels=labels,
                                                   name=f"decoy-{dep.id}")
        decoy_vol = docker_client.api.create_volume(name=deployment_volume(dep.id, "data"), labels=labels)
        counts = Cleaner(engine.ctx).run_due(deployment_id=dep.id)
        assert counts["done"] == 1, counts
        assert ours(c2, dep.id) == [] and ours(c2, dep.id, "volumes") == [] and ours(c2, dep.id, "images") == []
        assert docker_client.api.inspect_container(decoy["Id"])["Id"] == decoy["Id"]
        assert docker_client.api.inspect_volume(decoy_vol["Name"])["Name"] == decoy_vol["Name"]
        assert CleanupTask.get(CleanupTask.deployment == dep.id).state == "done"
        archive = engine.paths.archive(dep.id)
        assert any(p.name.endswith(".log.gz") for p in archive.iterdir())
        assert any(p.name.endswith(".tar.gz") for p in archive.iterdir())
        cleanup_hosts = {e.host for e in DeploymentEvent.select().where(
            (DeploymentEvent.deployment == dep.id) & (DeploymentEvent.kind == "cleanup"))}
        assert cleanup_hosts == {"h2"}
    finally:
        c2.close()


def test_cancelled_deployment_on_h2_is_cleaned_on_h2_only(engine, h2, service_dir, docker_client, monkeypatch):
    monkeypatch.setenv("DEPLOYER_FAULT_PAUSE", "HEALTH_CHECK:60")
    engine.add_service("web", str(service_dir), host="h2", volumes=["data:/data"])
    dep = engine.create_deployment("web")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("status", engine.pipeline.run(dep.id)))
    worker.start()
    wait_for(lambda: Deployment.get_by_id(dep.id).phase == "HEALTH_CHECK", timeout=90, what="HEALTH_CHECK")
    c2 = h2_client(h2)
    try:
        wait_for(lambda: [c for c in ours(c2, dep.id) if c["State"] == "running"], timeout=10,
                 what="the container running on h2")
        engine.cancel(dep.id)
        worker.join(10)
        assert result["status"] == "cancelled"
        counts = Cleaner(engine.ctx).run_due(deployment_id=dep.id)
        assert counts["done"] == 1, counts
        assert ours(c2, dep.id) == [] and ours(c2, dep.id, "volumes") == [] and ours(c2, dep.id, "images") == []
    finally:
        c2.close()
    assert ours(docker_client, dep.id) == []


def test_h2_down_leaves_local_working_and_its_cleanup_completes_after_restart(engine, h2, tmp_path, service_dir,
                                                                               docker_client):
    engine.settings.scheduler.host_timeout = 3.0
    engine.hosts.breaker_s = 3.0
    dep2 = failing_on(engine, tmp_path, "h2", name="bad2")
    c2 = h2_client(h2)
    assert ours(c2, dep2.id)
    c2.close()
    h2.stop()
    assert not h2.is_up()
    runtime = engine.start_runtime()  # the real scheduler: lease, cleanup job, reconcile job
    try:
        # h2's cleanup is tried, fails fast and waits to retry; it never blocks the local host's work
        wait_for(lambda: (CleanupTask.get(CleanupTask.deployment == dep2.id).attempts >= 1), timeout=20,
                 what="a failed cleanup attempt on h2")
        task = CleanupTask.get(CleanupTask.deployment == dep2.id)
        assert task.state in ("pending", "running") and "h2" in (task.last_error or "")
        t0 = time.monotonic()
        proc = cli(engine, "host", "ls", "--json", DEPLOYER_HOST_TIMEOUT="3")
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - t0 < 20
        rows = {r["name"]: r for r in json.loads(proc.stdout)}
        assert rows["h2"]["reachable"] is False and rows["h2"]["last_error"]
        assert rows["local"]["reachable"] is True
        # the local host deploys and cleans while h2 is down
        engine.add_service("web", str(service_dir))
        ok = engine.deploy("web")
        assert ok.status == "success" and ok.host == "local", ok.error
        dep1 = failing_on(engine, tmp_path, None, name="bad1")
        assert dep1.host == "local" and ours(docker_client, dep1.id)
        wait_for(lambda: CleanupTask.get(CleanupTask.deployment == dep1.id).state == "done", timeout=20,
                 what="the local cleanup while h2 is down")
        assert ours(docker_client, dep1.id) == []
        assert CleanupTask.get(CleanupTask.deployment == dep2.id).state in ("pending", "running")
        # h2 comes back: its cleanup completes within 10 s
        h2.start()
        up_at = time.monotonic()
        wait_for(lambda: CleanupTask.get(CleanupTask.deployment == dep2.id).state == "done", timeout=10,
                 interval=0.1, what="h2's cleanup after its engine came back")
        took = time.monotonic() - up_at
        print(f"h2 cleanup completed {took:.1f} s after its engine came back")
        c2 = h2_client(h2)
        assert ours(c2, dep2.id) == [] and ours(c2, dep2.id, "volumes") == []
        c2.close()
        assert engine.deploy("web").status == "success"
    finally:
        runtime.stop()


def test_host_ls_add_rm_from_the_cli(engine, h2, tmp_path):
    proc = cli(engine, "host", "ls", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"local", "h2"}
    assert rows["h2"]["reachable"] is True and rows["h2"]["url"] == h2.URL and rows["h2"]["last_seen_at"]
    assert rows["local"]["default"] is True and rows["h2"]["default"] is False
    # bad input: one line, exit 2
    for args in (["host", "add", "h2", h2.URL], ["host", "add", "x", "ftp://nope"], ["host", "add", "Bad Name", h2.URL],
                 ["host", "add", "x", "tcp://127.0.0.1:1", "--tls-ca", str(tmp_path / "missing.pem")],
                 ["host", "rm", "local"], ["host", "rm", "nope"]):
        proc = cli(engine, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    # pinned service: rm refused; unpinned: removed
    src = make_service_dir(tmp_path / "src")
    engine.add_service("web", str(src), host="h2")
    proc = cli(engine, "host", "rm", "h2")
    assert proc.returncode == 2 and "pinned" in proc.stderr and "web" in proc.stderr, proc.stderr
    engine.add_service("web", str(src), replace=True)
    proc = cli(engine, "host", "add", "h3", h2.URL, "--default", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["default"] is True
    assert engine.hosts.default_name() == "h3"
    assert engine.create_deployment("web").host == "h3"   # a queued deployment on h3 now holds it
    proc = cli(engine, "host", "rm", "h3")
    assert proc.returncode == 2 and "active" in proc.stderr, proc.stderr
    Deployment.delete().where(Deployment.host == "h3").execute()
    proc = cli(engine, "host", "rm", "h3")
    assert proc.returncode == 0, proc.stderr
    assert engine.hosts.default_name() == "local"   # the default goes back to local
    proc = cli(engine, "host", "rm", "h2")
    assert proc.returncode == 0, proc.stderr
    assert engine.hosts.names() == ["local"] and Host.select().count() == 0   # local is this run's, not a row
    audit = [e.message for e in DeploymentEvent.select().where(DeploymentEvent.kind == "audit")]
    assert any("h3 added" in m for m in audit) and any("h2 removed" in m for m in audit)
    proc = cli(engine, "--read-only", "host", "add", "h4", h2.URL)
    assert proc.returncode != 0 and "read-only" in proc.stderr


def test_config_hosts_apply_to_their_runs_and_cannot_be_removed_from_the_cli(engine, h2, tmp_path):
    from console.engine.core import Engine
    from tests.conftest import make_settings
    (engine.settings.data_dir / "config.toml").write_text(
        f'[hosts.h2]\nurl = "{h2.URL}"\ndefault = true\n\n[hosts.far]\nurl = "tcp://127.0.0.1:9"\n')
    db = engine.settings.store.db
    settings = make_settings(engine.settings.data_dir, **({"db": db} if db else {}))
    other = Engine(settings)
    try:
        assert set(other.hosts.names()) == {"local", "h2", "far"}
        assert other.hosts.default_name() == "h2"
        assert {n: s.source for n, s in other.hosts.specs().items()} == {"local": "default", "h2": "config",
                                                                        "far": "config"}
        assert Host.get_or_none(Host.name == "far") is None   # the config is not copied into the store
        with pytest.raises(InputError, match="config"):
            H.remove_host(other, "far")
    finally:
        other.hosts.close()


def _blackholed_tcp():
    """A TCP port whose accept queue is full: new connects hang like a blackholed host's."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fill = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(c)
    time.sleep(0.2)
    return srv, fill, f"tcp://127.0.0.1:{port}"


def _silent_unix(tmp_path):
    """A unix socket that accepts connections and never answers: a wedged engine."""
    path = tmp_path / "silent.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(50)
    return srv, f"unix://{path}"


def test_dead_blackholed_and_silent_hosts_fail_fast_and_never_hold_up_the_others(engine, tmp_path):
    engine.settings.scheduler.host_timeout = 2.0
    engine.hosts.breaker_s = 2.0
    bh_srv, fill, bh_url = _blackholed_tcp()
    silent_srv, silent_url = _silent_unix(tmp_path)
    try:
        H.add_host(engine, "dead", f"unix://{tmp_path / 'nothing-here.sock'}", force=True)
        H.add_host(engine, "blackholed", bh_url, force=True)
        H.add_host(engine, "silent", silent_url, force=True)
        t0 = time.monotonic()
        rows = {r["name"]: r for r in engine.list_hosts()}
        took = time.monotonic() - t0
        assert took < 2.0 + 1.5, took   # all probed in parallel, bounded by host_timeout
        assert rows["local"]["reachable"] is True
        for name in ("dead", "blackholed", "silent"):
            assert rows[name]["reachable"] is False and rows[name]["last_error"], rows[name]
        # a Docker call to a dead or blackholed host gives up within host_timeout (connect), and for a few seconds
        # after that fails at once instead of every task waiting its own timeout
        for name, limit in (("dead", 1.0), ("blackholed", 2.0 + 1.0)):
            t0 = time.monotonic()
            with pytest.raises(EngineUnavailable):
                engine.hosts.gateway(name).list_managed(engine.store_id)
            assert time.monotonic() - t0 < limit, name
            t0 = time.monotonic()
            with pytest.raises(EngineUnavailable):
                engine.hosts.gateway(name).list_managed(engine.store_id)
            assert time.monotonic() - t0 < 0.5, name
        assert engine.hosts.gateway("local").ping()
        events = [e.message for e in DeploymentEvent.select().where(DeploymentEvent.kind == "host")]
        assert any("blackholed is unreachable" in m for m in events)
    finally:
        bh_srv.close()
        silent_srv.close()
        for c in fill:
            c.close()
