"""A real Prometheus server for the metrics tests: Debian's `prometheus` binary (scripts/prometheus installs it),
started on a free loopback port with a scrape config pointing at the engine, its data in a temp dir, stopped after."""
import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.servers import free_port, installed_binary


def binary() -> str:
    return installed_binary("prometheus")


class Prometheus:
    def __init__(self, workdir: Path, target: str, interval: float = 1.0):
        self.workdir = workdir
        self.target = target
        self.interval = interval
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "Prometheus":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: {self.interval:g}s\n  scrape_timeout: {self.interval:g}s\n"
            f"scrape_configs:\n  - job_name: deployer\n    static_configs:\n      - targets: ['{self.target}']\n")
        self.log = open(self.workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary(), f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self.log.close()

    def query(self, expr: str) -> dict[tuple, float]:
        """An instant query: {label values sorted by label name (without __name__, job, instance): value}."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        out = {}
        for item in body["data"]["result"]:
            labels = {k: v for k, v in item["metric"].items() if k not in ("__name__", "job", "instance")}
            out[tuple(sorted(labels.items()))] = float(item["value"][1])
        return out

    def targets_up(self) -> bool:
        return self.query("up") == {(): 1.0}
