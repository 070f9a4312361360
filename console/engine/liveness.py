"""Is the process that owns a row still there? One check for the three owners that can die mid-work: a pipeline (its
deployment's heartbeat and pid), the lease holder and a rollback (their pid); and the one `Heartbeat` thread that
keeps a live owner's row fresh (a pipeline's RunControl, a rollback).

A pid is proof only on the machine it ran on: elsewhere only an old heartbeat (or an expired lease) says it is gone."""
import logging
import os
import threading
import time

from console.engine.deployments import MACHINE
from storage.clock import now
from storage.db import StoreUnavailable

log = logging.getLogger(__name__)


def pid_gone(machine: str | None, pid: int | None) -> bool:
    """True only when `pid` ran on this machine and no longer exists (proof, not a guess)."""
    if machine != MACHINE or not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False


def pipeline_alive(dep, zombie_after: float) -> bool:
    """Whether the process that ran this deployment's pipeline may still be running it: a heartbeat younger than
    zombie_after and, on this machine, its pid alive. A pipeline clears the heartbeat when it ends; a cancelled one
    keeps beating until it has stopped."""
    if dep.heartbeat_at is None or now() - dep.heartbeat_at > zombie_after:
        return False
    return not pid_gone(dep.owner_machine, dep.owner_pid)


def is_stuck(dep, zombie_after: float) -> bool:
    """A deploying deployment whose pipeline is gone: no heartbeat for zombie_after, or its process is dead here."""
    return dep.status == "deploying" and not pipeline_alive(dep, zombie_after)


class Heartbeat:
    """A thread that, until closed, writes `beat()` (in a write transaction) every `interval` seconds, and between
    beats calls `watch()` every `tick` seconds (a pipeline watches its row for a cancel or a take-over). A store
    hiccup never kills it: the next round tries again."""

    def __init__(self, store, name: str, beat, interval: float, watch=None, tick: float = 0.2):
        self.store, self.name, self.beat, self.interval, self.watch = store, name, beat, float(interval), watch
        self.tick = min(tick, self.interval)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        last_beat = 0.0
        while not self._done.wait(self.tick):
            try:
                if self.watch is not None:
                    self.watch()
                if time.monotonic() - last_beat >= self.interval:
                    with self.store.write():
                        self.beat()
                    last_beat = time.monotonic()
            except StoreUnavailable as e:  # one line, not a traceback every round, while the server is away
                log.warning("%s: %s", self.name, e)
            except Exception:
                log.exception("%s", self.name)
