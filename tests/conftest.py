"""Shared fixtures: a real Docker engine, a real SQLite store in a temporary data dir, small busybox services.

Under CI=true a skipped test is turned into a failure: a suite that silently skips proves nothing."""
import os
import textwrap
import time
import uuid

import docker
import pytest

from console import config
from console.engine import labels as L
from storage.clock import freeze
from tests import pgstore

CI = os.environ.get("CI", "").lower() == "true"
# engines started by tests serve no metrics unless a test asks for them (on a free port): parallel tests must not
# race for the default 127.0.0.1:9464
os.environ.setdefault("DEPLOYER_METRICS_LISTEN", "")

HTTPD_DOCKERFILE = """\
FROM deployer/base:busybox
RUN mkdir -p /www && echo ok > /www/index.html
{extra}
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (a skip is a hidden failure): {report.longrepr}"


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as e:
        pytest.skip(f"no Docker engine: {e}") if not CI else pytest.fail(f"no Docker engine under CI: {e}")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client):
    from console.engine.docker_gateway import Gateway
    Gateway("local", docker_client).ensure_base_image()
    return "deployer/base:busybox"


def make_settings(data_dir, **overrides):
    defaults = dict(health_timeout=20.0, heartbeat_interval=0.5, cleanup_interval=0.5, dispatch_interval=0.5,
                    reconcile_interval=2.0, cleanup_backoff_max=2.0, lease_duration=6.0, lease_renew_deadline=4.0,
                    lease_retry=0.5, routes_drain_seconds=0.2)
    defaults.update(overrides)
    if pgstore.enabled() and "db" not in defaults:  # make test-pg: each store is a fresh PostgreSQL database
        defaults["db"] = pgstore.database_for(str(data_dir))
    return config.load(data_dir=str(data_dir), **defaults)


def purge_store_resources(client, store_id):
    """Remove what a test's store created (only resources carrying that store's label)."""
    flt = {"label": [f"{L.STORE}={store_id}"]}
    for c in client.api.containers(all=True, filters=flt):
        try:
            client.api.remove_container(c["Id"], force=True, v=True)
        except docker.errors.APIError:
            pass
    for v in (client.api.volumes(filters=flt) or {}).get("Volumes") or []:
        try:
            client.api.remove_volume(v["Name"], force=True)
        except docker.errors.APIError:
            pass
    for img in client.api.images(filters=flt):
        try:
            client.api.remove_image(img["Id"], force=True)
        except docker.errors.APIError:
            pass


@pytest.fixture(autouse=True)
def _pg_databases():
    """With DEPLOYER_TEST_DB set, the PostgreSQL databases a test created are dropped when it ends."""
    yield
    if pgstore.enabled():
        pgstore.drop_all()


def pytest_collection_modifyitems(config, items):
    """`postgres_only` tests need DEPLOYER_TEST_DB (make test-pg); without it they are deselected, as `make test-pg`
    deselects `sqlite_only` ones."""
    if pgstore.enabled():
        return
    dropped = [i for i in items if i.get_closest_marker("postgres_only")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if not i.get_closest_marker("postgres_only")]


@pytest.fixture
def settings(tmp_path, monkeypatch):
    s = make_settings(tmp_path / "data")
    if s.store.db:  # subprocesses (deployer-console deploy/engine) inherit the store: DEPLOYER_DB
        monkeypatch.setenv("DEPLOYER_DB", s.store.db)
    return s


@pytest.fixture
def engine(settings, docker_client, base_image):
    from console.engine.core import Engine
    eng = Engine(settings)
    yield eng
    eng.close()
    freeze(None)
    purge_store_resources(docker_client, eng.store_id)


@pytest.fixture
def caddy(tmp_path):
    """A real Caddy of the test's own (tests/caddy.py)."""
    from tests.caddy import Caddy
    proxy = Caddy(tmp_path / "caddy").start()
    yield proxy
    proxy.stop()


@pytest.fixture
def routed(tmp_path, caddy, docker_client, base_image):
    """An engine routing through the test's Caddy."""
    from console.engine.core import Engine
    eng = Engine(make_settings(tmp_path / "data", **caddy.settings()))
    yield eng
    eng.close()
    purge_store_resources(docker_client, eng.store_id)


@pytest.fixture
def service_dir(tmp_path):
    return make_service_dir(tmp_path / "src")


@pytest.fixture
def running_web(engine, service_dir):
    """A successful deployment of service `web` (busybox httpd) with its container running."""
    engine.add_service("web", str(service_dir))
    dep = engine.deploy("web")
    assert dep.status == "success", dep.error
    return dep


def make_service_dir(path, extra: str = "", dockerfile: str | None = None):
    path.mkdir(parents=True, exist_ok=True)
    # a slow step must really be slow: a unique token keeps the engine's layer cache (filled by an earlier test
    # that let the same step finish) from skipping it
    extra = textwrap.dedent(extra).replace("RUN sleep", f"RUN echo {uuid.uuid4().hex} >/dev/null && sleep")
    (path / "Dockerfile").write_text(dockerfile or HTTPD_DOCKERFILE.format(extra=extra))
    return path


def wait_for(predicate, timeout=30.0, interval=0.2, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session")
def h2_session():
    """The second engine (tests/dockerd.py), started once per session; stopped at the end."""
    from tests import dockerd
    try:
        dockerd.start()
        dockerd.ensure_base_image()
    except Exception as e:
        pytest.skip(f"no second engine: {e}") if not CI else pytest.fail(f"second engine did not start: {e}")
    yield dockerd
    dockerd.stop()


@pytest.fixture
def h2(h2_session, engine):
    """Host `h2` added to the test's engine; the second engine is (re)started if a test stopped it."""
    h2_session.start()
    engine.hosts.add("h2", h2_session.URL)
    yield h2_session
    h2_session.start()
    client = docker.DockerClient(base_url=h2_session.URL, timeout=60)
    purge_store_resources(client, engine.store_id)
    client.close()
