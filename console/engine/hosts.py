"""Docker hosts: the default one (from --docker-host, DOCKER_HOST or docker-py's from_env) and named ones from the
config's [hosts.NAME] tables or `host add`. One cached client per host; every Docker call for a deployment goes to
the client of the host the deployment records.

Timeouts: one dead or blackholed host must not hold up the others. Every client connects with a timeout of
`settings.scheduler.host_timeout` (a stopped engine's unix socket refuses at once; a blackholed tcp host fails after
host_timeout), including the API-version handshake docker-py makes when a client is created. Reading an answer may
take longer (`timeout`, 60 s: removing a big container or image under load) except for probes (`probe()`, `host ls`,
the status bar), which are bounded by host_timeout as a whole. Builds and log streams have no read timeout.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from console.engine import deployments as D
from console.engine import host_specs, metrics, notify, validate
from console.engine.breaker import Breaker
from console.engine.errors import EngineUnavailable, InputError, one_line
from console.engine.host_specs import DEFAULT, HostSpec  # noqa: F401 (hosts.DEFAULT, hosts.HostSpec)
from console.engine.parallel import at_once
from storage.clock import now
from storage.models import Deployment, Host, Service

if TYPE_CHECKING:
    import docker

    from console.engine.docker_gateway import Gateway



# connections kept open per host: cleanup removes up to 16 containers side by side (docker-py's default keeps 10 and
# opens, then drops, a new connection for every call beyond them)
MAX_POOL = 32


def make_client(url: str | None, tls: dict | None, timeout: float, connect_timeout: float | None = None
                ) -> docker.DockerClient:
    """A docker-py client whose connects (and version handshake) give up after `connect_timeout` and whose reads
    wait up to `timeout`."""
    import docker  # here, not at the top: the store-only commands (ls, show, ...) start without docker-py
    import docker.tls
    connect_timeout = min(connect_timeout or timeout, timeout)
    if not url:
        client = docker.from_env(timeout=connect_timeout, max_pool_size=MAX_POOL)
    else:
        tls_config = None
        if tls and any(tls.values()):
            cert = (tls["tls_cert"], tls["tls_key"]) if tls.get("tls_cert") else None
            # the server is always verified: against tls_ca when given, else the system's CA bundle
            tls_config = docker.tls.TLSConfig(client_cert=cert, ca_cert=tls.get("tls_ca"), verify=True)
        if url.startswith("ssh://"):  # the system ssh client, bounded by connect_timeout (ssh.py says why)
            from console.engine import ssh
            ssh.install()
            ssh.register(url, connect_timeout)
            ssh.check(url, connect_timeout)
        options = dict(base_url=url, tls=tls_config, timeout=connect_timeout,
                       use_ssh_client=url.startswith("ssh://"), max_pool_size=MAX_POOL)
        if tls_config is not None and tls.get("tls_ca"):   # its CA, never the environment's bundle
            from console.engine import docker_compat
            client = docker_compat.pinned_ca_client(tls["tls_ca"], **options)
        else:
            client = docker.DockerClient(**options)
    api = client.api
    api.timeout = timeout
    if api.base_url.startswith("http+docker://"):
        # a local socket never goes through a proxy; requests would still read the proxy settings from the whole
        # environment at every call (a tenth of a cleanup's CPU in the profile)
        api.trust_env = False
        from console.engine import docker_compat
        docker_compat.one_pool_per_socket(api)
    if not (url or "").startswith("ssh://"):   # connects fail fast, reads may be slow
        from console.engine import docker_compat
        docker_compat.split_connect_timeout(api, connect_timeout)
    return client


def open_client(url: str | None, tls: dict | None, timeout: float) -> docker.DockerClient:
    """A client outside the cache, connecting and reading within `timeout` (the doctor's one-off checks)."""
    return make_client(url, tls, timeout, timeout)


class Hosts:
    """The hosts of this run: Host rows (`host add`) with this run's settings laid over them. Hosts from the config
    file, DEPLOYER_DOCKER_HOST or --docker-host apply to the runs that have them and are never written to the store;
    neither is their reachability, which this object keeps in memory."""

    def __init__(self, settings, timeout: float = 60.0):
        self.settings = settings
        self.timeout = timeout
        self._gateways: dict[str, Gateway] = {}
        self._lock = threading.Lock()
        # a host that just failed fails again at once for a few seconds (instead of every task waiting out its own
        # connect timeout); probes bypass this, and the first success clears it
        self.breaker = Breaker(min(5.0, float(settings.scheduler.host_timeout)), on_failure=metrics.docker_error)
        self.overlay = host_specs.overlay(settings)
        self._seen: dict[str, dict] = {}   # reachability of hosts that are not Host rows: {name: state}
        self._checked_at: dict[str, float] = {}   # when this process last noted a host's reachability (monotonic)

    def specs(self, stored: bool = True) -> dict[str, HostSpec]:
        """Every host of this run by name: the store's rows (not read with stored=False: no store to read), this
        run's settings over them, and `local` (from DOCKER_HOST or the default socket) when neither names it."""
        rows = Host.select(Host.name, Host.url, Host.is_default, Host.tls_ca, Host.tls_cert,
                           Host.tls_key, Host.address).dicts() if stored else ()
        return host_specs.merge(rows, self.overlay)

    def spec(self, name: str) -> HostSpec:
        spec = self.overlay.get(name) or self.specs().get(name)
        if spec is None:
            raise InputError(f"unknown host {name!r}; see `deployer-console host ls`")
        return spec

    def check_new(self, name: str, url: str, tls_ca=None, tls_cert=None, tls_key=None, address=None) -> tuple:
        """Refuse a host that cannot be added (bad URL, TLS files or address, a name in use); returns
        (tls_ca, tls_cert, tls_key, address) as host_specs.checked does."""
        checked = host_specs.checked(name, url, tls_ca, tls_cert, tls_key, address)
        if name in self.overlay:
            raise InputError(f"host {name} comes from {self._where(name)}; change it there")
        if name == DEFAULT or Host.get_or_none(Host.name == name):
            raise InputError(f"host {name} exists; remove it first or edit the config")
        return checked

    def try_engine(self, name: str, url: str, tls: dict, base_image: bool = False) -> tuple[str | None, str | None]:
        """Ask a would-be host's engine before it is added: a ping bounded by host_timeout, and with base_image,
        build deployer/base:busybox there when missing. Returns (why it failed or None, "built"|"present"|None)."""
        import docker.errors

        from console.engine.docker_gateway import Gateway
        timeout = float(self.settings.scheduler.host_timeout)
        try:
            client = make_client(url, tls, self.timeout if base_image else timeout, timeout)
        except docker.errors.DockerException as e:
            return one_line(e), None
        try:
            gw = Gateway(name, client)
            gw.ping(timeout=timeout, probe=True)
            if not base_image:
                return None, None
            return None, "built" if gw.ensure_base_image() else "present"
        except Exception as e:  # noqa: BLE001 - any failure means "not usable now"; the message says why
            return one_line(e), None
        finally:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a dead host's client is best effort
                pass

    def add(self, name: str, url: str, tls_ca=None, tls_cert=None, tls_key=None, default=False,
            address: str | None = None) -> Host:
        tls_ca, tls_cert, tls_key, address = self.check_new(name, url, tls_ca, tls_cert, tls_key, address)
        Host.create(name=name, url=url, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, address=address)
        if default:
            Host.update(is_default=(Host.name == name)).execute()
        with self._lock:
            self._gateways.pop(name, None)
        return Host.get(Host.name == name)

    def _where(self, name: str) -> str:
        source = self.overlay[name].source
        return {"config": f"{self.settings.config_path} ([hosts.{name}])", "env": "DEPLOYER_DOCKER_HOST",
                "flag": "--docker-host"}.get(source, source)

    def remove(self, name: str, force: bool = False, actor_name: str | None = None, store=None) -> None:
        """Remove a host, refusing while anything still depends on it (see `in_use`). With force (a dead host being
        decommissioned) only pinned services still refuse it: its deployments end (see `_let_go`) and its open
        cleanup tasks are abandoned, each with an event naming what may be left on that engine. Call inside a write
        transaction."""
        validate.host_name(name)
        if name == DEFAULT:
            row = Host.get_or_none(Host.name == DEFAULT)
            if row is None:
                raise InputError("the local host cannot be removed (it is DOCKER_HOST or the default socket)")
            # a stored `local` (older versions wrote the run's --docker-host there) gives way to DOCKER_HOST or
            # the default socket again; the name stays, so nothing that uses it is orphaned
            self._delete(row)
            return
        if name in self.overlay:
            raise InputError(f"host {name} is defined in {self._where(name)}; remove it there")
        row = Host.get_or_none(Host.name == name)
        if row is None:
            raise InputError(f"unknown host {name!r}; see `deployer-console host ls`")
        if force:
            pinned = [s.name for s in Service.select(Service.name).where(Service.host == name).order_by(Service.name)]
            if pinned:
                raise InputError(f"host {name} is in use: service(s) {', '.join(pinned)} pinned to it (service add "
                                 f"NAME --replace --host ...)")
            self._let_go(row, actor_name, store)
        else:
            why = self.in_use(name)
            if why:
                raise InputError(f"host {name} is in use: {why}")
        self._delete(row)

    def _let_go(self, row: Host, actor_name: str | None, store) -> None:
        """Decommission: every deployment still queued, deploying or serving on the host ends (queued ones are
        cancelled, the others failed), and every open cleanup task there is `abandoned` (terminal)."""
        from storage.models import CleanupTask
        why = f"host {row.name} removed by {actor_name}"
        for dep in list(Deployment.select(Deployment.id, Deployment.status).where(
                (Deployment.host == row.name) & Deployment.status.in_(D.ACTIVE | D.SERVING))):
            if dep.status == "success":
                D.move(store, dep.id, "degraded", actor_name=actor_name, message=f"Deployment {dep.id} degraded: {why}")
            D.move(store, dep.id, "cancelled" if dep.status == "queued" else "failed", actor_name=actor_name,
                   error=why, message=f"Deployment {dep.id} {'cancelled' if dep.status == 'queued' else 'failed'}: "
                                      f"{why}")
        t = now()
        tasks = (CleanupTask.select(CleanupTask.id, CleanupTask.deployment).join(Deployment)
                 .where((Deployment.host == row.name) & CleanupTask.state.in_(D.OPEN_TASK)))
        for task in list(tasks):
            D.move_task("abandoned", CleanupTask.id == task.id, finished_at=t, updated_at=t, last_error=why)
            D.event(task.deployment_id, f"Cleanup of deployment {task.deployment_id} abandoned ({why}): its "
                    f"containers, volumes and images may remain on engine {row.url}", kind="cleanup",
                    level="warning", actor_name=actor_name, host=row.name)
            metrics.cleanup_outcome("abandoned")
            notify.cleanup_abandoned(task.deployment_id, f"{why}; resources may remain on engine {row.url}")

    def _delete(self, row: Host) -> None:
        Host.delete().where(Host.name == row.name).execute()
        if row.is_default:
            Host.update(is_default=(Host.name == DEFAULT)).execute()
        with self._lock:
            gw = self._gateways.pop(row.name, None)
        if gw is not None:
            try:
                gw.client.close()
            except Exception:  # closing a dead host's client is best effort
                pass

    @staticmethod
    def in_use(name: str) -> str | None:
        """Why a host cannot go: services pinned to it, deployments queued/deploying/serving on it, or cleanup tasks
        that still have to remove something there. None when nothing depends on it."""
        from storage.models import CleanupTask
        reasons = []
        pinned = [s.name for s in Service.select(Service.name).where(Service.host == name).order_by(Service.name)]
        if pinned:
            reasons.append(f"service(s) {', '.join(pinned)} pinned to it (service add NAME --replace --host ...)")
        active = [d.id for d in Deployment.select(Deployment.id).where(
            (Deployment.host == name) & (Deployment.status.in_(D.ACTIVE | D.SERVING)))]
        if active:
            reasons.append(f"{len(active)} active or serving deployment(s) ({', '.join(active[:5])})")
        tasks = (CleanupTask.select(CleanupTask.id).join(Deployment)
                 .where((Deployment.host == name) & (CleanupTask.state.in_(D.QUEUED_TASK))).count())
        if tasks:
            reasons.append(f"{tasks} cleanup task(s) not done yet (host rm {name} --force abandons them)")
        return "; ".join(reasons) or None

    def default_name(self) -> str:
        return next((n for n, s in self.specs().items() if s.is_default), DEFAULT)

    def names(self) -> list[str]:
        return list(self.specs())

    def gateway(self, name: str | None = None) -> Gateway:
        import docker.errors

        from console.engine.docker_gateway import Gateway
        name = name or self.default_name()
        with self._lock:
            gw = self._gateways.get(name)
            if gw is not None:
                return gw
        row = self.spec(name)
        url = row.url or None
        self.breaker.check(name)
        try:
            client = make_client(url, {"tls_ca": row.tls_ca, "tls_cert": row.tls_cert, "tls_key": row.tls_key},
                             self.timeout, float(self.settings.scheduler.host_timeout))
        except docker.errors.DockerException as e:
            self.breaker.trip(name, str(e))
            raise EngineUnavailable(f"Docker host {name} ({url or 'from environment'}) unreachable: {e}") from e
        gw = Gateway(name, client, breaker=self.breaker, publish_address=host_specs.publish_address(row),
                     local_loopback=host_specs.on_this_machine(row))
        with self._lock:
            self._gateways.setdefault(name, gw)
            return self._gateways[name]

    @property
    def breaker_s(self) -> float:
        return self.breaker.seconds

    @breaker_s.setter
    def breaker_s(self, seconds: float) -> None:
        self.breaker.seconds = seconds

    def probe(self, timeout: float | None = None, names=None) -> dict[str, str | None]:
        """Ping every host (or `names`) in parallel, bounded by the timeout as a whole (and docker_ping.GRACE_S).
        Returns {name: None if up else error}; see `record` to note it."""
        specs = self.specs()   # read here: a worker thread would open a store connection of its own to read them
        names = list(specs) if names is None else list(names)
        timeout = timeout or self.settings.scheduler.host_timeout

        def ping(name) -> str | None:
            try:
                self.breaker.clear(name)  # a probe always asks the engine itself
                if not self._ping_socket(specs.get(name) or self.spec(name), timeout):
                    # the ping itself is bounded too (a host that accepts but never answers)
                    self.gateway(name).ping(timeout=timeout, probe=True)
                return None
            except Exception as e:  # any failure means "down" for the status bar; the message says why
                return one_line(e, 200)

        from console.engine.docker_ping import GRACE_S
        answers = at_once(ping, names, timeout + GRACE_S, default=f"no answer within {timeout:.0f} s", name="probe")
        return dict(zip(names, answers, strict=True))

    def _ping_socket(self, spec: HostSpec, timeout: float) -> bool:
        """Ping an engine on a local unix socket without docker-py (docker_ping.py): True when it answered; False
        when the engine is reached another way (the caller asks docker-py). A failure is what making its client
        would have been: the breaker trips, the error is counted, EngineUnavailable says why."""
        from console.engine import docker_ping
        name = spec.name
        path = None if spec.tls_ca or spec.tls_cert else docker_ping.socket_path(spec.url or None)
        if path is None:
            return False
        try:
            docker_ping.ping(path, timeout)
        except docker_ping.PingFailed as e:
            if not e.connected:
                self.breaker.trip(name, str(e))
            raise EngineUnavailable(f"Docker host {name} ({spec.url or 'from environment'}) unreachable: {e}") from e
        self.breaker.clear(name)
        return True

    def require(self, names, timeout: float | None = None) -> dict[str, str]:
        """Probe the hosts a command needs. Raises EngineUnavailable (one line naming them) when none of them
        answers; returns {name: error} of those that are down (empty when all answer)."""
        names = sorted(set(names))
        if not names:
            return {}
        down = {n: e for n, e in self.probe(timeout, names).items() if e is not None}
        if down and len(down) == len(names):
            specs = self.specs()
            detail = "; ".join(f"{n} ({specs[n].url or 'from environment'}): {e}" if n in specs else f"{n}: {e}"
                               for n, e in down.items())
            raise EngineUnavailable(f"Docker host{'s' if len(down) > 1 else ''} not answering: {detail}")
        return down

    def reachability(self) -> dict[str, dict]:
        """{name: {reachable, last_error, last_seen_at}} of every host: Host rows keep it in the store, the others
        (and every host of a read-only run) in this object."""
        stored = {h.name: {"reachable": h.reachable, "last_error": h.last_error, "last_seen_at": h.last_seen_at}
                  for h in Host.select(Host.name, Host.reachable, Host.last_error, Host.last_seen_at)}
        blank = {"reachable": None, "last_error": None, "last_seen_at": None}
        return {n: {**(stored.get(n, blank) if s.source == "store" else blank), **self._seen.get(n, {})}
                for n, s in self.specs().items()}

    def noted(self) -> tuple:
        """What this object holds in memory about reachability, hashable: it moves when a host held here goes up or
        down (the Host rows' own changes are the store's)."""
        return tuple(sorted((n, v.get("reachable"), v.get("last_error")) for n, v in dict(self._seen).items()))

    def record(self, results: dict[str, str | None]) -> list[tuple[str, bool]]:
        """Note reachability (in the store for Host rows, unless read-only; in memory otherwise). Returns the hosts
        whose state is news: (name, up) for a host that went down, or came back after being down."""
        before = self.reachability()
        specs = self.specs()
        news = []
        for name, error in results.items():
            if name not in before:
                continue
            up = error is None
            was = before[name]["reachable"]
            if host_specs.is_news(was, up):
                news.append((name, up))
            state = {"reachable": up, "last_error": error, **({"last_seen_at": now()} if up else {})}
            if specs[name].source == "store" and not self.settings.read_only:
                Host.update(**state).where(Host.name == name).execute()
            else:
                self._seen[name] = {**self._seen.get(name, {}), **state}
            self._checked_at[name] = time.monotonic()
        return news

    def stale(self, max_age: float) -> list[str]:
        """The hosts whose reachability only this process can know (not Host rows, which the leader's
        reconciliation keeps) and that it has not checked within max_age seconds."""
        t = time.monotonic()
        return [n for n, s in self.specs().items()
                if s.source != "store" and t - self._checked_at.get(n, float("-inf")) > max_age]

    def rows(self) -> list[dict]:
        """Every host as `host ls`, `status` and the status bar show it."""
        states = self.reachability()
        return [{**host_specs.row(s), **states[n]} for n, s in self.specs().items()]

    def close(self) -> None:
        with self._lock:
            for gw in self._gateways.values():
                try:
                    gw.client.close()
                except Exception:
                    pass
            self._gateways.clear()


# ---- operator actions (CLI `host add|ls|rm`, the console): read-only guard, one write transaction, an audit event
def add_host(engine, name: str, url: str, tls_ca=None, tls_cert=None, tls_key=None, default=False,
             base_image: bool = False, force: bool = False, address: str | None = None) -> dict:
    """All or nothing: the engine at `url` is asked first (and with base_image, gets deployer/base:busybox); when it
    does not answer (or the build fails) nothing is added and EngineUnavailable says why. With force the host is
    added all the same, marked unreachable; the row's `problem` says why."""
    with engine.operator_action("host add", name, host=name) as act:
        act.known = bool(validate.host_name(name))
        *paths, address = engine.hosts.check_new(name, url, tls_ca, tls_cert, tls_key, address)
        tls = dict(zip(("tls_ca", "tls_cert", "tls_key"), paths, strict=True))
        problem, built = engine.hosts.try_engine(name, url, tls, base_image)  # outside any transaction
        if problem and not force:
            raise EngineUnavailable(f"host {name} not added: {url} {problem} (--force adds it all the same)")
        with engine.store.write():
            engine.hosts.add(name, url, default=default, address=address, **tls)
            if problem:  # noted as reachability is, with its event
                engine.hosts.record({name: problem})
                host_event(name, problem)
            act.ok(f"Docker host {name} added ({url}{', default' if default else ''}"
                   f"{f', containers published on {address}' if address else ''}"
                   f"{f', unreachable: {problem}' if problem else ''}) by {act.actor}")
    row = next(r for r in engine.hosts.rows() if r["name"] == name)
    return row | {"problem": problem} | ({"base_image": built} if base_image else {})


def remove_host(engine, name: str, force: bool = False) -> None:
    with engine.operator_action("host rm", name, host=name) as act, engine.store.write():
        act.known = validate.host_name(name) in engine.hosts.specs()
        engine.hosts.remove(name, force=force, actor_name=act.actor, store=engine.store)
        act.ok(f"Docker host {name} removed{' (forced)' if force else ''} by {act.actor}")


def list_hosts(ctx, probe: bool = True, timeout: float | None = None) -> list[dict]:
    """Every host with where it comes from, probed live in parallel (each bounded by host_timeout) unless
    probe=False. A probe's result is noted (see Hosts.record) and a change is an event of kind `host`, as
    reconciliation does; a read-only process writes nothing. `ctx`: the Context (store, settings, hosts)."""
    if probe:
        note_reachability(ctx, ctx.hosts.probe(timeout))
    return ctx.hosts.rows()


def note_reachability(ctx, results: dict[str, str | None]) -> None:
    """Record probe results; a host going down or coming back is an event (not in a read-only process)."""
    if ctx.settings.read_only:
        ctx.hosts.record(results)
        return
    with ctx.store.write():
        for name, up in ctx.hosts.record(results):
            notify.host_changed(name, up, results.get(name))
            host_event(name, None if up else results.get(name))


def host_event(name: str, error: str | None) -> None:
    """The `host` event of a host that became unreachable (`error`) or reachable again (None). Call inside a write
    transaction."""
    D.event(None, f"Docker host {name} is unreachable: {error}" if error else f"Docker host {name} is reachable again",
            kind="host", level="warning" if error else "info", host=name)
