"""Notifications: the things an operator wants to hear about without watching the console, sent through apprise
(`[notify] urls`: Slack, Discord, Telegram, e-mail, ntfy, JSON webhooks, ... with no code of ours per service).

The engine's code paths call the small API below (`deployment_failed`, `cleanup_failed`, `host_changed`, ...); each
call only builds a message and puts it on a bounded queue of the process's `Notifier`: one daemon thread sends, so a
slow or dead receiver never delays a pipeline, a cleanup or a reconcile pass. A message about the same thing (same
event, same deployment or host) within `fold_seconds` of the last one sent is folded into it; the next one sent after
the window says how many were folded. A send that fails is recorded as an event of kind `notify` (the URL with its
secrets masked, and why). Without a running notifier (a CLI process, no urls) every call is a no-op.
"""
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass

from console.config import NOTIFY_EVENTS

log = logging.getLogger(__name__)
QUEUE_MAX = 1000
FOREGROUND_FLUSH_S = 10.0   # how long a foreground CLI action waits at most for its notifications to go out


@dataclass
class Message:
    event: str
    title: str
    body: str
    key: str
    deployment_id: str | None = None
    failure: bool = True


class Notifier:
    def __init__(self, store, settings, record_event=None):
        self.store = store
        self.urls = [u for u in settings.notify.urls if u]
        self.events = set(settings.notify.events) & set(NOTIFY_EVENTS)
        self.fold_s = float(settings.notify.fold_seconds)
        self.cleanup_failing_after = int(settings.notify.cleanup_failing_after)
        self._record = record_event or self._record_failed_send
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}     # (event, key) -> when its last message was queued
        self._folded: dict[tuple[str, str], int] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._targets: list = []

    @property
    def enabled(self) -> bool:
        return bool(self.urls and self.events)

    def start(self) -> "Notifier":
        if self.enabled:
            import apprise
            for url in self.urls:
                plugin = apprise.Apprise.instantiate(url)
                if plugin is None:
                    log.warning("notify: %s is not an apprise URL; nothing is sent to it", _mask(url))
                    continue
                self._targets.append(plugin)
            self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 0.0) -> None:
        """Stop once the send under way ends; what is still queued is dropped (daemon thread: never waited for
        longer than `timeout`)."""
        self._stopping.set()
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass
            self._thread.join(timeout)

    def drain(self, timeout: float) -> None:
        """Send what is queued, waiting at most `timeout`, then stop."""
        if self._thread is not None:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                pass
            self._thread.join(timeout)
        self._stopping.set()

    # ---- queueing (the caller's thread: no I/O)
    def send(self, message: Message) -> bool:
        """Queue a message unless its event is not chosen or it folds into a recent one. True when queued."""
        if self._thread is None or message.event not in self.events:
            return False
        ident = (message.event, message.key)
        t = time.monotonic()
        with self._lock:
            last = self._last.get(ident)
            if last is not None and t - last < self.fold_s:
                self._folded[ident] = self._folded.get(ident, 0) + 1
                return False
            folded = self._folded.pop(ident, 0)
            self._last[ident] = t
            if len(self._last) > QUEUE_MAX:  # forget what is past its window (a long-running engine)
                self._last = {k: v for k, v in self._last.items() if t - v < self.fold_s or k in self._folded}
        if folded:
            message.body += f"\n({folded} more like it in the last {self.fold_s:.0f} s were folded)"
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            log.warning("notify: queue full, %s about %s dropped", message.event, message.key)
            return False
        return True

    # ---- sending (the notifier's thread)
    def _run(self) -> None:
        while True:
            message = self._queue.get()
            if message is None or self._stopping.is_set():
                return
            for target in self._targets:
                if self._stopping.is_set():
                    return
                error = self._deliver(target, message)
                if error is not None:
                    where = _mask(target.url(privacy=True))
                    log.warning("notify: %s to %s failed: %s", message.event, where, error)
                    try:
                        self._record(message, where, error)
                    except Exception:  # noqa: BLE001 - a store that cannot take the event must not stop the sender
                        log.exception("notify: recording a failed send")

    @staticmethod
    def _deliver(target, message: Message) -> str | None:
        import apprise
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            try:
                ok = target.notify(body=message.body, title=message.title, notify_type=(
                    apprise.NotifyType.FAILURE if message.failure else apprise.NotifyType.INFO))
            except Exception as e:  # noqa: BLE001 - any plugin error is a failed send, recorded like the others
                ok, reason = False, str(e) or type(e).__name__
            else:
                lines = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
                reason = lines[-1] if lines else "the receiver did not accept it"
        return None if ok else reason[:300]

    def _record_failed_send(self, message: Message, where: str, error: str) -> None:
        from console.engine import deployments as D
        from storage.models import Deployment
        with self.store.write():
            known = message.deployment_id and Deployment.get_or_none(Deployment.id == message.deployment_id)
            D.event(message.deployment_id if known else None,
                    f"Notification '{message.event}' to {where} failed: {error}", kind="notify", level="warning")


def _mask(url: str) -> str:
    """Only scheme and host of a URL: the rest of an apprise URL is often a token."""
    scheme, sep, rest = str(url).partition("://")
    return f"{scheme}://{rest.split('/')[0].rpartition('@')[2]}/..." if sep else "(not a URL)"


# ---- the process's notifier and the API the engine's code paths call
_active: Notifier | None = None


def install(notifier: Notifier | None) -> None:
    global _active
    _active = notifier


def uninstall(notifier: Notifier) -> None:
    global _active
    if _active is notifier:
        _active = None


@contextlib.contextmanager
def foreground(store, settings, flush_s: float = FOREGROUND_FLUSH_S):
    """An operator action run in the foreground of a process that hosts no runtime (a CLI `deploy`, `resume`,
    `rollback`) sends its notifications too: before the action returns, waiting at most `flush_s` for them."""
    if _active is not None or not settings.notify.urls:
        yield
        return
    notifier = Notifier(store, settings).start()
    install(notifier)
    try:
        yield
    finally:
        uninstall(notifier)
        notifier.drain(flush_s)


def _send(message: Message) -> None:
    notifier = _active
    if notifier is not None:
        notifier.send(message)


def deployment_failed(deployment_id: str, service: str, host: str | None, error: str) -> None:
    _send(Message("deployment-failed", f"Deployment {deployment_id} of {service} failed",
                  f"Deployment {deployment_id} of service {service} on host {host or '-'} failed: {error}",
                  key=deployment_id, deployment_id=deployment_id))


def cleanup_failed(deployment_id: str, attempts: int, error: str) -> None:
    """A failed cleanup attempt: a message from the `cleanup_failing_after`th attempt on (then folded)."""
    notifier = _active
    if notifier is not None and attempts >= notifier.cleanup_failing_after:
        _send(Message("cleanup-failing", f"Cleanup of deployment {deployment_id} is failing",
                      f"Cleanup of deployment {deployment_id} failed {attempts} times; last error: {error}",
                      key=deployment_id, deployment_id=deployment_id))


def cleanup_abandoned(deployment_id: str, why: str) -> None:
    _send(Message("cleanup-abandoned", f"Cleanup of deployment {deployment_id} abandoned",
                  f"Cleanup of deployment {deployment_id} was abandoned: {why}; resources may be left behind",
                  key=deployment_id, deployment_id=deployment_id))


def host_changed(host: str, up: bool, error: str | None = None) -> None:
    if up:
        _send(Message("host-back", f"Docker host {host} is back", f"Docker host {host} is reachable again",
                      key=host, failure=False))
    else:
        _send(Message("host-down", f"Docker host {host} is down", f"Docker host {host} is unreachable: {error}",
                      key=host))


def drift(deployment_id: str, service: str, problem: str) -> None:
    _send(Message("drift", f"Deployment {deployment_id} of {service} degraded",
                  f"Drift: {problem}; deployment {deployment_id} of service {service} is marked degraded",
                  key=deployment_id, deployment_id=deployment_id))


def rollback_failed(service: str, target_id: str, error: str) -> None:
    _send(Message("rollback-failed", f"Rollback of {service} failed",
                  f"Rollback of service {service} to deployment {target_id} failed: {error}",
                  key=service, deployment_id=target_id))


def zombie(deployment_id: str, service: str, outcome: str, reason: str) -> None:
    """A deployment whose pipeline was gone: `outcome` is "resumed" or "failed"."""
    _send(Message(f"zombie-{outcome}", f"Deployment {deployment_id} of {service}: zombie {outcome}",
                  f"Deployment {deployment_id} of service {service} had lost its pipeline ({reason}); "
                  f"it was {outcome}", key=deployment_id, deployment_id=deployment_id, failure=outcome == "failed"))
