"""Routers: who sends a service's requests to its serving container. One small interface, two backends chosen by
`[routes] provider`:

- `traefik-file` (the default): `routes/<service>.yml` for Traefik's file provider, written atomically. The console
  runs no proxy itself, so the health check through the proxy is not possible: `proxy_check` is None.
- `caddy`: routes set through Caddy's admin API. The console owns one HTTP server named `deployer` (created when
  missing, listening on `[routes] listen`, automatic HTTPS off) with one route per service, `@id` `deployer-<service>`,
  replaced in one PATCH (Caddy swaps its config atomically: a request goes to the old or the new upstream, never
  nowhere). Every route sets the response header X-Deployer-Deployment, so a check through the proxy knows which
  deployment answered, and the route says which deployment it serves.

A route matches the service's route host when it has one, else the path prefix `/<service>` (not stripped).
"""
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from console.engine.errors import DeployerError
from console.engine.paths import atomic_write

DEPLOYMENT_HEADER = "X-Deployer-Deployment"
SERVER = "deployer"
ADMIN_TIMEOUT_S = 5.0


class RouterUnavailable(DeployerError):
    """The proxy's admin API did not answer or refused a change."""


class NoRouteThere(DeployerError):
    """The container listens where no proxy here reaches it: the loopback of another machine."""


@dataclass(frozen=True)
class Route:
    service: str
    deployment_id: str
    upstream: str              # HOST:PORT the proxy dials: the container's published port on its host's address
    host: str | None = None    # the service's route host; None routes by the path prefix /<service>

    @property
    def prefix(self) -> str:
        return f"/{self.service}"


def route_for(gw, svc, deployment_id: str, info) -> Route:
    """The route to this deployment's container (`info` from `Gateway.find_ours`, never a stranger's): the address and
    port it is published on (`-p ADDRESS::PORT`, ADDRESS its host's `address`, 127.0.0.1 by default), else its name
    on the Docker network."""
    details = (gw.inspect(info.id) if info else None) or {}
    bindings = ((details.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{svc.port}/tcp") or []
    if bindings:
        ip = bindings[0].get("HostIp") or ""
        if ip in ("", "0.0.0.0", "::"):   # published on every interface (not by this console): its host's address
            ip = gw.publish_address
        if (ip.startswith("127.") or ip == "::1") and not gw.local_loopback:
            raise NoRouteThere(f"container {info.name} on host {gw.host} listens on that machine's loopback "
                               f"({ip}), which no proxy here reaches: give host {gw.host} the address the proxy "
                               f"reaches it at ([hosts.{gw.host}] address, or `host add {gw.host} URL --address IP`) "
                               f"and deploy again")
        upstream = f"[{ip}]:{bindings[0]['HostPort']}" if ":" in ip else f"{ip}:{bindings[0]['HostPort']}"
    else:
        upstream = f"{info.name if info else svc.name}:{svc.port}"
    return Route(svc.name, deployment_id, upstream, svc.route_host or None)


class TraefikFile:
    """`routes/<service>.yml` for Traefik's file provider (watch the directory `<data>/routes`)."""

    name = "traefik-file"
    proxy_check = None

    def __init__(self, paths):
        self.paths = paths

    def text(self, route: Route) -> str:
        rule = f"Host(`{route.host}`)" if route.host else f"PathPrefix(`{route.prefix}`)"
        return (f"# written by deployer-console for deployment {route.deployment_id}\n"
                f"http:\n  routers:\n    {route.service}:\n      rule: \"{rule}\"\n      service: {route.service}\n"
                f"  services:\n    {route.service}:\n      loadBalancer:\n        servers:\n"
                f"          - url: \"http://{route.upstream}\"\n")

    def apply(self, route: Route) -> str:
        path, text = self.paths.route(route.service), self.text(route)
        if not (path.exists() and path.read_text() == text):
            atomic_write(path, text)
        return f"route file {path.name} -> {route.deployment_id}"

    def remove(self, service: str) -> None:
        self.paths.route(service).unlink(missing_ok=True)

    def routed(self, services) -> dict[str, str | None]:
        """{service: the deployment its route file was written for, or None when there is none}."""
        out = {}
        for service in services:
            try:
                first = self.paths.route(service).read_text().split("\n", 1)[0]
            except FileNotFoundError:
                out[service] = None
                continue
            prefix = "# written by deployer-console for deployment "
            out[service] = (first[len(prefix):].strip() or None) if first.startswith(prefix) else None
        return out


class Caddy:
    """Routes through Caddy's admin API (`caddy_admin`), in the server `deployer` listening on `listen`."""

    name = "caddy"

    def __init__(self, admin: str, listen: str):
        self.admin = admin.rstrip("/")
        self.listen = listen

    # ---- admin API
    def _call(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.admin + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=ADMIN_TIMEOUT_S) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace").strip()
            raise RouterUnavailable(f"caddy {method} {path}: HTTP {e.code} {detail[:200]}") from None
        except OSError as e:
            raise RouterUnavailable(f"caddy admin API at {self.admin} does not answer: {e}") from None
        return json.loads(raw) if raw.strip() else None

    def _server(self, routes: list | None = None) -> dict:
        listen = self.listen if ":" in self.listen else f":{self.listen}"
        return {"listen": [listen], "automatic_https": {"disable": True}, "routes": list(routes or [])}

    def ensure_server(self, routes: list | None = None) -> bool:
        """Create the `deployer` server (and the http app above it) when missing, with `routes` in it: one config
        load, so no request meets the server without its routes (Caddy answers those with an empty 200). Another
        server is left alone. True when it was created."""
        config = self._call("GET", "/config/") or {}
        path, node = [], config
        wanted = ["apps", "http", "servers", SERVER]
        for key in wanted:
            if not isinstance(node, dict) or key not in node or node[key] is None:
                break
            path.append(key)
            node = node[key]
        if len(path) == len(wanted):
            return False
        value = self._server(routes)
        for key in reversed(wanted[len(path) + 1:]):
            value = {key: value}
        self._call("POST", "/config/" + "/".join(path + [wanted[len(path)]]), value)
        return True

    # ---- the router interface
    def route_json(self, route: Route) -> dict:
        match = {"host": [route.host]} if route.host else {"path": [route.prefix, route.prefix + "/*"]}
        return {"@id": f"deployer-{route.service}", "match": [match], "terminal": True,
                "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": route.upstream}],
                            "headers": {"response": {"set": {DEPLOYMENT_HEADER: [route.deployment_id]}}}}]}

    def apply(self, route: Route) -> str:
        """Replace the service's route in one PATCH (append it when it is new)."""
        body = self.route_json(route)
        try:
            self._call("PATCH", f"/id/deployer-{route.service}", body)
        except RouterUnavailable as e:
            if "unknown object ID" not in str(e):
                raise
            if not self.ensure_server([body]):   # a new server comes with its route: one config load
                self._call("POST", f"/config/apps/http/servers/{SERVER}/routes", body)
        return f"caddy route deployer-{route.service} -> {route.deployment_id} ({route.upstream})"

    def remove(self, service: str) -> None:
        try:
            self._call("DELETE", f"/id/deployer-{service}")
        except RouterUnavailable as e:
            if "unknown object ID" not in str(e):
                raise

    def routed(self, services) -> dict[str, str | None]:
        """{service: the deployment its live route serves, or None when Caddy has no route for it}: one request."""
        config = self._call("GET", f"/config/apps/http/servers/{SERVER}/routes") if self._has_server() else None
        live = {}
        for r in config or []:
            rid = str(r.get("@id") or "")
            if rid.startswith("deployer-"):
                live[rid.removeprefix("deployer-")] = _route_deployment(r)
        return {service: live.get(service) for service in services}

    def _has_server(self) -> bool:
        config = self._call("GET", "/config/apps") or {}
        return bool(((config.get("http") or {}).get("servers") or {}).get(SERVER))

    def proxy_check(self, route: Route, health_path: str) -> tuple[bool, str]:
        """One request through Caddy as a client would send it: 2xx/3xx from this deployment's container."""
        host, _, port = self.listen.rpartition(":")
        host = "127.0.0.1" if host in ("", "0.0.0.0", "[::]", "::") else host.strip("[]")
        path = health_path if route.host else route.prefix + (health_path if health_path != "/" else "")
        req = urllib.request.Request(f"http://{host}:{port}{path}", headers={"Host": route.host} if route.host else {})
        try:
            with urllib.request.urlopen(req, timeout=3) as r:
                status, served = r.status, r.headers.get(DEPLOYMENT_HEADER)
        except urllib.error.HTTPError as e:
            status, served = e.code, e.headers.get(DEPLOYMENT_HEADER)
        except OSError as e:
            return False, f"no answer through the proxy: {e}"
        if served != route.deployment_id:
            return False, f"the proxy answered HTTP {status} from {served or 'no deployment of ours'}"
        if not 200 <= status < 400:
            return False, f"HTTP {status} through the proxy"
        return True, f"HTTP {path} answered {status} through the proxy"


def wait_through_proxy(router, route: Route, health_path: str, timeout: float, check=lambda: None,
                       sleep=time.sleep) -> str:
    """Until the proxy answers 2xx/3xx on the health path from this deployment (bounded by `timeout`; `check()` is
    called every round so a cancel stops the wait)."""
    deadline = time.monotonic() + timeout
    while True:
        check()
        ok, detail = router.proxy_check(route, health_path)
        if ok:
            return detail
        if time.monotonic() > deadline:
            raise RuntimeError(f"health check through the proxy timed out after {timeout:.0f} s ({detail})")
        sleep(0.25)


def _route_deployment(route: dict) -> str | None:
    for handler in route.get("handle") or []:
        served = ((((handler.get("headers") or {}).get("response") or {}).get("set") or {})
                  .get(DEPLOYMENT_HEADER) or [None])
        if served[0]:
            return served[0]
    return None


def make(settings, paths):
    """The router `[routes] provider` names."""
    if settings.routes.provider == "caddy":
        return Caddy(settings.routes.caddy_admin, settings.routes.listen)
    return TraefikFile(paths)
