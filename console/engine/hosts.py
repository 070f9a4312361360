"""Docker hosts: the default one (from --docker-host, DOCKER_HOST or docker-py's from_env) and named ones from the
config's [hosts.NAME] tables or `host add`. One cached client per host; every Docker call for a deployment goes to
the client of the host the deployment records."""
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import docker
import docker.tls

from console.engine import validate
from console.engine.docker_gateway import Gateway
from console.engine.errors import EngineUnavailable, InputError
from storage.clock import now
from storage.models import Host

DEFAULT = "local"


def _client(url: str | None, tls: dict | None, timeout: float) -> docker.DockerClient:
    if not url:
        return docker.from_env(timeout=timeout)
    tls_config = None
    if tls and any(tls.values()):
        cert = (tls["tls_cert"], tls["tls_key"]) if tls.get("tls_cert") else None
        tls_config = docker.tls.TLSConfig(client_cert=cert, ca_cert=tls.get("tls_ca"), verify=bool(tls.get("tls_ca")))
    return docker.DockerClient(base_url=url, tls=tls_config, timeout=timeout, use_ssh_client=url.startswith("ssh://"))


class Hosts:
    def __init__(self, settings, timeout: float = 60.0):
        self.settings = settings
        self.timeout = timeout
        self._gateways: dict[str, Gateway] = {}
        self._lock = threading.Lock()

    def sync_config(self) -> None:
        """Make the store's Host rows match the config: the default host and every [hosts.NAME] table."""
        rows = {h.name: h for h in Host.select()}
        if DEFAULT not in rows:
            Host.insert(name=DEFAULT, url=self.settings.docker_host or "", is_default=not any(
                r.is_default for r in rows.values())).on_conflict_ignore().execute()
        elif self.settings.docker_host is not None and rows[DEFAULT].url != self.settings.docker_host:
            Host.update(url=self.settings.docker_host).where(Host.name == DEFAULT).execute()
        for name, table in (self.settings.hosts or {}).items():
            validate.host_name(name)
            self.add(name, table.get("url", ""), tls_ca=table.get("tls_ca"), tls_cert=table.get("tls_cert"),
                     tls_key=table.get("tls_key"), default=bool(table.get("default", False)), replace=True)

    def add(self, name: str, url: str, tls_ca=None, tls_cert=None, tls_key=None, default=False, replace=False) -> Host:
        validate.host_name(name)
        if not url or url.split("://")[0] not in ("unix", "tcp", "ssh", "npipe", "http", "https"):
            raise InputError(f"invalid Docker URL {url!r} for host {name}: unix://, tcp:// or ssh://")
        existing = Host.get_or_none(Host.name == name)
        if existing and not replace:
            raise InputError(f"host {name} exists; remove it first or edit the config")
        fields = dict(url=url, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        if existing:
            Host.update(**fields).where(Host.name == name).execute()
        else:
            Host.create(name=name, **fields)
        if default:
            Host.update(is_default=(Host.name == name)).execute()
        with self._lock:
            self._gateways.pop(name, None)
        return Host.get(Host.name == name)

    def remove(self, name: str) -> None:
        if name == DEFAULT:
            raise InputError("the local host cannot be removed")
        if Host.delete().where(Host.name == name).execute() == 0:
            raise InputError(f"unknown host {name!r}")
        with self._lock:
            self._gateways.pop(name, None)

    def default_name(self) -> str:
        row = Host.get_or_none(Host.is_default == True)  # noqa: E712
        return row.name if row else DEFAULT

    def names(self) -> list[str]:
        return [h.name for h in Host.select(Host.name).order_by(Host.name)]

    def gateway(self, name: str | None = None) -> Gateway:
        name = name or self.default_name()
        with self._lock:
            gw = self._gateways.get(name)
            if gw is not None:
                return gw
        row = Host.get_or_none(Host.name == name)
        if row is None:
            raise InputError(f"unknown host {name!r}; see `deployer-console host ls`")
        url = row.url or (self.settings.docker_host if name == DEFAULT else None)
        try:
            client = _client(url, {"tls_ca": row.tls_ca, "tls_cert": row.tls_cert, "tls_key": row.tls_key},
                             self.timeout)
        except docker.errors.DockerException as e:
            raise EngineUnavailable(f"Docker host {name} ({url or 'from environment'}) unreachable: {e}") from e
        gw = Gateway(name, client)
        with self._lock:
            self._gateways.setdefault(name, gw)
            return self._gateways[name]

    def probe(self, timeout: float | None = None) -> dict[str, str | None]:
        """Ping every host in parallel with a per-host timeout. Returns {name: None if up else error}; records it."""
        names = self.names()
        timeout = timeout or self.settings.host_timeout
        results: dict[str, str | None] = {n: f"no answer within {timeout:.0f} s" for n in names}

        def ping(name):
            try:
                self.gateway(name).ping()
                results[name] = None
            except Exception as e:  # any failure means "down" for the status bar; the message says why
                results[name] = str(e).splitlines()[0][:200] if str(e) else type(e).__name__

        pool = ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="probe")
        futures = [pool.submit(ping, n) for n in names]
        wait(futures, timeout=timeout)
        pool.shutdown(wait=False)
        return results

    def record(self, results: dict[str, str | None]) -> list[tuple[str, bool]]:
        """Store reachability; returns the hosts whose state changed."""
        changed = []
        rows = {h.name: h for h in Host.select()}
        for name, error in results.items():
            row = rows.get(name)
            if row is None:
                continue
            up = error is None
            if row.reachable != up:
                changed.append((name, up))
            Host.update(reachable=up, last_error=error, **({"last_seen_at": now()} if up else {})).where(
                Host.name == name).execute()
        return changed

    def close(self) -> None:
        with self._lock:
            for gw in self._gateways.values():
                try:
                    gw.client.close()
                except Exception:
                    pass
            self._gateways.clear()
