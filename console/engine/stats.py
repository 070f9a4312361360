"""Live CPU and memory of our running containers, from each engine's stats stream. Headless: the console says which
containers it shows (`StatsHub.watch`), the hub keeps one thread and one stream per container, and the console reads
the last minute of samples (`StatsHub.series`). A container that leaves the watched set has its stream closed by its
own thread at the next sample (about a second: the engine sends one a second), so nothing is read that nobody shows.

Only our containers are streamed: each stream starts from a handle `Gateway.list_managed` vouched for (this store's
labels), looked up on the container's host, never from an id alone.
"""
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

HISTORY = 60          # samples kept per container: one a second, one minute
RETRY_AFTER_S = 10.0  # a stream that ended (container stopped, engine hiccup) is tried again after this, if watched
JOIN_S = 3.0          # how long close() waits for the streams' threads (each ends at its next sample)


def cpu_percent(sample: dict) -> float:
    """CPU % the way `docker stats` computes it (calculateCPUPercentUnix): the container's CPU time over the host's
    between this sample and the previous one the engine put beside it (precpu_stats), times the online CPUs."""
    cpu, pre = sample.get("cpu_stats") or {}, sample.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or ()) or 1
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def memory_used(sample: dict) -> tuple[int, int]:
    """(bytes used, limit) the way `docker stats` shows them: usage minus the inactive page cache (cgroup v2
    `inactive_file`, v1 `total_inactive_file`)."""
    mem = sample.get("memory_stats") or {}
    usage, stats = mem.get("usage") or 0, mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in stats and stats[key] < usage:
            usage -= stats[key]
            break
    return int(usage), int(mem.get("limit") or 0)


@dataclass
class Series:
    """The last HISTORY samples of one container (oldest first) and what its stream said last."""
    cpu: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    mem: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    limit: int = 0
    error: str | None = None

    def add(self, sample: dict) -> None:
        used, limit = memory_used(sample)
        self.cpu.append(round(cpu_percent(sample), 2))
        self.mem.append(used)
        self.limit = limit

    def copy(self) -> "Series":
        return Series(deque(self.cpu, maxlen=HISTORY), deque(self.mem, maxlen=HISTORY), self.limit, self.error)


class _Stream:
    def __init__(self, key: tuple[str, str]):
        self.key = key
        self.stop = threading.Event()
        self.series = Series()
        self.thread: threading.Thread | None = None
        self.ended_at: float | None = None


class StatsHub:
    """One stream per watched container. `gateway_for(host)` gives that host's Gateway; `store_id` says what is ours.
    Thread-safe: the console calls watch/series from its UI thread, the streams write from theirs."""

    def __init__(self, gateway_for, store_id: str, history: int = HISTORY):
        self.gateway_for = gateway_for
        self.store_id = store_id
        self.history = history
        self._lock = threading.Lock()
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._running: set[_Stream] = set()   # streams whose thread has not ended yet
        self.started = 0       # streams opened so far (tests and the bench read these)
        self.closed = 0

    def watch(self, targets) -> None:
        """Stream exactly these (host, container id) pairs: start the new ones, stop those no longer wanted. Never
        blocks on Docker (streams start and stop in their own threads)."""
        wanted = set(targets)
        t = time.monotonic()
        with self._lock:
            for key, stream in list(self._streams.items()):
                if key not in wanted:
                    stream.stop.set()
                    del self._streams[key]
            for key in wanted:
                stream = self._streams.get(key)
                if stream is not None and (stream.ended_at is None or t - stream.ended_at < RETRY_AFTER_S):
                    continue
                stream = self._streams[key] = _Stream(key)
                self._running.add(stream)
                stream.thread = threading.Thread(target=self._run, args=(stream,), daemon=True,
                                                 name=f"stats-{key[0]}-{key[1][:12]}")
                stream.thread.start()

    def series(self, keys=None) -> dict[tuple[str, str], Series]:
        """A copy of each watched container's last minute (all watched ones when keys is None)."""
        with self._lock:
            items = [(k, s) for k, s in self._streams.items() if keys is None or k in keys]
            return {k: s.series.copy() for k, s in items}

    def live(self) -> set[tuple[str, str]]:
        """The containers whose stream thread is still running, watched or not (one no longer watched ends at its
        next sample)."""
        with self._lock:
            return {s.key for s in self._running}

    def close(self, timeout: float = JOIN_S) -> None:
        with self._lock:
            streams = list(self._streams.values()) + list(self._running)
            self._streams.clear()
        for s in streams:
            s.stop.set()
        end = time.monotonic() + timeout
        for s in streams:
            if s.thread is not None:
                s.thread.join(max(0.0, end - time.monotonic()))

    # ---- one stream, in its own thread
    def _run(self, stream: _Stream) -> None:
        host, cid = stream.key
        with self._lock:
            self.started += 1
        try:
            gw = self.gateway_for(host)
            # ours and running, on that host: the handle list_managed vouched for, never a bare id
            mine = [c for c in gw.list_managed(self.store_id, all=False) if c.id.startswith(cid)]
            if len(mine) != 1:
                stream.series.error = "not a running container of ours" if not mine else "ambiguous id"
                return
            feed = gw.stats_stream(mine[0])
            try:
                for sample in feed:
                    if stream.stop.is_set():
                        break
                    if sample.get("read", "").startswith("0001-"):   # a stopped container's empty sample
                        break
                    with self._lock:
                        stream.series.add(sample)
            finally:
                feed.close()
        except Exception as e:  # an engine hiccup ends this stream; the console shows the last samples
            log.debug("stats stream of %s on %s ended: %s", cid, host, e)
            stream.series.error = " ".join(str(e).split())[:200]
        finally:
            stream.ended_at = time.monotonic()
            with self._lock:
                self.closed += 1
                self._running.discard(stream)
