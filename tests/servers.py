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


class CuttableProxy:
    """A unix-socket proxy in front of the Docker engine whose open connections the test can cut: the real fault of
    a connection that breaks in the middle of an answer (an engine that dies, a network that drops), at a moment the
    test chooses. `cut()` shuts down every connection open through it; new ones still pass."""

    def __init__(self, path, target: str = "/var/run/docker.sock"):
        import threading
        self.path, self.target = str(path), target
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
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
