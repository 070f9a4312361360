"""Where each Docker host of a run is: the `local` default, the store's Host rows (`host add`) and this run's own
([hosts.NAME] in the config, DEPLOYER_DOCKER_HOST, --docker-host) laid over them. Standard library only: hosts.py
builds its clients from these, and the CLI's quick `status` (console/quick.py) lists and pings the same hosts."""
import os
from collections import namedtuple

from console.engine.errors import InputError

DEFAULT = "local"


LOOPBACK = "127.0.0.1"


class HostSpec(namedtuple("HostSpec", "name url source is_default tls_ca tls_cert tls_key address",
                          defaults=(False, None, None, None, None))):
    """Where one Docker host is (`url`: "" for DOCKER_HOST or docker-py's default socket; TLS files), the `address` a
    proxy reaches its containers at (they publish their port on it; None: 127.0.0.1, a proxy on the same machine) and
    where that was said (`source`): `store` (`host add`), `config` ([hosts.NAME]), `env` (DEPLOYER_DOCKER_HOST), `flag`
    (--docker-host) or `default`. A named tuple, not a dataclass: `status` on the CLI's quick path builds these, and
    defining a dataclass (or importing typing) costs that path more than its answer."""
    __slots__ = ()


def checked_address(name: str, address: str | None) -> str | None:
    """A host's publish address: an IP address of that machine (Docker binds the containers' ports to it), or None."""
    if address is None or address == "":
        return None
    import ipaddress  # here: the quick path never checks an address
    try:
        ip = ipaddress.ip_address(str(address).strip("[]"))
    except ValueError:
        raise InputError(f"address {address!r} of host {name} is not an IP address (the one a proxy reaches the "
                         f"host's containers at)") from None
    if ip.is_unspecified:
        raise InputError(f"address {address} of host {name} would publish its containers on every interface; give "
                         f"the one address a proxy reaches them at")
    return str(ip)


def publish_address(spec: "HostSpec") -> str:
    return spec.address or LOOPBACK


def row(spec: "HostSpec") -> dict:
    """Where a host is, as `host ls`, `status` and the status bar show it (its reachability is added by the caller)."""
    return {"name": spec.name, "url": spec.url or "(from environment)", "default": spec.is_default,
            "source": spec.source, "tls": bool(spec.tls_ca or spec.tls_cert), "address": publish_address(spec)}


def on_this_machine(spec: "HostSpec") -> bool:
    """Whether the engine's loopback is this machine's (so a proxy here reaches a port published on it): a local
    socket, or tcp:// or ssh:// to localhost. A host reached by name or address over the network is another machine."""
    url = spec.url or ""
    if not url or url.startswith(("unix://", "npipe://")):
        return True
    from urllib.parse import urlsplit
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host == "localhost" or host.startswith("127.") or host == "::1"


def checked(name: str, url: str, tls_ca=None, tls_cert=None, tls_key=None, address=None) -> tuple:
    """Validate a host's URL, TLS files and publish address; returns (tls_ca, tls_cert, tls_key, address): the TLS
    paths made absolute, the address as checked_address says it (HostSpec's last four fields, in order)."""
    from console.engine import validate  # here: its patterns are compiled at import, and most runs name no host
    validate.host_name(name)
    if not url or url.split("://")[0] not in ("unix", "tcp", "ssh", "npipe", "http", "https"):
        raise InputError(f"invalid Docker URL {url!r} for host {name}: unix://, tcp:// or ssh://")
    for what, path in (("tls_ca", tls_ca), ("tls_cert", tls_cert), ("tls_key", tls_key)):
        if path and not os.path.isfile(os.path.expanduser(path)):
            raise InputError(f"{what} {path} of host {name} is not a file")
    if bool(tls_cert) != bool(tls_key):
        raise InputError(f"host {name}: tls_cert and tls_key go together")
    paths = tuple(os.path.abspath(os.path.expanduser(p)) if p else None for p in (tls_ca, tls_cert, tls_key))
    return (*paths, checked_address(name, address))


def overlay(settings) -> dict[str, HostSpec]:
    """This run's own hosts: --docker-host / DEPLOYER_DOCKER_HOST for `local`, and the config's [hosts.NAME]."""
    out = {}
    if settings.docker_host is not None:
        out[DEFAULT] = HostSpec(DEFAULT, settings.docker_host, settings.origins.get("docker_host", "flag"))
    for name, table in (settings.hosts or {}).items():
        where = checked(name, table.get("url", ""), table.get("tls_ca"), table.get("tls_cert"), table.get("tls_key"),
                        table.get("address"))
        out[name] = HostSpec(name, table["url"], "config", bool(table.get("default", False)), *where)
    return out


def merge(stored, overlay: dict[str, HostSpec]) -> dict[str, HostSpec]:
    """Every host by name: the store's rows (dicts of Host's columns), this run's overlay over them, and `local` (from
    DOCKER_HOST or the default socket) when neither names it; exactly one is the default."""
    stored = {r["name"]: HostSpec(r["name"], r["url"], "store", bool(r["is_default"]), r["tls_ca"], r["tls_cert"],
                                  r["tls_key"], r.get("address")) for r in stored}
    out = {DEFAULT: HostSpec(DEFAULT, "", "default"), **stored, **overlay}
    default = (next((n for n, s in overlay.items() if s.is_default), None)
               or next((n for n, s in stored.items() if s.is_default), None) or DEFAULT)
    return {n: s._replace(is_default=(n == default)) for n, s in sorted(out.items())}


def is_news(was: bool | None, up: bool) -> bool:
    """Whether a host's new reachability is an event: it went down, or came back after being down (the first sight
    of a healthy host is not news)."""
    return was != up and not (up and was is None)
