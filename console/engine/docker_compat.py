"""The few things docker-py's public API does not offer, in one place, checked against the docker-py versions they
were written for (tests/engine/test_docker_compat.py runs each on the real engine).

- A build's HTTP response: `APIClient.build()` returns a generator over it; cancelling a build shuts that response's
  socket down (the engine then aborts the build and removes its intermediate containers).
- A ping bounded by its own timeout (`APIClient.ping()` waits the client's timeout).
- Connect and read timeouts apart: docker-py passes one number to requests; we want connects to fail fast while
  reads (a build, a log follow) may be slow.
- A followed log stream over ssh://: docker-py cannot cancel it there; the paramiko channel under its response is
  shut down instead (`stream_response`, `ssh_channel`).
- One connection pool per local socket: docker-py's unix-socket adapter keys its pools by the request's whole URL
  (`one_pool_per_socket`).
- ssh:// through the system ssh client (console/engine/ssh.py): docker-py's `SSHSocket` is subclassed (its `_write`
  is wrapped to say why ssh ended) and put in place of docker-py's (`ssh_socket_base`, `use_ssh_socket`).
- A TLS host's own CA, whatever the environment says (`pinned_ca_client`): requests lets REQUESTS_CA_BUNDLE or
  CURL_CA_BUNDLE replace the CA docker-py sets on its session, so with either set (common where a corporate bundle
  is installed) a host's `tls_ca` was ignored: its engine failed verification, or a certificate from any CA of the
  bundle was trusted for it. The client is a DockerClient whose `api` is an APIClient subclass (DockerClient's
  constructor does nothing else) that puts the CA back into every request's settings.

Everything else goes through the public `APIClient`/`DockerClient` methods in docker_gateway.py."""
import docker

# the docker-py releases this module was checked against (pyproject pins docker>=7.1,<8)
TESTED = ((7, 1), (8, 0))


def docker_py_version() -> tuple[int, int]:
    major, minor = (int(p) for p in docker.__version__.split(".")[:2])
    return major, minor


def check_version() -> None:
    """Refuse a docker-py whose internals this module has not been checked against."""
    low, high = TESTED
    if not low <= docker_py_version() < high:
        raise RuntimeError(f"docker-py {docker.__version__} is not supported: console/engine/docker_compat.py was "
                           f"checked with {low[0]}.{low[1]} up to (not including) {high[0]}.{high[1]}")


check_version()


def build_response(stream):
    """The HTTP response under the generator `APIClient.build()` returned (its `_stream_helper(response, ...)` frame
    holds it from the start), or None when docker-py no longer keeps it there."""
    frame = getattr(stream, "gi_frame", None)
    return frame.f_locals.get("response") if frame is not None else None


def response_socket(api, response):
    """The socket under a streamed response (unwrapped from the SocketIO of unix transports), or None for a
    transport without one."""
    try:
        sock = api._get_raw_response_socket(response)
    except Exception:  # not every transport exposes its socket; then closing the response must do
        return None
    return getattr(sock, "_sock", sock)


def ping_within(api, timeout: float) -> None:
    """GET /_ping bounded by `timeout`; raises as docker-py does (APIError, requests' errors)."""
    response = api._get(api._url("/_ping"), timeout=timeout)
    api._raise_for_status(response)


def split_connect_timeout(api, connect_timeout: float) -> None:
    """Make every request of `api` give up connecting after `connect_timeout` while reads keep their own timeout:
    docker-py passes one number to requests, which takes (connect, read)."""
    plain = api.request

    def request(method, target, **kwargs):
        t = kwargs.get("timeout")
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            kwargs["timeout"] = (min(connect_timeout, t), t)
        return plain(method, target, **kwargs)

    api.request = request


def stream_response(stream):
    """The HTTP response under a docker-py CancellableStream (a followed log), or None."""
    return getattr(stream, "_response", None)


def ssh_channel(response):
    """The paramiko channel under a response read over docker-py's ssh transport, or None on other transports."""
    fp = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    return getattr(fp, "channel", None)


def ssh_socket_base():
    """docker-py's shell-out socket class for ssh:// (`use_ssh_client=True`), the base of ssh.SystemSsh. Its
    `_write(data)` is the one method SystemSsh wraps besides the public socket ones."""
    from docker.transport import sshconn
    return sshconn.SSHSocket


def use_ssh_socket(cls) -> None:
    """Make docker-py open `cls` (a subclass of ssh_socket_base()) for every ssh:// connection."""
    from docker.transport import sshconn
    sshconn.SSHSocket = cls


class _PinnedCA(docker.APIClient):
    def __init__(self, *args, pinned_ca: str, **kwargs):
        self._pinned_ca = pinned_ca      # before the version handshake APIClient's constructor makes
        super().__init__(*args, **kwargs)

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self._pinned_ca
        return settings


def pinned_ca_client(ca_path: str, **kwargs) -> docker.DockerClient:
    """`docker.DockerClient(**kwargs)` whose server certificate is verified against `ca_path` and nothing else."""
    client = docker.DockerClient.__new__(docker.DockerClient)
    client.api = _PinnedCA(pinned_ca=ca_path, **kwargs)
    return client


def one_pool_per_socket(api) -> None:
    """docker-py's unix-socket adapter keys its connection pools by the request's whole URL, so every call about
    another container (or with other query parameters) opens a new pool and a new connection, and its pools of
    `max_pool_size` are never reused (100 inspects of different ids: 101 connections). The socket is the only thing
    a pool depends on: key them all by it."""
    from docker.transport import UnixHTTPAdapter
    adapter = getattr(api, "_custom_adapter", None)
    if isinstance(adapter, UnixHTTPAdapter):
        plain = adapter.get_connection

        def get_connection(url, proxies=None):
            return plain("http+docker://localhost", proxies)

        adapter.get_connection = get_connection
