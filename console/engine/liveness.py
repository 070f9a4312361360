"""Is the process that owns a row still there? One check for the three owners that can die mid-work: a pipeline (its
deployment's heartbeat and pid), the lease holder and a rollback (their pid).

A pid is proof only on the machine it ran on: elsewhere only an old heartbeat (or an expired lease) says it is gone."""
import os

from console.engine.deployments import MACHINE
from storage.clock import now


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
