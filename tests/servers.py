"""What the tests' private servers (Caddy, Prometheus) share: a free loopback port, and the server's binary found
(or installed from Debian's packages) by the project's own script under scripts/."""
import socket
import subprocess
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def installed_binary(script_name: str) -> str:
    """`scripts/<name> path`, after `scripts/<name> install` when it is missing."""
    script = str(SCRIPTS / script_name)
    found = subprocess.run(["bash", script, "path"], capture_output=True, text=True)
    if found.returncode != 0:
        subprocess.run(["bash", script, "install"], check=True, timeout=600)
        found = subprocess.run(["bash", script, "path"], capture_output=True, text=True, check=True)
    return found.stdout.strip()
