"""Whether a Docker engine on a unix socket answers: one `GET /_ping` over the socket, with the standard library.

A probe (`status`, the console's status bar, a command that checks its hosts first) needs nothing more, so it does not
load docker-py (with requests, urllib3 and paramiko, most of a read command's start-up) nor http.client. Engines
reached another way (tcp:// with TLS, ssh://) are pinged through docker-py by the caller."""
import os
import socket

DEFAULT_SOCKET = "/var/run/docker.sock"   # docker-py's default when DOCKER_HOST is not set
_handed_over: dict[str, "PingFailed"] = {}
# what a caller bounding pings of `timeout` (parallel.at_once) waits past it, so that a ping that times out ends and
# says why (it took the connection and did not answer, say) rather than being abandoned as "no answer"
GRACE_S = 0.5


class PingFailed(Exception):
    """The engine did not answer the ping. `connected`: whether the socket accepted the connection at all."""

    def __init__(self, message: str, connected: bool):
        super().__init__(message)
        self.connected = connected


def socket_path(url: str | None) -> str | None:
    """The socket path of a `unix://` URL; with no URL, that of DOCKER_HOST (or the default socket when it is not
    set), as docker-py's from_env picks it. None for an engine that is not on a local unix socket."""
    url = url or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    path = url[len("unix://"):] if url.startswith("unix://") else ""
    return path if path.startswith("/") else None


def hand_over(path: str, failure: "PingFailed") -> None:
    """A ping that just failed, for the next `ping` of `path` in this process to raise at once instead of asking
    (and waiting) again: the CLI's quick path hands a `status` it cannot answer to the full CLI, which probes the
    hosts itself; an engine that accepts and never answers would cost the wait twice."""
    _handed_over[path] = failure


def ping(path: str, timeout: float) -> None:
    """GET /_ping on the engine at the unix socket `path`; each step (connect, send, every read) waits at most
    `timeout` seconds. Returns when the engine answered 200; raises PingFailed (one line) otherwise."""
    failed = _handed_over.pop(path, None)
    if failed is not None:
        raise PingFailed(str(failed), failed.connected)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except OSError as e:
            raise PingFailed(f"cannot connect to unix://{path}: {e.strerror or e}", connected=False) from e
        try:
            # HTTP/1.0: the engine closes the connection after its answer, whose first line is all that is read
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                head += chunk
        except TimeoutError as e:
            raise PingFailed(f"unix://{path} accepted the connection and did not answer within {timeout:g} s",
                             connected=True) from e
        except OSError as e:
            raise PingFailed(f"unix://{path} dropped the connection: {e.strerror or e}", connected=True) from e
    finally:
        sock.close()
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise PingFailed(f"unix://{path} answered what is not HTTP: {status[:80]!r}", connected=True)
    if parts[1] != "200":
        raise PingFailed(f"unix://{path} answered {status.partition(' ')[2]} to /_ping", connected=True)
