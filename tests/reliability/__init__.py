"""Fault tests with real processes: `deployer-console` subprocesses on the test's store, killed with SIGKILL or
stopped with SIGTERM, against the real Docker engine. Helpers shared by these tests live here."""
import os
import signal
import subprocess
import time
from pathlib import Path

from storage.models import Deployment, DeploymentEvent
from tests.cli import CLI, cli_env

# the short intervals the subprocesses run with (config.load reads DEPLOYER_<SETTING>)
FAST = {"heartbeat_interval": 0.5, "health_timeout": 20, "reconcile_interval": 1, "dispatch_interval": 0.5,
        "cleanup_interval": 0.5, "cleanup_backoff_max": 2, "lease_duration": 6, "lease_renew_deadline": 4,
        "lease_retry": 0.5, "zombie_after": 5, "orphan_grace": 120,
        "metrics_listen": ""}   # engines of parallel tests must not race for the default metrics port


def fast_env(settings, fault: str | None = None, **overrides) -> dict:
    """The CLI's environment on the test's store with none of this process's DEPLOYER_* variables, the FAST
    intervals (and `overrides`), and the fault pause point when given."""
    variables = {f"DEPLOYER_{key.upper()}": value for key, value in {**FAST, **overrides}.items()}
    return cli_env(settings, hermetic=True, DEPLOYER_FAULT_PAUSE=fault, **variables)


def spawn(args: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([*CLI, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def wait_for_fault_pause(phase: str, timeout: float = 60.0) -> Deployment:
    """The deployment that reached the DEPLOYER_FAULT_PAUSE point in `phase`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ev = (DeploymentEvent.select().where(DeploymentEvent.message.startswith(f"fault pause in {phase} "))
              .order_by(DeploymentEvent.id.desc()).first())
        if ev is not None:
            return Deployment.get_by_id(ev.deployment_id)
        time.sleep(0.1)
    raise AssertionError(f"no deployment reached the fault pause in {phase} within {timeout:.0f} s")


def kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    proc.wait(timeout=10)


def stop_all(procs) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
