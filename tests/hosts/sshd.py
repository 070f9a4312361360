"""A real OpenSSH server in front of the second Docker engine, for `ssh://` hosts.

Where it listens, and why: sshd runs in the root network namespace on 127.0.0.1:<free port>, and every session it
opens gets DOCKER_HOST=unix:///run/docker-h2.sock (sshd_config `SetEnv`), so the `docker system dial-stdio` that
docker-py's ssh transport runs on the "remote" side talks to h2's engine. A listener inside h2's namespace would need
a route from the root namespace into it (a veth pair with private addresses), which this machine's rules do not
allow as a target; the socket path is the same engine either way, and the client side (ssh, known_hosts, keys,
dial-stdio) is exercised exactly as against a remote machine.

Keys: a generated host key and client key in a private directory; key authentication only (no passwords, no PAM).
The client side never reads the real ~/.ssh: `ssh` on PATH is a wrapper that runs /usr/bin/ssh -F <private config>
(IdentityFile, UserKnownHostsFile), since ssh finds ~ from the password database, not from $HOME.
"""
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
H2_SOCKET = "/run/docker-h2.sock"


def ensure_installed() -> None:
    if os.path.exists(SSHD):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-qq", "openssh-server"], env=env, check=True,
                   capture_output=True, timeout=600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    def __init__(self, root: Path, docker_host: str = f"unix://{H2_SOCKET}"):
        self.root = root
        self.port = _free_port()
        self.docker_host = docker_host
        self.proc: subprocess.Popen | None = None
        self.bin = root / "bin"
        self.known_hosts = root / "known_hosts"

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def start(self) -> "Sshd":
        ensure_installed()
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        r = self.root
        r.mkdir(parents=True, exist_ok=True)
        os.chmod(r, 0o700)
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(r / key)], check=True)
        shutil.copy(r / "client_key.pub", r / "authorized_keys")
        (r / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {r / 'host_key'}\nPidFile {r / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {r / 'authorized_keys'}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
            f"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
            f"SetEnv DOCKER_HOST={self.docker_host}\nLogLevel ERROR\nMaxStartups 100:30:200\nMaxSessions 100\n")
        (r / "ssh_config").write_text(
            f"Host *\n  IdentityFile {r / 'client_key'}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n")
        self.known_hosts.write_text("")
        self.bin.mkdir(exist_ok=True)
        wrapper = self.bin / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {r / "ssh_config"} "$@"\n')
        wrapper.chmod(0o755)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(r / "sshd_config")], stdin=subprocess.DEVNULL,
                                     stdout=open(r / "sshd.log", "ab"), stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sshd exited: {(r / 'sshd.log').read_text()[-500:]}") from None
                time.sleep(0.1)
        raise RuntimeError("sshd did not listen within 10 s")

    def trust_host_key(self) -> None:
        """What the operator does once: the server's key into known_hosts (here read from its file, which is the
        check of the fingerprint an operator makes)."""
        key = (self.root / "host_key.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n")

    def path_env(self) -> str:
        return f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
