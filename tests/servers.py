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


class Relay:
    """A listening socket whose every connection is relayed to the engine's unix socket `target`, both ways, until
    either side ends: the shared part of the tests' fronts for the engine (CuttableProxy, hosts/tlsfront.TlsFront).
    `_wrap(conn)` makes what the client speaks through (a TLS handshake; None refuses the connection)."""

    def __init__(self, server: socket.socket, target: str):
        import threading
        self.target = target
        self._server = server
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, name=type(self).__name__, daemon=True).start()

    def _accept(self) -> None:
        import threading
        while True:
            try:
                raw, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _wrap(self, raw: socket.socket) -> socket.socket | None:
        return raw

    def _serve(self, raw: socket.socket) -> None:
        client = self._wrap(raw)
        if client is None:
            raw.close()
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.target)
        with self._lock:
            self._open += [client, upstream]
        relay(client, upstream)

    def cut(self) -> None:
        """Shut down every connection open through it (new ones still pass)."""
        with self._lock:
            for s in self._open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.cut()
        self._server.close()
        with self._lock:
            for s in self._open:
                s.close()


def relay(client: socket.socket, upstream: socket.socket) -> None:
    """Both directions in this one thread (an SSL socket is not read and written from two threads at once); a side
    that ends its sending ends that direction only (a half-closed exec stream still gets its answer)."""
    import select
    pending = getattr(client, "pending", lambda: 0)   # bytes an SSL socket decrypted already: select cannot see them
    to = {client: upstream, upstream: client}
    while to:
        try:
            ready = [client] if client in to and pending() else select.select(list(to), [], [], 1.0)[0]
        except (OSError, ValueError):   # close() closed the sockets under this relay
            return
        for src in ready:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            dst = to[src]
            try:
                if data:
                    dst.sendall(data)
                    continue
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            del to[src]
    for s in (client, upstream):
        s.close()


class CuttableProxy(Relay):
    """A unix-socket proxy in front of the Docker engine whose open connections the test can cut: the real fault of
    a connection that breaks in the middle of an answer (an engine that dies, a network that drops), at a moment the
    test chooses. `cut()` shuts down every connection open through it; new ones still pass."""

    def __init__(self, path, target: str = "/var/run/docker.sock"):
        self.path = str(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.path)
        server.listen(16)
        super().__init__(server, target)
