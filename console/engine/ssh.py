"""`ssh://` Docker hosts through the system's `ssh` client.

Why the system client (docker-py's `use_ssh_client`) and not paramiko: it is what the docker CLI and Kamal use, so an
operator's `~/.ssh/config` (Host aliases, User, Port, IdentityFile, ProxyJump), ssh-agent, `known_hosts` and
certificates work as they do for `ssh HOST`, with nothing to configure twice. (docker-py imports paramiko for any
`ssh://` URL all the same, which is why the dependency is `docker[ssh]`.) Every Docker request runs
`ssh ... HOST docker system dial-stdio` on the remote side, which needs the docker CLI there.

What we add to docker-py's shell-out transport (`SystemSsh`, put in place of its socket class):
- `BatchMode=yes`: never a prompt (password, passphrase, host key) that would hang a headless engine;
- `StrictHostKeyChecking=yes`: a host key that is not in known_hosts is refused, never accepted silently;
  `check()` turns that refusal into one line saying how to add the key;
- `ConnectTimeout=host_timeout` and `ServerAliveInterval`/`ServerAliveCountMax`: a host that does not answer, or a
  connection that goes silent, ends the ssh process within about host_timeout, so a hung ssh never hangs a caller;
- closing a connection whose ssh has already exited is not an error (docker-py wrote to the dead pipe: the
  BrokenPipeError that ended health checks, whose exec stream the engine closes first), and the process is reaped;
- `shutdown()` ends the ssh process, so a cancelled build stops its upload/stream as on a unix socket;
- answers are read with the connection's timeout, as on a real socket: docker-py read the ssh pipe with no timeout at
  all, so an engine that took a request and never answered (hung, or stopped) held the caller forever, even with
  the ssh connection itself alive (`TimedPipe`);
- ssh's own messages go to a small buffer (quoted in errors), not to the operator's terminal;
- connection sharing (`ControlMaster=auto`, sockets in a private directory, `ControlPersist` 60 s): docker-py opens
  one ssh session per request, and without it each would pay a whole ssh handshake;
- a URL without a port (`ssh://deploy@edge`) leaves the port to ssh's config: docker-py makes it 22, which overrode
  the `Port` of a Host alias in ~/.ssh/config (and lost the host's timeout, registered under the URL's own form).
"""
import io
import logging
import os
import select
import shlex
import socket
import subprocess
import tempfile
import threading
from urllib.parse import urlsplit

import docker.errors

log = logging.getLogger(__name__)
_timeouts: dict[str, float] = {}   # "user@host[:port]" (as the ssh:// URL says it) -> host_timeout
_lock = threading.Lock()


CONTROL_PERSIST_S = 60


def control_dir() -> str:
    """A private directory for the connection-sharing sockets (one ssh connection per host carries every request)."""
    path = os.path.join(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir(), f"deployer-ssh-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise docker.errors.DockerException(f"{path} must be a private directory of this user (mode 0700)")
    return path


def options(timeout: float) -> list[str]:
    t = max(1, int(round(timeout)))
    alive = max(1, t // 3)
    return ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={t}",
            "-o", f"ServerAliveInterval={alive}", "-o", "ServerAliveCountMax=3",
            # every Docker request is one ssh session: share one connection per host instead of a handshake each
            "-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir()}/%C",
            "-o", f"ControlPersist={CONTROL_PERSIST_S}"]


def target(url: str) -> tuple[list[str], str, str | None, int | None]:
    """ssh arguments for an ssh:// URL (as docker-py builds them), plus its host, user and port."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise docker.errors.DockerException(f"{url}: no host name")
    args = (["-l", parts.username] if parts.username else []) + (["-p", str(parts.port)] if parts.port else [])
    return args + ["--", parts.hostname], parts.hostname, parts.username, parts.port


def register(url: str, timeout: float) -> None:
    with _lock:
        _timeouts[url[len("ssh://"):]] = timeout


def explain(name_or_url: str, url: str, stderr: str) -> str:
    """One line for what ssh said."""
    _, host, user, port = target(url)
    text = " ".join(stderr.split())
    low = text.lower()
    p = f"-p {port} " if port else ""
    who = f"{user}@{host}" if user else host
    if "remote host identification has changed" in low:
        return (f"the ssh host key of {host} has CHANGED since it was added to known_hosts: if that is expected, "
                f"remove the old one (ssh-keygen -R {f'[{host}]:{port}' if port else host}) and add the new one")
    if "host key verification failed" in low or "host key is known" in low or "no matching host key" in low:
        return (f"the ssh host key of {host} is not known here: check its fingerprint and add it once with "
                f"`ssh-keyscan {p}{host} >> ~/.ssh/known_hosts` (or run `ssh {p}{who}` once and accept it)")
    if "permission denied" in low:
        return f"ssh {who} refused this machine's key ({text[:160]}): add its public key to the remote user's " \
               f"~/.ssh/authorized_keys, or load it into ssh-agent"
    if "timed out" in low or "timeout" in low:
        return f"ssh to {host} got no answer ({text[:160]})"
    if "docker: command not found" in low or "docker: not found" in low:
        return f"{host} has no docker CLI for `docker system dial-stdio` (install docker there)"
    return f"ssh {who}: {text[:200] or 'the connection ended'}"


def check(url: str, timeout: float) -> None:
    """Connect once, the way every Docker call will, and fail with one line when ssh cannot (unknown host key,
    key refused, no answer) instead of a bare connection error later. Bounded by about `timeout`."""
    args, *_ = target(url)
    cmd = ["ssh", *options(timeout), *args, "docker version --format '{{.Server.Version}}' >/dev/null"]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout + 2,
                              env=_env())
    except subprocess.TimeoutExpired:
        raise docker.errors.DockerException(f"ssh to {url} got no answer within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise docker.errors.DockerException("no `ssh` client on this machine (install openssh-client)") from None
    if proc.returncode != 0:
        raise docker.errors.DockerException(explain(url, url, proc.stderr or proc.stdout))


def _env() -> dict:
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    env.pop("SSL_CERT_FILE", None)
    return env


def install() -> None:
    """Put SystemSsh in place of docker-py's shell-out socket (once; docker-py's ssh module imports paramiko, so
    only processes that use an ssh:// host load it)."""
    global SystemSsh
    from console.engine import docker_compat
    with _lock:
        if SystemSsh is None:
            SystemSsh = _system_ssh(docker_compat.ssh_socket_base())
        docker_compat.use_ssh_socket(SystemSsh)


SystemSsh = None


class TimedPipe(io.RawIOBase):
    """The ssh process's stdout, read with its connection's timeout: urllib3 sets it (`settimeout`) before it reads an
    answer, as on a real socket, and a read that waits longer raises socket.timeout (a read timeout to requests)
    instead of waiting for ever. No timeout (None: a followed log, a build's output) waits as long as it takes."""

    def __init__(self, stdout, sock: socket.socket):
        super().__init__()
        self.stdout = stdout
        self.sock = sock

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.stdout.fileno()

    def readinto(self, buffer) -> int:
        timeout = self.sock.gettimeout()
        if timeout is not None and not select.select([self.stdout], [], [], timeout)[0]:
            raise TimeoutError(f"no answer over ssh within {timeout:g} s")
        data = os.read(self.stdout.fileno(), len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self.stdout.close()
            finally:
                super().close()


def _system_ssh(base):
    class SystemSsh(base):
        def connect(self, **kwargs):
            key = self.host if not self.user else f"{self.user}@{self.host}"
            port = self.port
            with _lock:
                if port and f"{key}:{port}" in _timeouts:
                    timeout = _timeouts[f"{key}:{port}"]
                elif key in _timeouts:
                    # docker-py gave a URL without a port the default 22; ssh's own config decides instead (a Host
                    # alias with its Port in ~/.ssh/config), as for `ssh HOST`
                    timeout, port = _timeouts[key], None
                else:
                    timeout = 10.0
            args = ["ssh", *options(timeout)]
            if self.user:
                args += ["-l", self.user]
            if port:
                args += ["-p", port]
            args += ["--", self.host, "docker system dial-stdio"]
            self._stderr = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                                         stderr=self._stderr, start_new_session=True)
            self._reader = None
            log.debug("ssh: %s", shlex.join(args))

        def makefile(self, mode="rb", *args, **kwargs):
            """What the HTTP response reads: the ssh process's stdout, read with this connection's timeout."""
            if not self.proc:
                self.connect()
            if getattr(self, "_reader", None) is None:
                self._reader = io.BufferedReader(TimedPipe(self.proc.stdout, self))
                self._reader.channel = self   # docker-py finds the socket under a response this way
            return self._reader

        def recv(self, n):
            # the same buffer as the response's: an exec or attach stream goes on where the headers ended
            return self.makefile().read1(n)

        def _write(self, data):
            try:
                return super()._write(data)
            except (BrokenPipeError, ValueError) as e:  # ssh ended: say why, as a connection error
                raise ConnectionError(f"ssh to {self.host} ended: {self.said() or type(e).__name__}") from e

        def said(self) -> str:
            err = getattr(self, "_stderr", None)
            if err is None:
                return ""
            try:
                err.seek(0)
                return " ".join(err.read()[-2000:].decode(errors="replace").split())
            except (OSError, ValueError):
                return ""

        def shutdown(self, how=None):
            self._end()

        def close(self):
            try:
                super().close()
            except (BrokenPipeError, OSError, ValueError):  # ssh has already exited: nothing to tell it
                pass
            self._end()

        def _end(self):
            proc = self.proc
            if proc is not None:
                try:
                    if proc.poll() is None:
                        proc.terminate()
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                except OSError:
                    pass
                try:  # stdout stays: the HTTP response reading it closes it (it reads EOF now)
                    proc.stdin.close()
                except (OSError, ValueError):
                    pass
            for f in (getattr(self, "_stderr", None),):
                try:
                    if f is not None:
                        f.close()
                except (OSError, ValueError):
                    pass
            socket.socket.close(self)   # the placeholder socket docker-py's class opens and never uses

    return SystemSsh
