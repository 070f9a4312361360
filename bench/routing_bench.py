"""Zero-downtime routing through a real Caddy: a steady loop of ~50 requests/s at one service while it goes through 5
successful deploys, 1 deploy whose container never answers, 1 cancel during HEALTH_CHECK and 1 rollback. Target
(issue 16): 0 failed requests (connection errors or non-2xx). Next to it, the p99 latency through the proxy and of a
direct request to the container, and the yardstick: the same loop against the old behaviour (route switched as the
container starts, before any check; the superseded container stopped at once) during 5 deploys and 1 failing one.

Every new container takes 1 s to listen after it starts (as a real app does); the failing one never listens.
"""
import os
import threading
import time
import urllib.request
from pathlib import Path

try:
    from bench import benchlib as B
except ModuleNotFoundError:  # run as `python bench/routing_bench.py`
    import benchlib as B

from console.engine.pipeline import Pipeline, container_name, wait_healthy  # benchlib put the project on sys.path
from console.engine.routes import route_for
from storage.models import Deployment
from tests.caddy import Caddy, RequestLoop

HOST = "bench.test"
INTERVAL = 0.02          # 50 requests/s
SLOW_START = 1.0
DRAIN = float(os.environ.get("BENCH_ROUTING_DRAIN", "2"))
LATENCY_SAMPLES = 300
NOTES = ["Caddy 2.6 (Debian) swaps its listener on every config change; a connection accepted in that instant is "
         "reset by Caddy itself. Such resets are counted as failed requests and also shown on their own row."]


def write_source(path: Path, version: str, broken: bool = False) -> None:
    path.mkdir(parents=True, exist_ok=True)
    cmd = '["sleep", "3600"]' if broken else f'["sh", "-c", "sleep {SLOW_START:g}; exec httpd -f -p 8080 -h /www"]'
    (path / "Dockerfile").write_text(f"FROM deployer/base:busybox\nRUN mkdir -p /www && echo {version} > "
                                     f"/www/index.html\nCMD {cmd}\n")


class SwitchFirst(Pipeline):
    """The old behaviour: UPDATING_ROUTES starts the container and switches the route at once; HEALTH_CHECK then
    checks the container directly, and a failure restores the previous route."""

    def _updating_routes(self, job) -> str:
        info = self._container(job)
        if not info.running:
            job.gateway.start(info)
        return self.ctx.router.apply(route_for(job.gateway, job.service, job.deployment.id, info))

    def _health_check(self, job) -> str:
        return wait_healthy(job.gateway, self._container(job), job.service.port, job.service.health_path,
                            self.ctx.settings.pipeline.health_timeout, job.control.check, job.control.sleep)


def cancel_during_health_check(engine) -> str:
    os.environ["DEPLOYER_FAULT_PAUSE"] = "HEALTH_CHECK:30"
    try:
        dep = engine.create_deployment("web")
        result = {}
        worker = threading.Thread(target=lambda: result.setdefault("status", engine.pipeline.run(dep.id)))
        worker.start()
        end = time.monotonic() + 60
        while Deployment.get_by_id(dep.id).phase != "HEALTH_CHECK" and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(0.5)
        engine.cancel(dep.id)
        worker.join(30)
        return result.get("status", "still running")
    finally:
        os.environ.pop("DEPLOYER_FAULT_PAUSE", None)


def sequence(engine, src: Path, ours: bool) -> list[str]:
    out = []
    for i in range(2, 7):
        write_source(src, f"v{i}")
        out.append(engine.deploy("web").status)
    write_source(src, "broken", broken=True)
    out.append(engine.deploy("web").status)
    if ours:
        write_source(src, "v7")
        out.append(cancel_during_health_check(engine))
        engine.rollback("web")
        out.append("rolled back")
    return out


def p99(values) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] * 1000 if values else float("nan")


def latencies(engine, caddy: Caddy) -> tuple[float, float]:
    """p99 of LATENCY_SAMPLES requests through the proxy and as many direct to the serving container, interleaved."""
    dep = Deployment.get(Deployment.status == "success")
    gw = engine.hosts.gateway(dep.host)
    upstream = route_for(gw, dep.service, dep.id, gw.find_ours(container_name("web", dep.id), engine.store_id,
                                                                 dep.id)).upstream
    proxied, direct = [], []
    for _ in range(LATENCY_SAMPLES):
        t0 = time.perf_counter()
        caddy.get("/", HOST)
        proxied.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://{upstream}/", timeout=5) as r:
            r.read()
        direct.append(time.perf_counter() - t0)
    return p99(proxied), p99(direct)


def one_side(ours: bool, workdir: Path) -> dict:
    caddy = Caddy(workdir / ("caddy-ours" if ours else "caddy-old")).start()
    try:
        with B.temp_engine(health_timeout=6.0, routes_drain_seconds=DRAIN if ours else 0.0,
                           **caddy.settings()) as engine:
            if not ours:
                engine.pipeline = SwitchFirst(engine.ctx)
            src = workdir / ("src-ours" if ours else "src-old")
            write_source(src, "v1")
            engine.add_service("web", str(src), route_host=HOST)
            engine.deploy("web")
            with RequestLoop(caddy, HOST, INTERVAL) as loop:
                outcomes = sequence(engine, src, ours)
            result = {"outcomes": outcomes, "sent": len(loop.answers), "failed": len(loop.failed()) +
                      len(loop.resets()), "resets": len(loop.resets()),
                      "non2xx": sum(1 for a in loop.answers if a[1] is not None and not 200 <= a[1] < 300),
                      "loop_p99": p99([a[3] for a in loop.answers])}
            if ours:
                result["proxy_p99"], result["direct_p99"] = latencies(engine, caddy)
            return result
    finally:
        caddy.stop()


def run() -> list[dict]:
    import tempfile
    workdir = Path(tempfile.mkdtemp(prefix="routing-bench-"))
    B.log("routing: our pipeline through Caddy (5 deploys, 1 failing, 1 cancel, 1 rollback)")
    ours = one_side(True, workdir)
    B.log("routing: the old behaviour (switch before the check), 5 deploys + 1 failing")
    old = one_side(False, workdir)
    return [
        B.at_most("failed requests through Caddy, our pipeline", ours["failed"], 0, "requests",
                  f"of {ours['sent']} sent at ~50/s; outcomes {', '.join(ours['outcomes'])}"),
        B.info("  of which connections reset by Caddy's own config reload", ours["resets"], "requests",
               "Caddy 2.6 listener swap; no request reached a container that did not answer"),
        B.info("p99 latency through Caddy", round(ours["proxy_p99"], 2), "ms", f"{LATENCY_SAMPLES} requests, idle"),
        B.info("p99 latency direct to the container", round(ours["direct_p99"], 2), "ms",
               f"{LATENCY_SAMPLES} requests, interleaved with the proxied ones"),
        B.info("p99 latency through Caddy during the deploy sequence", round(ours["loop_p99"], 2), "ms"),
        B.info("yardstick: failed requests, route switched before the check", old["failed"], "requests",
               f"of {old['sent']} sent; {old['non2xx']} non-2xx (502 while the new container starts or never "
               f"answers), {old['resets']} resets; outcomes {', '.join(old['outcomes'])}"),
    ]


if __name__ == "__main__":
    raise SystemExit(B.main(run, "routing: zero-downtime deploys through Caddy"))
