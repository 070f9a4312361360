"""The circuit breaker a Gateway consults: a Docker host that just failed fails again at once for a few seconds.
No docker-py here: Hosts builds one for every run, including the store-only commands that never import docker-py."""
import time

from console.engine.errors import EngineUnavailable


class Breaker:
    """A host that just failed fails again at once for `seconds` (instead of every task waiting out its own connect
    timeout); the first success clears it. `on_failure(host)` is told of every failure (the metrics count them)."""

    def __init__(self, seconds: float, on_failure=None):
        self.seconds = seconds
        self.on_failure = on_failure
        self._down_until: dict[str, tuple[float, str]] = {}

    def check(self, host: str) -> None:
        until, error = self._down_until.get(host, (0.0, ""))
        if time.monotonic() < until:
            raise EngineUnavailable(f"Docker host {host} unreachable (failed under {self.seconds:.0f} s ago: "
                                    f"{error}); retrying later")

    def trip(self, host: str, error: str) -> None:
        if self.seconds > 0:
            self._down_until[host] = (time.monotonic() + self.seconds, error.splitlines()[0][:200] if error else "")
        if self.on_failure is not None:
            self.on_failure(host)

    def clear(self, host: str) -> None:
        self._down_until.pop(host, None)
