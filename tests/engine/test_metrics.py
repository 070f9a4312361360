"""Metrics: a real `deployer-console engine` serves Prometheus text format; a real Prometheus scrapes it and its query
API returns what the store holds."""
import socket
import threading
import urllib.request

import pytest
from peewee import fn

from console import config
from storage.models import CleanupTask, Deployment, Service
from tests.conftest import make_service_dir, make_settings, wait_for
from tests.prometheus import Prometheus
from tests.reliability import fast_env, spawn, stop_all
from tests.servers import free_port


def store_deployments() -> dict[tuple, float]:
    rows = (Deployment.select(Deployment.status, Service.name, Deployment.host, fn.COUNT(Deployment.id))
            .join(Service).group_by(Deployment.status, Service.name, Deployment.host).tuples())
    return {(("host", host), ("service", service), ("status", status)): float(n) for status, service, host, n in rows}


@pytest.fixture
def prometheus_for(tmp_path):
    started = []

    def start(target: str) -> Prometheus:
        prom = Prometheus(tmp_path / "prometheus", target).start()
        started.append(prom)
        return prom
    yield start
    for prom in started:
        prom.stop()


def test_a_real_prometheus_scrapes_the_engine_and_its_values_match_the_store(engine, tmp_path, prometheus_for):
    engine.add_service("web", str(make_service_dir(tmp_path / "web")), port=8080)
    engine.add_service("broken", str(make_service_dir(tmp_path / "broken", extra="RUN false")), port=8080)
    port = free_port()
    proc = spawn(["engine"], fast_env(engine.settings, metrics_listen=f"127.0.0.1:{port}"), tmp_path / "engine.log")
    try:
        prom = prometheus_for(f"127.0.0.1:{port}")
        good = engine.deploy("web", detach=True)
        bad = engine.deploy("broken", detach=True)
        wait_for(lambda: Deployment.get_by_id(good.id).status == "success" and
                 Deployment.get_by_id(bad.id).status == "failed", timeout=120, what="both deployments to end")
        wait_for(lambda: CleanupTask.get(CleanupTask.deployment == bad.id).state == "done", timeout=60,
                 what="the failed deployment's cleanup")
        wait_for(prom.targets_up, timeout=30, what="prometheus to scrape the engine")

        # the store's answer, and Prometheus's once it has scraped since the last change
        expected = store_deployments()
        assert expected[(("host", "local"), ("service", "web"), ("status", "success"))] == 1
        wait_for(lambda: prom.query("deployer_deployments") == expected, timeout=30,
                 what=f"deployer_deployments to equal the store's {expected}")
        # `local` is this run's host (not a store row since hosts of a run stay in that run): probe it here too
        host_up = {(("host", name),): 0.0 if error else 1.0 for name, error in engine.hosts.probe().items()}
        assert host_up == {(("host", "local"),): 1.0}
        wait_for(lambda: prom.query("deployer_host_up") == host_up, timeout=30, what="deployer_host_up")

        # the engine's own view: it holds the lease, ran the phases, cleaned the failed deployment, reconciled
        assert prom.query("deployer_leader") == {(): 1.0}
        wait_for(lambda: prom.query("deployer_cleanups_total{outcome='done'}") == {(("outcome", "done"),): 1.0},
                 timeout=30, what="deployer_cleanups_total{outcome=done}")
        phases = prom.query("deployer_phase_duration_seconds_count")
        assert phases[(("phase", "HEALTH_CHECK"),)] == 1.0 and phases[(("phase", "BUILDING"),)] == 2.0
        assert prom.query("deployer_cleanup_queue_depth") == {(): 0.0}
        assert prom.query("deployer_cleanup_oldest_due_seconds") == {(): 0.0}
        assert prom.query("deployer_reconcile_duration_seconds_count")[()] >= 1
        assert set(prom.query("deployer_reconcile_findings_total")) == {
            (("kind", k),) for k in ("zombie", "orphan", "drift")}
        assert proc.poll() is None
    finally:
        stop_all([proc])


def test_listen_empty_serves_nothing(tmp_path, docker_client, base_image):
    from console.engine.core import Engine
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text('[metrics]\nlisten = ""\n')
    eng = Engine(make_settings(data))
    try:
        assert eng.settings.metrics.listen == ""
        runtime = eng.start_runtime()
        assert runtime.metrics.address is None
        assert not [t for t in threading.enumerate() if "serve_forever" in t.name]
    finally:
        eng.close()


def test_a_metrics_port_in_use_is_one_warning_and_the_engine_runs_on(engine, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = spawn(["engine"], fast_env(engine.settings, metrics_listen=f"127.0.0.1:{port}"),
                     tmp_path / "engine.log")
        try:
            log_file = engine.settings.data_dir / "deployer.log"
            wait_for(lambda: log_file.exists() and "lease taken by" in log_file.read_text(), timeout=30,
                     what="the engine to take the lease")
            engine.add_service("web", str(make_service_dir(tmp_path / "web")), port=8080)
            dep = engine.deploy("web", detach=True)
            wait_for(lambda: Deployment.get_by_id(dep.id).status == "success", timeout=120,
                     what="the engine to run a deployment")
            assert proc.poll() is None
            warnings = [line for line in log_file.read_text().splitlines() if "metrics not served" in line]
            assert len(warnings) == 1 and "WARNING" in warnings[0] and f"127.0.0.1:{port}" in warnings[0]
        finally:
            stop_all([proc])


def test_the_engine_serves_prometheus_text_on_its_listen_address(engine):
    port = free_port()
    engine.settings.metrics.listen = f"127.0.0.1:{port}"
    runtime = engine.start_runtime()
    wait_for(lambda: runtime.is_leader, timeout=10, what="the lease")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    for series in ("deployer_leader 1.0", "deployer_cleanup_queue_depth 0.0", 'deployer_cleanups_total{outcome="kept"}',
                   "# TYPE deployer_phase_duration_seconds histogram", "deployer_cleanup_oldest_due_seconds"):
        assert series in text
    engine.runtime.stop()
    engine.runtime = None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


@pytest.mark.parametrize("listen", ["9464", "localhost", ":9464", "host:0", "host:70000", "host:port"])
def test_a_listen_address_that_is_not_host_port_is_refused(tmp_path, listen):
    with pytest.raises(config.ConfigError, match="HOST:PORT"):
        config.load(data_dir=str(tmp_path), metrics_listen=listen)


def test_a_second_console_on_the_port_names_the_first_in_one_info_line_and_runs_on(engine, tmp_path):
    # two consoles on one machine both listen on the default port: the second used to warn at every start; it now
    # says once, at info, which process serves them (the first answers with its pid), and runs on as a follower
    port = free_port()
    env = fast_env(engine.settings, metrics_listen=f"127.0.0.1:{port}")
    first = spawn(["engine"], env, tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: "metrics served on" in (tmp_path / "first.log").read_text(), timeout=30,
                 what="the first engine to serve metrics")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert f'deployer_process_info{{pid="{first.pid}"}} 1.0' in r.read().decode()
        second = spawn(["engine"], env, tmp_path / "second.log")
        wait_for(lambda: "started (store" in (tmp_path / "second.log").read_text(), timeout=30,
                 what="the second engine to start")
        said = [line for line in (tmp_path / "second.log").read_text().splitlines() if "metrics" in line]
        assert len(said) == 1 and said[0].startswith("INFO ") and f"pid {first.pid}" in said[0], said
        assert f"127.0.0.1:{port}" in said[0] and "another deployer-console" in said[0]
        assert second.poll() is None and first.poll() is None
    finally:
        stop_all([p for p in (first, second) if p is not None])
