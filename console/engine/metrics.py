"""Prometheus metrics: what this process's engine sees, served in the text format on `[metrics] listen`.

Two kinds of series:
- gauges computed at scrape time from the store (`StoreCollector`: a few grouped queries, nothing kept in memory):
  deployer_deployments{status,service,host}, deployer_cleanup_queue_depth, deployer_cleanup_oldest_due_seconds,
  deployer_host_up{host} (the reachability reconciliation recorded), deployer_leader (1 while this process holds the
  lease), deployer_process_info{pid} (the process serving them);
- counters and histograms moved by the job code paths through the small API below (`observe_phase`,
  `cleanup_outcome`, `observe_reconcile`, `docker_error`). They count what this process did; only the lease holder
  runs jobs, so only the leader's move.

The job series live in a registry of this module (never prometheus_client's global one); each server gets its own
registry holding them and the store collector of its engine. Nothing here is on a hot path: a counter update is one
lock and one addition, and the store is read only when Prometheus scrapes.
"""
import errno
import functools
import logging
import os
import re
import threading
from types import SimpleNamespace

from console.engine import deployments as D
from console.engine.validate import PHASES

log = logging.getLogger(__name__)

CLEANUP_OUTCOMES = ("done", "retried", "kept", "abandoned")
FINDINGS = {"zombies": "zombie", "orphans": "orphan", "drift": "drift"}   # reconcile plan key -> label


@functools.cache
def job_series() -> SimpleNamespace:
    """The job series and their registry, made on first use: a CLI command that moves none of them starts without
    prometheus_client."""
    from prometheus_client import CollectorRegistry, Counter, Histogram
    registry = CollectorRegistry()
    series = SimpleNamespace(
        registry=registry,
        phase_duration=Histogram(
            "deployer_phase_duration_seconds", "How long each pipeline phase took (every outcome), by phase.",
            ["phase"], buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900), registry=registry),
        cleanups=Counter("deployer_cleanups", "Cleanup task runs by outcome (done, retried, kept, abandoned).",
                         ["outcome"], registry=registry),
        reconcile_duration=Histogram(
            "deployer_reconcile_duration_seconds", "How long a reconciliation pass took.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=registry),
        reconcile_findings=Counter("deployer_reconcile_findings", "What reconciliation passes found, by kind.",
                                   ["kind"], registry=registry),
        docker_errors=Counter("deployer_docker_errors", "Docker calls that failed because the engine did not answer.",
                              ["host"], registry=registry))
    for phase in PHASES:      # every label value exists from the start: a rate() over a fresh engine is 0, not absent
        series.phase_duration.labels(phase)
    for outcome in CLEANUP_OUTCOMES:
        series.cleanups.labels(outcome)
    for kind in FINDINGS.values():
        series.reconcile_findings.labels(kind)
    return series


# ---- the API the job code paths call
def observe_phase(phase: str, seconds: float) -> None:
    job_series().phase_duration.labels(phase).observe(seconds)


def cleanup_outcome(outcome: str | None, n: int = 1) -> None:
    if outcome in CLEANUP_OUTCOMES and n:
        job_series().cleanups.labels(outcome).inc(n)


def observe_reconcile(seconds: float, plan: dict) -> None:
    """One pass: its duration and how many zombies, orphans and drift findings its plan held."""
    series = job_series()
    series.reconcile_duration.observe(seconds)
    for key, kind in FINDINGS.items():
        if plan.get(key):
            series.reconcile_findings.labels(kind).inc(len(plan[key]))


def docker_error(host: str) -> None:
    job_series().docker_errors.labels(host).inc()


# ---- scrape time
class StoreCollector:
    """The gauges, read from the store when Prometheus scrapes: one grouped query per series."""

    def __init__(self, store, is_leader, reachability):
        self.store = store
        self.is_leader = is_leader
        self.reachability = reachability   # {host: {"reachable": bool | None, ...}} of this run's hosts

    def collect(self):
        from peewee import fn
        from prometheus_client.core import GaugeMetricFamily

        from storage.clock import now
        from storage.models import CleanupTask, Deployment, Service
        deployments = GaugeMetricFamily("deployer_deployments", "Deployments in the store by status, service and host.",
                                        labels=["status", "service", "host"])
        depth = GaugeMetricFamily("deployer_cleanup_queue_depth", "Cleanup tasks pending or running.")
        oldest = GaugeMetricFamily("deployer_cleanup_oldest_due_seconds",
                                   "How long the oldest due cleanup task has been waiting (0: none is due).")
        host_up = GaugeMetricFamily("deployer_host_up", "1 when the Docker host answered the last check.",
                                    labels=["host"])
        leader = GaugeMetricFamily("deployer_leader", "1 while this process holds the lease.")
        # the scrape runs in the HTTP server's own thread: its connection is opened and closed here
        with self.store.db.connection_context():
            rows = (Deployment.select(Deployment.status, Service.name, Deployment.host, fn.COUNT(Deployment.id))
                    .join(Service).group_by(Deployment.status, Service.name, Deployment.host).tuples())
            for status, service, host, n in rows:
                deployments.add_metric([status, service, host or ""], n)
            t = now()
            n_open, = (CleanupTask.select(fn.COUNT(CleanupTask.id))
                       .where(CleanupTask.state.in_(D.QUEUED_TASK)).tuples().get())
            first_due, = (CleanupTask.select(fn.MIN(CleanupTask.due_at))
                          .where((CleanupTask.state == "pending") & (CleanupTask.due_at <= t)).tuples().get())
            depth.add_metric([], n_open)
            oldest.add_metric([], max(0.0, t - first_due) if first_due is not None else 0.0)
            for name, seen in sorted(self.reachability().items()):
                reachable = seen.get("reachable")
                if reachable is not None:  # never checked yet: no value rather than a guess
                    host_up.add_metric([name], 1 if reachable else 0)
        leader.add_metric([], 1 if self.is_leader() else 0)
        return [deployments, depth, oldest, host_up, leader]


class _JobSeries:
    """The process's job counters, exposed in a server's registry."""

    def collect(self):
        return job_series().registry.collect()


class _Process:
    """deployer_process_info{pid}: which process serves this endpoint (a second console on the port names it)."""

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        info = GaugeMetricFamily("deployer_process_info", "The deployer-console process serving these metrics.",
                                 labels=["pid"])
        info.add_metric([str(os.getpid())], 1)
        return [info]


def served_by_a_console(host: str, port: int, timeout: float = 1.0) -> int | None:
    """The pid of the deployer-console serving metrics on host:port (0 when it does not say: an older one), None
    when what listens there is not one (or does not answer within `timeout`)."""
    # imported only when the port is taken: a CLI command that never serves metrics does not load it
    import urllib.request
    target = f"[{host}]" if ":" in host else ("127.0.0.1" if host in ("0.0.0.0", "") else host)
    try:
        with urllib.request.urlopen(f"http://{target}:{port}/metrics", timeout=timeout) as response:
            text = response.read(1 << 20).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - not an HTTP server, or not answering: not ours
        return None
    if "deployer_" not in text:
        return None
    found = re.search(r'^deployer_process_info\{pid="(\d+)"\}', text, re.MULTILINE)
    return int(found.group(1)) if found else 0


class MetricsServer:
    """The HTTP endpoint of one engine. A listen address already in use is one warning, never a dead engine; one
    in use by another deployer-console (a second console on this machine) is one line at info naming its pid."""

    def __init__(self, store, is_leader, reachability):
        from prometheus_client import CollectorRegistry
        self.registry = CollectorRegistry()
        self.registry.register(_JobSeries())
        self.registry.register(StoreCollector(store, is_leader, reachability))
        self.registry.register(_Process())
        self._server = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None
        self.served_by: int | None = None   # the listen address is another console's: its pid (0: not known)

    def start(self, address: tuple[str, int] | None) -> "MetricsServer":
        if address is None:
            return self
        from prometheus_client import start_http_server
        host, port = address
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            other = served_by_a_console(host, port) if e.errno == errno.EADDRINUSE else None
            if other is not None:
                # two consoles on one machine share the default port: the first serves, this one need not (doctor
                # says the port is ours); one line in the log, not a warning at every start
                self.served_by = other
                log.info("metrics on %s:%d are served by another deployer-console (%s); this one serves none",
                         host, port, f"pid {other}" if other else "pid unknown")
                return self
            log.warning("metrics not served on %s:%d: %s (the engine runs on; set [metrics] listen or "
                        "DEPLOYER_METRICS_LISTEN)", host, port, e.strerror or e)
            return self
        self.address = (host, self._server.server_port)
        log.info("metrics served on http://%s:%d/metrics", host, self.address[1])
        return self

    def stop(self) -> threading.Thread | None:
        """Stop serving, in a thread of its own (the server notices within 0.5 s): a stopping engine does not wait
        for it. Returns that thread, for a caller that wants the port free again."""
        server, self._server = self._server, None
        if server is None:
            return None

        def close():
            server.shutdown()
            server.server_close()
        closing = threading.Thread(target=close, name="metrics-stop", daemon=True)
        closing.start()
        return closing
