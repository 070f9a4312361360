"""Notifications through apprise: a local HTTP receiver stands in for Slack, a webhook, ntfy..."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from console import config
from console.engine import notify
from storage.models import Deployment, DeploymentEvent
from tests.conftest import make_service_dir, make_settings, purge_store_resources, wait_for
from tests.servers import free_port


class Receiver:
    """A webhook receiver on a loopback port: every POST body is kept; `delay` holds each answer that long."""

    def __init__(self, delay: float = 0.0):
        self.messages: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)
                receiver.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"json://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def notifying_engine(tmp_path, docker_client, base_image):
    """An engine whose settings the test chooses (`start(**settings)`), with its runtime started."""
    from console.engine.core import Engine
    made = []

    def start(**overrides):
        eng = Engine(make_settings(tmp_path / "data", **overrides))
        made.append(eng)
        eng.start_runtime()
        return eng
    yield start
    for eng in made:
        eng.close()
        purge_store_resources(docker_client, eng.store_id)


def test_a_failed_deployment_sends_one_json_message_naming_service_id_and_error(notifying_engine, receiver,
                                                                                 tmp_path):
    engine = notifying_engine(notify_urls=[receiver.url], notify_events=["deployment-failed"])
    engine.add_service("broken", str(make_service_dir(tmp_path / "broken", extra="RUN false")), port=8080)
    dep = engine.deploy("broken", detach=True)
    wait_for(lambda: Deployment.get_by_id(dep.id).status == "failed", timeout=120, what="the deployment to fail")
    wait_for(lambda: receiver.messages, timeout=15, what="a message at the receiver")
    time.sleep(1.5)  # room for a duplicate to show up
    assert len(receiver.messages) == 1
    message = receiver.messages[0]
    error = Deployment.get_by_id(dep.id).error
    assert error and "BUILDING" in error
    text = message["title"] + "\n" + message["message"]
    assert "broken" in text and dep.id in text and error in message["message"]
    assert message["type"] == "failure"


def test_a_foreground_cli_deploy_that_fails_is_notified_before_the_command_exits(engine, receiver, tmp_path):
    from tests.cli import run_cli
    from tests.reliability import fast_env
    engine.add_service("broken", str(make_service_dir(tmp_path / "broken", extra="RUN false")), port=8080)
    proc = run_cli(["deploy", "broken"], fast_env(engine.settings, notify_urls=receiver.url,
                                                 notify_events="deployment-failed,host-down"))
    assert proc.returncode == 1, proc.stderr
    dep = Deployment.get(Deployment.status == "failed")
    assert len(receiver.messages) == 1  # sent before `deploy` returned
    assert dep.id in receiver.messages[0]["message"] and dep.error in receiver.messages[0]["message"]


def test_a_slow_or_dead_receiver_never_delays_the_engine_and_a_failed_send_is_an_event(engine):
    slow = Receiver(delay=3.0)  # slow, but inside apprise's read timeout: it does take the messages
    dead_port = free_port()
    dead = f"json://127.0.0.1:{dead_port}/"
    engine.settings.notify.urls = [slow.url, dead]
    notifier = notify.Notifier(engine.store, engine.settings).start()
    notify.install(notifier)
    try:
        t0 = time.monotonic()
        for i in range(20):
            notify.deployment_failed(f"dep{i:08d}", "web", "local", "HEALTH_CHECK: timed out")
        assert time.monotonic() - t0 < 0.2, "queueing a message waited for a receiver"
        event = wait_for(lambda: DeploymentEvent.select().where(
            (DeploymentEvent.kind == "notify") & DeploymentEvent.message.contains(f"127.0.0.1:{dead_port}")).first(),
            timeout=30, what="the failed send recorded as an event")
        assert slow.messages and not DeploymentEvent.select().where(
            DeploymentEvent.message.contains(slow.url.split("//")[1].rstrip("/"))).exists()
        assert "deployment-failed" in event.message and event.level == "warning"
        assert event.deployment_id is None  # the made-up ids above are no rows: the event stands alone
    finally:
        notify.uninstall(notifier)
        notifier.stop()
        slow.close()


def test_duplicates_within_the_window_are_folded(engine, receiver):
    engine.settings.notify.urls = [receiver.url]
    engine.settings.notify.fold_seconds = 1.0
    notifier = notify.Notifier(engine.store, engine.settings).start()
    notify.install(notifier)
    try:
        for _ in range(5):
            notify.host_changed("h2", up=False, error="connection refused")
        notify.host_changed("h2", up=True)             # another event: not folded into "down"
        notify.host_changed("h3", up=False, error="timeout")
        wait_for(lambda: len(receiver.messages) >= 3, timeout=15, what="three messages")
        time.sleep(0.5)
        assert len(receiver.messages) == 3
        time.sleep(1.0)                                # the window has passed: the next one goes out, with a count
        notify.host_changed("h2", up=False, error="connection refused")
        wait_for(lambda: len(receiver.messages) == 4, timeout=15, what="the message after the window")
        assert "4 more like it" in receiver.messages[3]["message"]
    finally:
        notify.uninstall(notifier)
        notifier.stop()


def test_events_not_chosen_are_not_sent_and_cleanup_failing_waits_for_n_attempts(engine, receiver):
    engine.settings.notify.urls = [receiver.url]
    engine.settings.notify.events = ["cleanup-failing"]
    engine.settings.notify.cleanup_failing_after = 3
    notifier = notify.Notifier(engine.store, engine.settings).start()
    notify.install(notifier)
    try:
        notify.deployment_failed("abcdef123456", "web", "local", "boom")
        notify.cleanup_failed("abcdef123456", 2, "engine unreachable")
        notify.cleanup_failed("abcdef123456", 3, "engine unreachable")
        wait_for(lambda: receiver.messages, timeout=15, what="the cleanup-failing message")
        time.sleep(0.5)
        assert len(receiver.messages) == 1 and "failed 3 times" in receiver.messages[0]["message"]
    finally:
        notify.uninstall(notifier)
        notifier.stop()


def test_notify_settings_come_from_the_config_file_and_unknown_events_are_refused(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text('[notify]\nurls = ["json://127.0.0.1:9/", "ntfy://topic"]\n'
                                          'events = ["deployment-failed", "host-down"]\nfold_seconds = 60\n')
    s = config.load(data_dir=str(tmp_path))
    assert s.notify.urls == ["json://127.0.0.1:9/", "ntfy://topic"]
    assert s.notify.events == ["deployment-failed", "host-down"] and s.notify.fold_seconds == 60
    monkeypatch.setenv("DEPLOYER_NOTIFY_EVENTS", "deployment-failed,deployment-exploded")
    with pytest.raises(config.ConfigError, match="deployment-exploded"):
        config.load(data_dir=str(tmp_path))
