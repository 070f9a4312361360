"""A private PostgreSQL cluster for one test (scripts/test-postgres on a free port and a directory of its own), for
tests that restart or move the server: never the suite's shared one."""
import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "test-postgres"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A private PostgreSQL cluster for one test, started and restarted with its own pg_ctl."""

    def __init__(self, tag: str = "restart"):
        self.dir = Path(f"/tmp/deployer-pg-{tag}-{os.getpid()}")  # the server's user must reach it: not tmp_path
        self.port = _free_port()
        self.env = {**os.environ, "DEPLOYER_PG_PORT": str(self.port), "DEPLOYER_PG_DIR": str(self.dir)}

    def url(self) -> str:
        return subprocess.run(["bash", str(SCRIPT), "url"], env=self.env, check=True, capture_output=True,
                              text=True, timeout=300).stdout.strip()

    def ctl(self, *args: str, netns: str | None = None) -> None:
        """pg_ctl on the cluster; with netns, the server runs in that network namespace."""
        pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
        cmd = [pg_ctl, "-D", str(self.dir / "data"), "-l", str(self.dir / "server.log"), "-w", "-t", "60", *args]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        if netns:
            cmd = ["nsenter", f"--net=/var/run/netns/{netns}", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=90)

    def down(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():  # wherever it runs (a netns too): pg_ctl finds it
            try:
                self.ctl("-m", "immediate", "stop")
            except subprocess.SubprocessError:
                pass
        subprocess.run(["bash", str(SCRIPT), "down"], env=self.env, capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)
