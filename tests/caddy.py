"""A real Caddy for the routing tests and bench: Debian's `caddy` binary (scripts/caddy installs it), run on free
loopback ports (admin API and the `deployer` server's listener), its data in a temp dir, stopped after. The console
creates its server through the admin API; `restart()` is a Caddy that lost its live config."""
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.servers import free_port, installed_binary


def binary() -> str:
    return installed_binary("caddy")


class Caddy:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.admin_port, self.port = free_port(), free_port()
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.listen = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def settings(self) -> dict:
        """The console's [routes] settings for this instance."""
        return {"routes_provider": "caddy", "routes_caddy_admin": self.admin, "routes_listen": self.listen}

    def start(self, timeout: float = 20.0) -> "Caddy":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "caddy.json"
        config.write_text(f'{{"admin": {{"listen": "127.0.0.1:{self.admin_port}", "config": {{"persist": false}}}}}}')
        env = {"XDG_DATA_HOME": str(self.workdir / "data"), "XDG_CONFIG_HOME": str(self.workdir / "config"),
               "HOME": str(self.workdir), "PATH": "/usr/bin:/bin"}
        self.log = open(self.workdir / "caddy.log", "ab")
        self.proc = subprocess.Popen([binary(), "run", "--config", str(config)], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"caddy exited: {(self.workdir / 'caddy.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.admin}/config/", timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"caddy admin API not up within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        """Stopped and started again: a fresh Caddy that knows nothing of the routes it had."""
        self.stop()
        self.start()

    def get(self, path: str = "/", host: str | None = None, timeout: float = 5.0) -> tuple[int | None, str]:
        """One request through the proxy: (status, body), or (None, error) when the connection failed."""
        req = urllib.request.Request(f"http://{self.listen}{path}", headers={"Host": host} if host else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode(errors="replace").strip()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError as e:
            return None, str(e)


def is_reset(error: str) -> bool:
    return "Connection reset" in error or "Remote end closed connection" in error


class RequestLoop:
    """A steady client: one request every `interval` seconds through the proxy while it runs; every answer kept as
    (time, status, body) — status None is a connection error."""

    def __init__(self, caddy: Caddy, host: str, interval: float = 0.02):
        import threading
        self.caddy, self.host, self.interval = caddy, host, interval
        self.answers: list[tuple[float, int | None, str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        next_at = time.monotonic()
        while not self._stop.is_set():
            t0 = time.monotonic()
            status, body = self.caddy.get("/", self.host)
            self.answers.append((t0, status, body, time.monotonic() - t0))
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def failed(self) -> list:
        """Answers that are not 2xx, and connection errors other than a reset (see `resets`)."""
        return [a for a in self.answers if a[1] is not None and not 200 <= a[1] < 300 or
                a[1] is None and not is_reset(a[2])]

    def resets(self) -> list:
        """Connections Caddy reset before answering. Caddy 2.6 swaps its listener on every config change (each
        route switch is one): a connection accepted in that instant is reset, about 1 in 100 changes under a
        200 req/s loop here; it is the proxy's, not a request sent to a container that did not answer."""
        return [a for a in self.answers if a[1] is None and is_reset(a[2])]

    def bodies(self) -> list[str]:
        return [a[2] for a in self.answers]
