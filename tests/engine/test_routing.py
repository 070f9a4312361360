"""Zero-downtime routing through a real Caddy to real containers: the route moves only to a container that answers,
a failing deploy never answers, rollback and a Caddy restart (repaired by reconcile) too. And the traefik-file
provider writes valid dynamic configuration, only once the container answers."""
import threading
import time
import urllib.request

import pytest
import yaml

from console import config
from console.engine import doctor
from storage.models import Deployment, DeploymentEvent
from tests.caddy import RequestLoop
from tests.conftest import make_service_dir, make_settings, wait_for

HOST = "web.test"


def versioned(path, version: str, slow_start: float = 0.0, broken: bool = False):
    """A service answering its version on /; `slow_start` seconds before it listens; `broken` never listens."""
    cmd = '["sleep", "3600"]' if broken else \
        f'["sh", "-c", "sleep {slow_start}; exec httpd -f -p 8080 -h /www"]'
    return make_service_dir(path, dockerfile=f"FROM deployer/base:busybox\n"
                                             f"RUN mkdir -p /www && echo {version} > /www/index.html\n"
                                             f"CMD {cmd}\n")


def deploy_version(engine, src, version: str, **kw):
    versioned(src, version, **kw)
    return engine.deploy("web")


def test_v2_answers_after_success_and_no_request_fails_during_the_switch(routed, caddy, tmp_path):
    src = tmp_path / "src"
    versioned(src, "v1")
    routed.add_service("web", str(src), route_host=HOST)
    assert routed.deploy("web").status == "success"
    assert caddy.get("/", HOST) == (200, "v1")
    with RequestLoop(caddy, HOST) as loop:
        v2 = deploy_version(routed, src, "v2", slow_start=1.5)  # not listening for 1.5 s after it starts
    assert v2.status == "success"
    assert loop.failed() == [] and len(loop.resets()) <= 1  # one route switch: one Caddy config change
    bodies = [b for b in loop.bodies() if b in ("v1", "v2")]
    assert set(bodies) <= {"v1", "v2"} and bodies[-1] == "v2"
    assert "v1" not in bodies[bodies.index("v2"):]  # one switch, never back
    assert caddy.get("/", HOST) == (200, "v2")


def test_a_failing_deploy_never_answers_from_the_failing_container(routed, caddy, tmp_path):
    src = tmp_path / "src"
    versioned(src, "v1")
    routed.add_service("web", str(src), route_host=HOST)
    v1 = routed.deploy("web")
    routed.settings.pipeline.health_timeout = 3
    with RequestLoop(caddy, HOST) as loop:
        bad = deploy_version(routed, src, "v2", broken=True)
    assert bad.status == "failed" and "UPDATING_ROUTES" in bad.error
    assert loop.failed() == [] and loop.resets() == []  # the route never moved
    assert set(loop.bodies()) == {"v1"}
    assert routed.router.routed(["web"]) == {"web": v1.id}


def test_a_failing_check_through_the_proxy_restores_the_previous_route(routed, caddy, tmp_path, monkeypatch):
    """The container answers directly, but not through the proxy (its route host is taken by a route ahead of
    ours): HEALTH_CHECK fails, and the previous route is back before the status is `failed`."""
    src = tmp_path / "src"
    versioned(src, "v1")
    routed.add_service("web", str(src), route_host=HOST)
    v1 = routed.deploy("web")
    routed.settings.pipeline.health_timeout = 2
    real = routed.router.proxy_check
    monkeypatch.setattr(routed.router, "proxy_check", lambda route, path: (False, "blocked by the test")
                        if route.deployment_id != v1.id else real(route, path))
    v2 = deploy_version(routed, src, "v2")
    assert v2.status == "failed" and "HEALTH_CHECK" in v2.error
    assert routed.router.routed(["web"]) == {"web": v1.id}
    assert caddy.get("/", HOST) == (200, "v1")


def test_rollback_answers_v1_again(routed, caddy, tmp_path):
    src = tmp_path / "src"
    versioned(src, "v1")
    routed.add_service("web", str(src), route_host=HOST)
    v1 = routed.deploy("web")
    assert v1.status == "success", v1.error
    deploy_version(routed, src, "v2")
    assert caddy.get("/", HOST) == (200, "v2")
    with RequestLoop(caddy, HOST) as loop:
        routed.rollback("web")
    assert loop.failed() == [] and len(loop.resets()) <= 1
    assert caddy.get("/", HOST) == (200, "v1")
    assert Deployment.get_by_id(v1.id).status == "success"


def test_a_caddy_restart_is_repaired_by_the_next_reconcile_pass(routed, caddy, tmp_path):
    src = tmp_path / "src"
    versioned(src, "v1")
    routed.add_service("web", str(src), route_host=HOST)
    v1 = routed.deploy("web")
    caddy.restart()
    assert caddy.get("/", HOST)[0] is None  # a fresh Caddy has no `deployer` server
    plan = routed.reconcile()
    assert [(d["deployment_id"], d["action"]) for d in plan["drift"]] == [(v1.id, "mark degraded, re-apply route")]
    assert "caddy route of web is missing" in plan["drift"][0]["problem"]
    assert caddy.get("/", HOST) == (200, "v1")
    routed.reconcile()
    assert Deployment.get_by_id(v1.id).status == "success"


def test_traefik_file_route_is_valid_dynamic_configuration_written_only_after_the_container_answers(
        engine, tmp_path):
    src = versioned(tmp_path / "src", "v1", slow_start=2)
    engine.add_service("web", str(src))
    route = engine.paths.route("web")
    seen = {}

    def watch():  # the first moment the route file exists, does the container it names answer?
        while "status" not in seen:
            if route.exists():
                url = yaml.safe_load(route.read_text())["http"]["services"]["web"]["loadBalancer"]["servers"][0]
                with urllib.request.urlopen(url["url"] + "/", timeout=3) as r:
                    seen["answered"] = r.status
                return
            time.sleep(0.02)
    watcher = threading.Thread(target=watch)
    watcher.start()
    seen["status"] = engine.deploy("web").status
    watcher.join(10)
    assert seen == {"status": "success", "answered": 200}
    config = yaml.safe_load(route.read_text())
    routers, services = config["http"]["routers"], config["http"]["services"]
    for name, router in routers.items():
        assert set(router) >= {"rule", "service"} and router["service"] in services
        assert router["rule"] == "PathPrefix(`/web`)"
    for service in services.values():
        servers = service["loadBalancer"]["servers"]
        assert servers and all(s["url"].startswith("http://127.0.0.1:") for s in servers)
    wait_for(lambda: engine.router.routed(["web"])["web"] == Deployment.select().first().id, timeout=2)


def test_routes_settings_come_from_the_config_file_and_bad_values_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("DEPLOYER_CONFIG", raising=False)
    (tmp_path / "config.toml").write_text('[routes]\nprovider = "caddy"\ncaddy_admin = "http://127.0.0.1:2020"\n'
                                          'listen = "127.0.0.1:8081"\ndrain_seconds = 0.5\n')
    s = config.load(data_dir=str(tmp_path))
    assert (s.routes.provider, s.routes.caddy_admin, s.routes.listen, s.routes.drain_seconds) == \
        ("caddy", "http://127.0.0.1:2020", "127.0.0.1:8081", 0.5)
    defaults = config.load(data_dir=str(tmp_path / "none"))
    assert (defaults.routes.provider, defaults.routes.caddy_admin, defaults.routes.listen,
            defaults.routes.drain_seconds) == ("traefik-file", "http://127.0.0.1:2019", ":80", 5.0)
    for bad, named in (('provider = "nginx"', "provider"), ('caddy_admin = "127.0.0.1:2019"', "caddy_admin"),
                       ('listen = "eighty"', "listen"), ("drain_seconds = -1", "drain_seconds"),
                       ("drain_seconds = nan", "drain_seconds")):
        (tmp_path / "config.toml").write_text(f"[routes]\n{bad}\n")
        with pytest.raises(config.ConfigError, match=named):
            config.load(data_dir=str(tmp_path))


def test_cancel_during_health_check_moves_the_route_back_without_a_failed_request(routed, caddy, tmp_path,
                                                                                   monkeypatch):
    src = tmp_path / "src"
    versioned(src, "v1")
    routed.add_service("web", str(src), route_host=HOST)
    v1 = routed.deploy("web")
    versioned(src, "v2")
    monkeypatch.setenv("DEPLOYER_FAULT_PAUSE", "HEALTH_CHECK:30")
    dep = routed.create_deployment("web")
    worker = threading.Thread(target=routed.pipeline.run, args=(dep.id,))
    with RequestLoop(caddy, HOST) as loop:
        worker.start()
        wait_for(lambda: Deployment.get_by_id(dep.id).phase == "HEALTH_CHECK", timeout=30, what="HEALTH_CHECK")
        wait_for(lambda: caddy.get("/", HOST) == (200, "v2"), timeout=5, what="the route to move to v2")
        routed.cancel(dep.id)
        worker.join(10)
    assert not worker.is_alive() and Deployment.get_by_id(dep.id).status == "cancelled"
    assert loop.failed() == [] and len(loop.resets()) <= 2  # two route switches
    events = [e.message for e in DeploymentEvent.select().where(DeploymentEvent.deployment == dep.id)]
    assert routed.router.routed(["web"]) == {"web": v1.id}, (events, caddy.get("/", HOST))
    assert caddy.get("/", HOST) == (200, "v1")


def test_doctor_says_whether_caddy_answers(tmp_path, caddy):
    settings = make_settings(tmp_path / "data", **caddy.settings())
    assert doctor._router(settings)["level"] == "OK"
    caddy.stop()
    down = doctor._router(settings)
    assert down["level"] == "FAIL" and caddy.admin in down["detail"] and "scripts/caddy" in down["fix"]
