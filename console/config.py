"""Settings: defaults, then `<data dir>/config.toml` (or DEPLOYER_CONFIG), then DEPLOYER_* environment variables,
then command-line flags. The data directory comes from platformdirs unless --data-dir/DEPLOYER_DATA_DIR says.

A leaf: nothing of the engine or the store is imported here. Settings are grouped by the TOML's sections
(`settings.scheduler.workers` is `[scheduler] workers`); every value is checked (type and range) when it is read, and
a bad one is a ConfigError naming the setting and where it came from (the file, the variable or the flag)."""
import math
import os
from pathlib import Path

PHASE_DEADLINES = {"PULLING_SOURCE": 300, "BUILDING": 900, "COPYING_FILES": 300, "CREATING_SYMLINKS": 300,
                   "UPDATING_ROUTES": 300, "HEALTH_CHECK": 300}
# what `[notify] events` chooses among (all by default); notify.py sends them
NOTIFY_EVENTS = ("deployment-failed", "cleanup-failing", "cleanup-abandoned", "host-down", "host-back", "drift",
                 "rollback-failed", "zombie-resumed", "zombie-failed")
METRICS_LISTEN = "127.0.0.1:9464"
HOST_KEYS = ("url", "tls_ca", "tls_cert", "tls_key", "address", "default")
ENV_PREFIX = "DEPLOYER_"


def default_data_dir() -> Path:
    """Where the data lives unless --data-dir/DEPLOYER_DATA_DIR says (platformdirs: ~/.local/share/deployer-console)."""
    import platformdirs  # here: a run that names its data dir does not load it
    return Path(platformdirs.user_data_dir("deployer-console"))


class ConfigError(Exception):
    """A setting that cannot be used: one line naming the setting and where it came from. Exit 2 in the CLI."""
    exit_code = 2


def _rule(kind, low=None, above=None, high=None, choices=None):
    """A field's check: its kind, and `low` (at least), `above` (greater than) or `high` (at most) for numbers."""
    return {"kind": kind, "low": low, "above": above, "high": high, "choices": choices}


class Setting:
    """One setting a section declares: its default (a value, or a callable that makes a fresh one) and its check."""
    __slots__ = ("default", "rule")

    def __init__(self, default, kind, **rule):
        self.default = default
        self.rule = _rule(kind, **rule)

    def fresh(self):
        return self.default() if callable(self.default) else self.default


class Section:
    """A [section] of the config: the class declares its settings (`name: type = Setting(default, kind, ...)`), an
    instance holds each one's value. A name the section does not declare cannot be set: a setting renamed or misspelt
    in the code fails at once instead of being silently ignored. (Not a dataclass: generating one costs the CLI's quick
    path more than all of its reading.)"""
    SETTINGS: dict[str, Setting] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.SETTINGS = {k: v for k, v in vars(cls).items() if isinstance(v, Setting)}

    def __init__(self, **values):
        for name, setting in self.SETTINGS.items():
            object.__setattr__(self, name, values.pop(name) if name in values else setting.fresh())
        if values:
            raise TypeError(f"{type(self).__name__} has no setting {', '.join(sorted(values))}")

    def __setattr__(self, name, value):
        if name not in self.SETTINGS:
            raise AttributeError(f"{type(self).__name__} has no setting {name!r}")
        object.__setattr__(self, name, value)

    def values(self) -> dict:
        return {name: getattr(self, name) for name in self.SETTINGS}

    def __eq__(self, other):
        return type(other) is type(self) and other.values() == self.values()

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.values().items())})"


class StoreSettings(Section):
    db: str | None = Setting(None, "path")


class CleanupSettings(Section):
    cleanup_delay: float = Setting(0.0, float, low=0)                 # between failure/cancel and removal
    keep_failed: int = Setting(0, int, low=0)
    keep_releases: int = Setting(5, int, low=1)         # superseded releases kept per service as rollback targets
    cleanup_backoff_max: float = Setting(60.0, float, above=0)
    # 0 or less would make the archive budget delete every backup, or keep none: refused, not guessed at
    archive_max_mb: float = Setting(1024.0, float, above=0)
    archive_max_age_days: float = Setting(30.0, float, above=0)
    # a volume backup is kept this long whatever archive_max_mb says
    backup_keep_days: float = Setting(30.0, float, above=0)


class PipelineSettings(Section):
    health_timeout: float = Setting(60.0, float, above=0)
    heartbeat_interval: float = Setting(2.0, float, above=0)
    phase_deadlines: dict = Setting(lambda: dict(PHASE_DEADLINES), "deadlines")


class SchedulerSettings(Section):
    workers: int = Setting(2, int, low=1)
    reconcile_interval: float = Setting(15.0, float, above=0)
    retention_interval: float = Setting(3600.0, float, above=0)
    cleanup_interval: float = Setting(1.0, float, above=0)
    dispatch_interval: float = Setting(1.0, float, above=0)
    zombie_after: float = Setting(60.0, float, above=0)
    zombie_policy: str = Setting("resume", str, choices=("resume", "fail"))
    max_resume_attempts: int = Setting(3, int, low=0)
    orphan_grace: float = Setting(120.0, float, low=0)
    host_timeout: float = Setting(10.0, float, above=0)
    lease_duration: float = Setting(15.0, float, above=0)
    lease_renew_deadline: float = Setting(10.0, float, above=0)
    lease_retry: float = Setting(2.0, float, above=0)


class ConsoleSettings(Section):
    poll_interval: float = Setting(1.0, float, above=0)
    stats: bool = Setting(True, bool)     # live CPU/memory of the running containers on screen (one engine stream each)


class MetricsSettings(Section):
    listen: str = Setting(METRICS_LISTEN, "listen")     # Prometheus text format on HOST:PORT ("" = off)


class NotifySettings(Section):
    urls: list = Setting(list, "strings")               # apprise URLs
    events: list = Setting(lambda: list(NOTIFY_EVENTS), "strings", choices=NOTIFY_EVENTS)
    fold_seconds: float = Setting(300.0, float, low=0)  # a repeat within this window is folded into the first
    cleanup_failing_after: int = Setting(3, int, low=1)  # a cleanup is "failing" from this many failed attempts on


ROUTE_PROVIDERS = ("traefik-file", "caddy")


class RoutesSettings(Section):
    """Who routes requests to the serving container: "traefik-file" (routes/<service>.yml for Traefik's file
    provider) or "caddy" (the admin API at caddy_admin; one server named `deployer` listening on `listen`); a
    superseded container is stopped drain_seconds after the new one serves, so requests in flight finish."""
    provider: str = Setting("traefik-file", str, choices=ROUTE_PROVIDERS)
    caddy_admin: str = Setting("http://127.0.0.1:2019", "url")
    listen: str = Setting(":80", "port")                # [HOST]:PORT
    drain_seconds: float = Setting(5.0, float, low=0, high=3600)


# [section] -> its settings class, and the prefix of its keys' DEPLOYER_* names (DEPLOYER_NOTIFY_URLS is
# `[notify] urls`, DEPLOYER_WORKERS is `[scheduler] workers`)
SECTIONS = {"store": (StoreSettings, ""), "cleanup": (CleanupSettings, ""), "pipeline": (PipelineSettings, ""),
            "scheduler": (SchedulerSettings, ""), "console": (ConsoleSettings, ""),
            "metrics": (MetricsSettings, "metrics_"), "notify": (NotifySettings, "notify_"),
            "routes": (RoutesSettings, "routes_")}
TOP_LEVEL = {"docker_host": _rule("text"), "read_only": _rule(bool)}   # keys outside any section


class Settings(Section):
    data_dir: Path = Setting(lambda: default_data_dir(), "path")
    docker_host: str | None = Setting(None, "text")
    read_only: bool = Setting(False, bool)
    store: StoreSettings = Setting(StoreSettings, "section")
    cleanup: CleanupSettings = Setting(CleanupSettings, "section")
    pipeline: PipelineSettings = Setting(PipelineSettings, "section")
    scheduler: SchedulerSettings = Setting(SchedulerSettings, "section")
    console: ConsoleSettings = Setting(ConsoleSettings, "section")
    metrics: MetricsSettings = Setting(MetricsSettings, "section")
    notify: NotifySettings = Setting(NotifySettings, "section")
    routes: RoutesSettings = Setting(RoutesSettings, "section")
    keys: dict = Setting(dict, "keys")          # [keys]: console key bindings (Textual keymap ids)
    hosts: dict = Setting(dict, "hosts")        # [hosts.NAME]: url, tls_ca, tls_cert, tls_key, address, default
    # where a setting came from when it matters to the operator ("config", "env" or "flag"): `host ls` shows it
    origins: dict = Setting(dict, "origins")

    @property
    def db_url(self) -> str:
        return self.store.db or str(self.data_dir / "deployer.db")

    @property
    def config_path(self) -> Path:
        return Path(os.environ.get("DEPLOYER_CONFIG") or self.data_dir / "config.toml")


def _names() -> dict[str, tuple[str | None, str, dict]]:
    """Every setting by its flat name (DEPLOYER_<NAME>, and load()'s keyword): (section, key, rule)."""
    out = {name: (None, name, rule) for name, rule in TOP_LEVEL.items()}
    for section, (cls, prefix) in SECTIONS.items():
        for key, setting in cls.SETTINGS.items():
            out[prefix + key] = (section, key, setting.rule)
    return out


NAMES = _names()


def _label(section: str | None, key: str) -> str:
    return f"[{section}] {key}" if section else key


def _checked(value, rule: dict, label: str, where: str, from_env: bool = False):
    """`value` as the setting's kind, in its range; else a ConfigError naming the setting and `where`."""
    kind = rule["kind"]

    def bad(expected: str):
        return ConfigError(f"invalid setting {label} = {value!r} in {where}: expected {expected}")

    if kind in (int, float):
        if from_env and isinstance(value, str):
            try:
                value = int(value) if kind is int else float(value)
            except ValueError:
                raise bad("a whole number" if kind is int else "a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float)):
            raise bad("a whole number" if kind is int else "a number")
        if not math.isfinite(value):
            raise bad("a finite number")
        value = kind(value)
        if rule["low"] is not None and value < rule["low"]:
            raise bad(f"a number of at least {rule['low']}")
        if rule["above"] is not None and not value > rule["above"]:
            raise bad(f"a number greater than {rule['above']}")
        if rule["high"] is not None and value > rule["high"]:
            raise bad(f"a number of at most {rule['high']}")
        return value
    if kind is bool:
        if from_env and isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind in (str, "text", "path", "listen", "url", "port"):
        if not isinstance(value, str):
            raise bad("a string")
        if rule["choices"] and value not in rule["choices"]:
            raise bad(" or ".join(rule["choices"]))
        if kind == "listen":
            try:
                listen_address(value)
            except ConfigError:
                raise bad(f'HOST:PORT (e.g. {METRICS_LISTEN}), or "" for off') from None
        if kind == "url" and (not value.startswith(("http://", "https://")) or not value.split("://", 1)[1].strip("/")):
            raise bad("an http:// URL (e.g. http://127.0.0.1:2019)")
        if kind == "port":
            _, sep, port = value.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) < 65536:
                raise bad("[HOST]:PORT (e.g. :80)")
        return value
    if kind == "strings":  # a TOML array, or an environment string of items separated by commas or spaces
        items = value.replace(",", " ").split() if isinstance(value, str) and from_env else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise bad("a list of strings")
        unknown = sorted(set(items) - set(rule["choices"] or items))
        if unknown:
            raise ConfigError(f"invalid setting {label}: {', '.join(unknown)} in {where}: choose among "
                              f"{', '.join(rule['choices'])}")
        return list(items)
    if kind == "deadlines":
        if not isinstance(value, dict):
            raise bad(f"a table of phase = seconds ({', '.join(PHASE_DEADLINES)})")
        out = {}
        for phase, seconds in value.items():
            name = str(phase).upper()
            if name not in PHASE_DEADLINES:
                raise ConfigError(f"unknown phase {phase!r} in {label} in {where}: one of {', '.join(PHASE_DEADLINES)}")
            out[name] = _checked(seconds, _rule(float, above=0), f"{label}.{name}", where)
        return out
    raise AssertionError(kind)


def load(data_dir=None, db=None, docker_host=None, read_only=False, **overrides) -> Settings:
    """The settings of this run. `overrides` are flat setting names (as in DEPLOYER_<NAME>: `workers`,
    `metrics_listen`, `notify_urls`), checked like the others."""
    data_dir = data_dir or os.environ.get("DEPLOYER_DATA_DIR")
    settings = Settings(**({"data_dir": Path(data_dir).expanduser()} if data_dir else {}))
    path = settings.config_path
    if path.exists():
        import tomllib  # here: a run without a config file does not load it
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {str(e).splitlines()[0] if str(e) else e!r}") from None
        _apply(settings, raw, path)
    for name, (section, key, rule) in NAMES.items():
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None and name != "read_only":
            _set(settings, section, key, _checked(env, rule, _label(section, key), f"{ENV_PREFIX}{name.upper()}",
                                                  from_env=True))
            settings.origins[name] = "env"
    for phase in PHASE_DEADLINES:
        variable = f"{ENV_PREFIX}DEADLINE_{phase}"
        env = os.environ.get(variable)
        if env is not None:
            settings.pipeline.phase_deadlines[phase] = _checked(env, _rule(float, above=0), variable, "the environment",
                                                                from_env=True)
    if db:
        settings.store.db = db
    if docker_host:
        settings.docker_host = docker_host
        settings.origins["docker_host"] = "flag"
    if read_only or os.environ.get("DEPLOYER_READ_ONLY", "").lower() in ("1", "true", "yes"):
        settings.read_only = True
    for name, value in overrides.items():
        if name in ("keys", "hosts"):
            _apply(settings, {name: value}, Path("the options"))
            continue
        if name not in NAMES:
            raise ConfigError(f"unknown setting {name!r}")
        section, key, rule = NAMES[name]
        value = _checked(value, rule, _label(section, key), "the options")
        if (section, key) == ("pipeline", "phase_deadlines"):   # the phases not named keep theirs, as in the file
            value = {**settings.pipeline.phase_deadlines, **value}
        _set(settings, section, key, value)
    return settings


def listen_address(listen: str) -> tuple[str, int] | None:
    """`[metrics] listen` as (host, port), None when it is "" (metrics off); anything but HOST:PORT is refused."""
    if listen == "":
        return None
    host, sep, port = str(listen).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:9464
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"invalid [metrics] listen {listen!r}: HOST:PORT (e.g. {METRICS_LISTEN}), or \"\" for off")
    return host, int(port)


def _set(settings: Settings, section: str | None, key: str, value) -> None:
    setattr(getattr(settings, section) if section else settings, key, value)


def _apply(settings: Settings, raw: dict, path: Path) -> None:
    where = str(path)
    flat_name = {(section, key): name for name, (section, key, _) in NAMES.items()}
    for top, value in raw.items():
        if top in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"invalid [{top}] in {where}: expected a table ([{top}] then key = value lines)")
            known = {key: setting.rule for key, setting in SECTIONS[top][0].SETTINGS.items()}
            for key, item in value.items():
                if key not in known:
                    raise ConfigError(f"unknown setting {key!r} in [{top}] in {where}: one of {', '.join(known)}")
                label = _label(top, key)
                item = _checked(item, known[key], label, where)
                if top == "pipeline" and key == "phase_deadlines":
                    item = {**PHASE_DEADLINES, **item}
                if top == "store" and key == "db" and "://" not in item:
                    item = str((path.parent / Path(item).expanduser()).resolve())   # relative to the config file
                _set(settings, top, key, item)
                settings.origins[flat_name[(top, key)]] = "config"
        elif top == "keys":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f"invalid [keys] in {where}: expected a table of action = \"key\"")
            settings.keys = {str(k): v for k, v in value.items()}
        elif top == "hosts":
            settings.hosts = _hosts(value, where)
        elif top in TOP_LEVEL:
            _set(settings, None, top, _checked(value, TOP_LEVEL[top], top, where))
            settings.origins[top] = "config"
        else:
            raise ConfigError(f"unknown setting {top!r} in {where}")


def _hosts(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"invalid [hosts] in {where}: expected [hosts.NAME] tables")
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigError(f"invalid setting [hosts] {name} = {table!r} in {where}: expected a table "
                              f"[hosts.{name}] with url = \"...\"")
        unknown = sorted(set(table) - set(HOST_KEYS))
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r} in [hosts.{name}] in {where}: one of "
                              f"{', '.join(HOST_KEYS)}")
        if not isinstance(table.get("url"), str) or not table["url"]:
            raise ConfigError(f"invalid setting [hosts.{name}] url in {where}: expected a string")
        for key in ("tls_ca", "tls_cert", "tls_key", "address"):
            if key in table and not isinstance(table[key], str):
                raise ConfigError(f"invalid setting [hosts.{name}] {key} in {where}: expected a string")
        if "default" in table and not isinstance(table["default"], bool):
            raise ConfigError(f"invalid setting [hosts.{name}] default in {where}: expected true or false")
    return dict(value)
