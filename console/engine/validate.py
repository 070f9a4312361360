"""Allow-lists for everything an operator types that reaches a label filter, a path or a container name."""
import re

from console.engine.errors import InputError
from storage.statuses import PHASES, STATUSES  # noqa: F401 (validate.PHASES, validate.STATUSES)

# a service name is a component of a Docker image reference (`deployer/<service>:<id>`) and of a container name
# (`deployer-<service>-<id>`): Docker's component grammar `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`, narrowed to '-'
# as the only separator (it is also a file name under services/ and routes/); `web-` or `a--` could never be built
SERVICE_RE = re.compile(r"^(?=.{1,40}$)[a-z][a-z0-9]*(?:-+[a-z0-9]+)*$")
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
DEPLOYMENT_RE = re.compile(r"^[0-9a-f]{4,12}$")   # a full id is 12 hex digits; 4+ is accepted as a unique prefix
HOST_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
VOLUME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SHELL_RE = re.compile(r"^[A-Za-z0-9_./+-]{1,100}$")   # one program, run without a shell around it
HEALTH_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/?=&%-]{0,200}$")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
ROUTE_HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def _check(kind: str, value, pattern: re.Pattern, hint: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InputError(f"invalid {kind} {value!r}: {hint}")
    return value


def service_name(value) -> str:
    return _check("service name", value, SERVICE_RE,
                  "use 1-40 of a-z, 0-9 and '-', starting with a letter and not ending with '-'")


def project_name(value) -> str:
    return _check("project name", value, PROJECT_RE, "use 1-40 of a-z, 0-9 and '-', starting with a letter")


def deployment_id(value) -> str:
    return _check("deployment id", value, DEPLOYMENT_RE, "a deployment id is 4-12 hex digits (a prefix is enough)")


def host_name(value) -> str:
    return _check("host name", value, HOST_RE, "use 1-40 of a-z, 0-9 and '-', starting with a letter")


def phase(value) -> str:
    if not isinstance(value, str) or value.upper() not in PHASES:
        raise InputError(f"invalid phase {value!r}: one of {', '.join(PHASES)}")
    return value.upper()


def status(value) -> str:
    if value not in STATUSES:
        raise InputError(f"invalid status {value!r}: one of {', '.join(STATUSES)}")
    return value


def port(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if not 1 <= number <= 65535:
        raise InputError(f"invalid port {value!r}: 1-65535")
    return number


def health_path(value) -> str:
    return _check("health path", value, HEALTH_PATH_RE, "an absolute URL path such as /healthz")


def shell(value) -> str:
    return _check("shell", value, SHELL_RE, "one program such as sh, bash or /bin/ash (no spaces)")


def route_host(value) -> str:
    return _check("route host", value, ROUTE_HOST_RE, "a DNS name such as app.example.com")


def volume_spec(value) -> dict:
    """NAME:/path -> {"name", "path"}."""
    name, sep, path = (value or "").partition(":")
    if not sep or not VOLUME_RE.fullmatch(name) or not path.startswith("/") or ".." in path.split("/") \
            or ":" in path or len(path) > 200:
        raise InputError(f"invalid volume {value!r}: NAME:/absolute/path, NAME of a-z, 0-9, '_' and '-'")
    return {"name": name, "path": path}


def volume_specs(volumes, shared_volumes=()) -> tuple[list[dict], list[dict]]:
    """A service's per-deployment and shared volumes: each NAME names one volume and each path takes one mount
    (Docker refuses a second mount at one path; a repeated name would silently mount one volume twice)."""
    vols, shared = [volume_spec(v) for v in volumes], [volume_spec(v) for v in shared_volumes]
    names, paths = set(), set()
    for spec in vols + shared:
        path = "/" + "/".join(part for part in spec["path"].split("/") if part not in ("", "."))
        if spec["name"] in names:
            raise InputError(f"volume name {spec['name']!r} is given twice: one NAME per volume")
        if path in paths:
            raise InputError(f"two volumes mount at {path}: one volume per path")
        names.add(spec["name"])
        paths.add(path)
    return vols, shared


def env_map(values) -> dict[str, str]:
    """KEY=VALUE pairs, each KEY once (a repeated key would silently keep only its last value)."""
    env: dict[str, str] = {}
    for value in values:
        key, val = env_pair(value)
        if key in env:
            raise InputError(f"env key {key!r} is given twice: one value per key")  # never the values: secrets
        env[key] = val
    return env


def env_pair(value) -> tuple[str, str]:
    key, sep, val = (value or "").partition("=")
    if not sep or not ENV_KEY_RE.fullmatch(key) or "\x00" in val:
        # the value may be a secret: the error names the key only
        shown = f"{key[:64]!r}=***" if sep else "without '='"
        raise InputError(f"invalid env {shown}: KEY=VALUE with KEY of letters, digits and '_'")
    return key, val


EVENT_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,29}$")
SINCE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def event_kind(value) -> str:
    return _check("event kind", value, EVENT_KIND_RE, "e.g. deployment, build, cleanup, reconcile, rollback, audit, "
                                                      "host")


def since(value: str, at: float) -> float:
    """`--since`: an age (30s, 10m, 2h, 1d) before `at`, or an ISO 8601 time (local time unless it says its zone);
    returns epoch seconds."""
    import datetime
    text = str(value).strip()
    m = SINCE_RE.fullmatch(text)
    if m:
        return at - float(m.group(1)) * SINCE_UNITS[m.group(2)]
    try:
        t = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"invalid --since {value!r}: an age like 30s, 10m, 2h, 1d or a time like "
                         f"2026-05-01T12:00") from None
    return t.timestamp()  # a naive time is local time, as the operator's clock shows it


def deployment_filters(state=None, service=None, host=None) -> None:
    """The filters of a deployments read (`ls`, the console); an empty --service '' is bad input, not "no filter"."""
    if state:
        status(state)
    if service is not None:
        service_name(service)
    if host is not None:
        host_name(host)
