"""Docker's event stream of this store's containers, one per host: a face that shows containers learns at once that
one of ours started, stopped, died or went (`ContainerWatch.mark()` moves), instead of at its next periodic read.

Headless: a thread per watched host reads `/events` filtered to this store's label (type container) through the
host's Gateway. The stream is only an accelerator: the console still asks Docker every few seconds, so an event lost
while a stream is being opened again (an engine restart, a host down) only waits for that read. Nothing is sent while
nothing happens; a read waits at most READ_S, then the stream is opened again. close() shuts the streams down, which
wakes their threads at once; each closes its own stream (closing one from another thread would wait on its read).
"""
import logging
import threading
import time

log = logging.getLogger(__name__)

READ_S = 15.0      # an idle stream is opened again after this long
RETRY_S = 5.0      # a host whose stream failed is tried again after this
# what changes a container's row (its state, health, name or existence); exec_* (every health check runs one),
# attach, resize, top, archive and commit do not
MOVES = ("create", "start", "restart", "stop", "die", "kill", "destroy", "pause", "unpause", "oom", "rename",
         "update", "health_status")


class ContainerWatch:
    """`watch(hosts)` keeps one stream per named host (and ends those of hosts no longer named); `mark()` is a number
    that moves with every event that changes a container of ours. Thread-safe."""

    def __init__(self, gateway_for, store_id: str, read_s: float = READ_S, retry_s: float = RETRY_S):
        self.gateway_for = gateway_for
        self.store_id = store_id
        self.read_s = read_s
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self._count = 0
        self._stops: dict[str, threading.Event] = {}
        self._streams: dict[str, object] = {}
        self.errors: dict[str, str] = {}     # host -> why its stream is not open (for a face to say, if it wants)

    def watch(self, hosts) -> None:
        hosts = set(hosts)
        with self._lock:
            for host in set(self._stops) - hosts:
                self._stops.pop(host).set()
            for host in hosts - set(self._stops):
                stop = self._stops[host] = threading.Event()
                threading.Thread(target=self._run, args=(host, stop), name=f"events-{host}", daemon=True).start()

    def mark(self) -> int:
        with self._lock:
            return self._count

    def close(self) -> None:
        """Stop every stream: each is shut down (a blocked read wakes up) and its own thread closes it."""
        with self._lock:
            stops, self._stops = list(self._stops.values()), {}
            streams = list(self._streams.values())
        for stop in stops:
            stop.set()
        for stream in streams:
            stream.shutdown()

    def _run(self, host: str, stop: threading.Event) -> None:
        while not stop.is_set():
            opened = time.monotonic()
            stream = None
            try:
                stream = self.gateway_for(host).container_events(self.store_id, self.read_s)
                with self._lock:
                    self._streams[host] = stream
                    self.errors.pop(host, None)
                for event in stream:
                    if stop.is_set():
                        break
                    if str(event.get("Action") or event.get("status") or "").split(":")[0] in MOVES:
                        with self._lock:
                            self._count += 1
                if time.monotonic() - opened < 1.0:   # the engine ended it at once: not a loop of reconnects
                    stop.wait(self.retry_s)
            except Exception as e:  # noqa: BLE001 - an idle stream's read timeout, or a host that went away
                idle = time.monotonic() - opened >= self.read_s * 0.9
                if not idle:
                    with self._lock:
                        self.errors[host] = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                    log.debug("events of %s: %s", host, e)
                    stop.wait(self.retry_s)
            finally:
                with self._lock:
                    if self._streams.get(host) is stream:
                        self._streams.pop(host, None)
                if stream is not None:
                    try:
                        stream.close()
                    except Exception:  # noqa: BLE001
                        pass
