"""Settings: defaults, then `<data dir>/config.toml` (or DEPLOYER_CONFIG), then DEPLOYER_* environment variables,
then command-line flags. The data directory comes from platformdirs unless --data-dir/DEPLOYER_DATA_DIR says."""
import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from console.engine.errors import InputError

PHASE_DEADLINES = {"PULLING_SOURCE": 300, "BUILDING": 900, "COPYING_FILES": 300, "CREATING_SYMLINKS": 300,
                   "UPDATING_ROUTES": 300, "HEALTH_CHECK": 300}
# what `[notify] events` chooses among (all by default); notify.py sends them
NOTIFY_EVENTS = ("deployment-failed", "cleanup-failing", "cleanup-abandoned", "host-down", "host-back", "drift",
                 "rollback-failed", "zombie-resumed", "zombie-failed")
METRICS_LISTEN = "127.0.0.1:9464"


@dataclass
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir("deployer-console")))
    db: str | None = None
    docker_host: str | None = None
    read_only: bool = False
    # cleanup and retention
    cleanup_delay: float = 0.0
    keep_failed: int = 0
    keep_releases: int = 5          # superseded releases kept per service as rollback targets; older ones are cleaned
    cleanup_backoff_max: float = 60.0
    archive_max_mb: float = 1024.0
    archive_max_age_days: float = 30.0
    backup_keep_days: float = 30.0      # a volume backup is kept this long whatever archive_max_mb says
    # pipeline
    health_timeout: float = 60.0
    heartbeat_interval: float = 2.0
    phase_deadlines: dict = field(default_factory=lambda: dict(PHASE_DEADLINES))
    # scheduler and reconciliation
    workers: int = 2
    reconcile_interval: float = 15.0
    retention_interval: float = 3600.0
    cleanup_interval: float = 1.0
    dispatch_interval: float = 1.0
    zombie_after: float = 60.0
    zombie_policy: str = "resume"
    max_resume_attempts: int = 3
    orphan_grace: float = 120.0
    host_timeout: float = 10.0
    lease_duration: float = 15.0
    lease_renew_deadline: float = 10.0
    lease_retry: float = 2.0
    # [metrics]: Prometheus text format on HOST:PORT ("" = off)
    metrics_listen: str = METRICS_LISTEN
    # [notify]: apprise URLs, the events sent, the window in which a repeat is folded into the first
    notify_urls: list = field(default_factory=list)
    notify_events: list = field(default_factory=lambda: list(NOTIFY_EVENTS))
    notify_fold_seconds: float = 300.0
    notify_cleanup_failing_after: int = 3     # a cleanup is "failing" from this many failed attempts on
    # [routes]: who routes requests to the serving container: "traefik-file" (routes/<service>.yml for Traefik's file
    # provider) or "caddy" (the admin API at caddy_admin; one server named `deployer` listening on `listen`); a
    # superseded container is stopped drain_seconds after the new one serves, so requests in flight finish
    routes_provider: str = "traefik-file"
    routes_caddy_admin: str = "http://127.0.0.1:2019"
    routes_listen: str = ":80"
    routes_drain_seconds: float = 5.0
    # console
    poll_interval: float = 1.0
    keys: dict = field(default_factory=dict)
    hosts: dict = field(default_factory=dict)
    # where a setting came from when it matters to the operator ("config", "env" or "flag"): `host ls` shows it
    origins: dict = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        return self.db or str(self.data_dir / "deployer.db")

    @property
    def config_path(self) -> Path:
        return Path(os.environ.get("DEPLOYER_CONFIG") or self.data_dir / "config.toml")


ENV_PREFIX = "DEPLOYER_"
# 0 or less would make the archive budget delete every backup, or keep none: refused, not guessed at
POSITIVE = ("archive_max_mb", "backup_keep_days")
_CASTS = {float: float, int: int, bool: lambda v: str(v).lower() in ("1", "true", "yes", "on"), str: str}


def _cast(name: str, value):
    f = {f.name: f for f in dataclasses.fields(Settings)}[name]
    # f.type is the class itself (float) or, for unions, a string ('str | None'): accept both
    kind = {"float": float, "int": int, "bool": bool, "str": str, "str | None": str, "list": list}.get(
        getattr(f.type, "__name__", str(f.type)), None)
    if kind is list:  # a TOML array, or an environment string of items separated by commas or spaces
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise InputError(f"invalid setting {name}={value!r}: expected a list of strings")
        return list(items)
    if kind is None:
        return value
    try:
        return _CASTS[kind](value)
    except (TypeError, ValueError):
        raise InputError(f"invalid setting {name}={value!r}: expected {kind.__name__}") from None


def load(data_dir=None, db=None, docker_host=None, read_only=False, **overrides) -> Settings:
    data_dir = data_dir or os.environ.get("DEPLOYER_DATA_DIR")
    settings = Settings(**({"data_dir": Path(data_dir).expanduser()} if data_dir else {}))
    path = settings.config_path
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError) as e:
            raise InputError(f"cannot read config {path}: {e}") from None
        _apply(settings, raw, str(path))
    names = {f.name for f in dataclasses.fields(Settings)} - {"data_dir", "keys", "hosts", "phase_deadlines", "origins"}
    for name in names:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None:
            setattr(settings, name, _cast(name, env))
            settings.origins[name] = "env"
    for phase in PHASE_DEADLINES:
        env = os.environ.get(f"{ENV_PREFIX}DEADLINE_{phase}")
        if env is not None:
            settings.phase_deadlines[phase] = float(env)
    if db:
        settings.db = db
    if docker_host:
        settings.docker_host = docker_host
        settings.origins["docker_host"] = "flag"
    if read_only or os.environ.get("DEPLOYER_READ_ONLY", "").lower() in ("1", "true", "yes"):
        settings.read_only = True
    for key, value in overrides.items():
        setattr(settings, key, value)
    if settings.zombie_policy not in ("resume", "fail"):
        raise InputError(f"invalid zombie_policy {settings.zombie_policy!r}: resume or fail")
    for name in POSITIVE:
        if not getattr(settings, name) > 0:
            raise InputError(f"invalid setting {name}={getattr(settings, name)!r}: must be greater than 0")
    if isinstance(settings.keep_releases, bool) or not isinstance(settings.keep_releases, int) or \
            settings.keep_releases < 1:
        raise InputError(f"invalid keep_releases {settings.keep_releases!r}: a whole number of at least 1 (the "
                         f"previous release is the default rollback target)")
    listen_address(settings.metrics_listen)
    unknown = sorted(set(settings.notify_events) - set(NOTIFY_EVENTS))
    if unknown:
        raise InputError(f"invalid [notify] events {', '.join(unknown)}: choose among {', '.join(NOTIFY_EVENTS)}")
    if settings.notify_fold_seconds < 0 or settings.notify_cleanup_failing_after < 1:
        raise InputError("invalid [notify] settings: fold_seconds must be 0 or more, cleanup_failing_after 1 or more")
    _check_routes(settings)
    return settings


ROUTE_PROVIDERS = ("traefik-file", "caddy")


def _check_routes(settings: Settings) -> None:
    if settings.routes_provider not in ROUTE_PROVIDERS:
        raise InputError(f"invalid [routes] provider {settings.routes_provider!r}: {' or '.join(ROUTE_PROVIDERS)}")
    admin = str(settings.routes_caddy_admin)
    if not admin.startswith(("http://", "https://")) or not admin.split("://", 1)[1].strip("/"):
        raise InputError(f"invalid [routes] caddy_admin {admin!r}: an http:// URL (e.g. http://127.0.0.1:2019)")
    host, sep, port = str(settings.routes_listen).rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"invalid [routes] listen {settings.routes_listen!r}: [HOST]:PORT (e.g. :80)")
    drain = settings.routes_drain_seconds
    if isinstance(drain, bool) or not isinstance(drain, (int, float)) or not 0 <= drain <= 3600:
        raise InputError(f"invalid [routes] drain_seconds {drain!r}: seconds between 0 and 3600")


def listen_address(listen: str) -> tuple[str, int] | None:
    """`[metrics] listen` as (host, port), None when it is "" (metrics off); anything but HOST:PORT is refused."""
    if listen == "":
        return None
    host, sep, port = str(listen).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:9464
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"invalid [metrics] listen {listen!r}: HOST:PORT (e.g. {METRICS_LISTEN}), or \"\" for off")
    return host, int(port)


def _apply(settings: Settings, raw: dict, where: str) -> None:
    known = {f.name for f in dataclasses.fields(Settings)}
    sections = {"cleanup": "", "retention": "", "pipeline": "", "scheduler": "", "console": "", "store": "",
                "metrics": "metrics_", "notify": "notify_", "routes": "routes_"}
    # [metrics] listen is the setting metrics_listen, [routes] provider is routes_provider
    flat = {}
    for key, value in raw.items():
        if key in sections and isinstance(value, dict):
            flat.update({sections[key] + k: v for k, v in value.items()})
        else:
            flat[key] = value
    for key, value in flat.items():
        if key == "hosts":
            settings.hosts = dict(value)
        elif key == "keys":
            settings.keys = {str(k): str(v) for k, v in value.items()}
        elif key == "phase_deadlines":
            settings.phase_deadlines.update({str(k).upper(): float(v) for k, v in value.items()})
        elif key in known and key not in ("data_dir", "origins"):
            setattr(settings, key, _cast(key, value))
            settings.origins[key] = "config"
        else:
            raise InputError(f"unknown setting {key!r} in {where}")
