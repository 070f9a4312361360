"""A second Docker engine as a second "host", in its own network namespace, started and stopped by the tests.

Stopping it is a real fault (the engine is gone, its socket refuses), and it never disturbs the main engine that the
rest of the suite uses. Recipe (see DEVELOPERS.md): `ip netns add h2`, then dockerd entered into that namespace with
nsenter (not `ip netns exec`, which hides the cgroup mounts), with its own socket, data root, exec root, pid file and
containerd namespaces.
"""
import os
import signal
import subprocess
import time

import docker

SOCK = "/run/docker-h2.sock"
URL = f"unix://{SOCK}"
PIDFILE = "/run/docker-h2.pid"
LOG = "/var/log/dockerd-h2.log"
NETNS = "h2"


def _client(timeout=10) -> docker.DockerClient:
    return docker.DockerClient(base_url=URL, timeout=timeout)


def is_up() -> bool:
    try:
        c = _client(3)
        ok = c.ping()
        c.close()
        return bool(ok)
    except Exception:
        return False


def _pid() -> int | None:
    try:
        pid = int(open(PIDFILE).read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start(timeout: float = 60.0) -> None:
    if is_up():
        return
    if not os.path.exists(f"/var/run/netns/{NETNS}"):
        subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["nsenter", f"--net=/var/run/netns/{NETNS}", "ip", "link", "set", "lo", "up"], check=True)
    pid = _pid()
    if pid:  # a wedged engine from an earlier run
        os.kill(pid, signal.SIGKILL)
        time.sleep(1)
    for leftover in (SOCK, PIDFILE):
        if os.path.exists(leftover):
            os.unlink(leftover)
    with open(LOG, "ab") as log:
        subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{NETNS}", "dockerd", "-H", URL, "--data-root", "/var/lib/docker-h2",
             "--exec-root", "/run/docker-h2", "--pidfile", PIDFILE, "--containerd-namespace", "h2",
             "--containerd-plugins-namespace", "h2p"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if is_up():
            return
        time.sleep(0.3)
    raise RuntimeError(f"second engine did not answer within {timeout:.0f} s; see {LOG}")


def stop(timeout: float = 30.0) -> None:
    """Stop the second engine (SIGTERM, then SIGKILL) and wait until its socket no longer answers."""
    pid = _pid()
    if pid:
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while time.monotonic() < end and _pid():
            time.sleep(0.2)
        if _pid():
            os.kill(pid, signal.SIGKILL)
            time.sleep(1)
    end = time.monotonic() + 10
    while time.monotonic() < end and is_up():
        time.sleep(0.2)


def ensure_base_image() -> None:
    from console.engine.docker_gateway import Gateway
    Gateway("h2", _client(120)).ensure_base_image()
