"""A Docker engine behind TLS with client certificates, for `tcp://` hosts with `tls_ca`/`tls_cert`/`tls_key`.

What it is: a TLS server on 127.0.0.1:<free port> (Python's ssl module, TLS 1.2+, `CERT_REQUIRED`: a client without
a certificate signed by the test CA is refused in the handshake) that passes the decrypted bytes both ways to the
second engine's unix socket, as dockerd's own `--tlsverify` listener does in front of its API. The client side under
test is the real one: docker-py's TLSConfig (every Docker call of the console) and the docker CLI's `--tlsverify
--tlscacert --tlscert --tlskey` (exec in plain mode). Why not dockerd's own listener: it would mean restarting the
shared second engine with other options (or a third engine); the bytes after the handshake are the engine's own.

Certificates: a CA, a server certificate for IP 127.0.0.1 and a client certificate, made with the openssl CLI in a
private directory; `other_ca()` is a CA the server's certificate was not signed by."""
import socket
import ssl
import subprocess
from pathlib import Path

from tests.servers import Relay

H2_SOCKET = "/run/docker-h2.sock"


def _openssl(*args, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str = "ca") -> tuple[Path, Path]:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=deployer test {name}",
             "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", cwd=d)
    return d / f"{name}.pem", d / f"{name}-key.pem"


def _signed(d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}-key.pem",
             "-out", f"{name}.csr", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)


class TlsFront:
    def __init__(self, root: Path, target: str = H2_SOCKET):
        self.root = root
        self.target = target
        self._relay: Relay | None = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def ca(self) -> str:
        return str(self.root / "ca.pem")

    @property
    def cert(self) -> str:
        return str(self.root / "client.pem")

    @property
    def key(self) -> str:
        return str(self.root / "client-key.pem")

    def other_ca(self) -> str:
        return str(make_ca(self.root, "other")[0])

    def start(self) -> "TlsFront":
        d = self.root
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        make_ca(d)
        _signed(d, "server", "ca", "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
        _signed(d, "client", "ca", "extendedKeyUsage = clientAuth\n")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(d / "server.pem", d / "server-key.pem")
        context.load_verify_locations(d / "ca.pem")
        context.verify_mode = ssl.CERT_REQUIRED
        server = socket.create_server(("127.0.0.1", 0))
        self.port = server.getsockname()[1]
        self._relay = _TlsRelay(context, server, self.target)
        return self

    def stop(self) -> None:
        if self._relay is not None:
            self._relay.close()


class _TlsRelay(Relay):
    def __init__(self, context: ssl.SSLContext, server: socket.socket, target: str):
        self._context = context
        super().__init__(server, target)

    def _wrap(self, raw: socket.socket) -> ssl.SSLSocket | None:
        try:
            return self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):   # no certificate, or one of another CA: refused in the handshake
            return None
