"""`doctor`: the checks a newcomer runs first. Each is one line, OK / WARN / FAIL, with the fix to apply; any FAIL
makes the command exit 1.

The doctor changes nothing on purpose: it does not create the data dir or the store, does not migrate the schema and
does not write Host rows (opening an existing SQLite store still tightens a too-open file mode, as every command does).
Every check that waits for something (a Docker engine, the metrics port) is bounded by `host_timeout`.
"""
import errno
import os
import shutil
import socket
import stat
import urllib.request
from pathlib import Path

from console import config
from console.engine import host_specs
from console.engine.errors import one_line
from storage import migrations

OK, WARN, FAIL = "OK", "WARN", "FAIL"
ARCHIVE_FLOOR_MB = 64.0      # below this much free space the archive (log copies, volume backups) cannot work
START_DOCKER = ("start Docker (`bash scripts/docker-engine`, or `systemctl start docker`), or point the host at a "
                "running engine")


def check(name: str, level: str, detail: str, fix: str | None = None) -> dict:
    return {"name": name, "level": level, "detail": detail, "fix": fix if level != OK else None}


def run(options: dict) -> list[dict]:
    """Every check, in the order a newcomer should fix them. `options` are the command line's (data_dir, db,
    docker_host, read_only)."""
    checks: list[dict] = []
    settings = _config(options, checks)
    checks += _data_dir(settings)
    store = _store(settings, checks)
    try:
        if store is not None:
            checks.append(_lease())
        checks += _engines(settings, store)
    finally:
        if store is not None:
            store.close()
    checks.append(_disk(settings))
    checks.append(_metrics_port(settings))
    checks.append(_router(settings))
    return checks


def failed(checks: list[dict]) -> bool:
    return any(c["level"] == FAIL for c in checks)


# ---- config
def _config(options: dict, checks: list) -> config.Settings:
    try:
        settings = config.load(**options)
    except config.ConfigError as e:
        fallback = config.Settings(**({"data_dir": Path(options["data_dir"]).expanduser()}
                                      if options.get("data_dir") else {}))
        fallback.store.db, fallback.docker_host = options.get("db"), options.get("docker_host")
        checks.append(check("config", FAIL, one_line(e), f"fix {fallback.config_path} or the DEPLOYER_* variable "
                                                          f"it names (README: Configuration)"))
        return fallback
    path = settings.config_path
    checks.append(check("config", OK, f"{path} valid" if path.exists() else f"no {path}: defaults, DEPLOYER_* "
                                                                              f"variables and flags"))
    return settings


# ---- data dir and store modes
def _mode_check(name: str, path: Path, want: int, fix_mode: str) -> dict:
    st = path.stat()
    if st.st_uid != os.getuid():
        return check(name, FAIL, f"{path} is owned by uid {st.st_uid}, not by this user (uid {os.getuid()})",
                     f"chown {os.getuid()} {path}, or point --data-dir/--db at your own")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return check(name, WARN, f"{path} is mode {mode:04o}: group/other can read the store and its secrets",
                     f"chmod {fix_mode} {path} (the next command tightens it too)")
    return check(name, OK, f"{path} (mode {mode:04o}, yours)")


def _data_dir(settings) -> list[dict]:
    path = Path(settings.data_dir)
    if not path.exists():
        return [check("data dir", WARN, f"{path} does not exist yet",
                      "run any command (e.g. `deployer-console status`): it creates it 0700")]
    if not path.is_dir():
        return [check("data dir", FAIL, f"{path} is not a directory", "point --data-dir/DEPLOYER_DATA_DIR at a "
                                                                         "directory")]
    out = [_mode_check("data dir", path, 0o700, "700")]
    db = Path(settings.db_url)
    if "://" not in settings.db_url and db.exists():
        out.append(_mode_check("store file", db, 0o600, "600"))
    return out


# ---- store: reachable, schema version, lease
def _store(settings, checks: list):
    from storage.db import StoreError, open_store, redact_url
    url = settings.db_url
    shown = redact_url(url)
    if "://" not in url and not Path(url).exists():
        checks.append(check("store", OK, f"no store yet at {url}: the first command creates it"))
        return None
    try:
        store = open_store(url, migrate=False)
    except StoreError as e:
        fix = ("check --db/DEPLOYER_DB, that the server runs and the user may connect" if "://" in url else
               "restore the file from a backup, or point --data-dir at another directory")
        checks.append(check("store", FAIL, one_line(e), fix))
        return None
    version = migrations.current_version(store)
    kind = "SQLite" if store.is_sqlite else "PostgreSQL"
    if version > migrations.LATEST:
        checks.append(check("store schema", FAIL, f"{kind} store {shown} has schema version {version}, newer than "
                                                  f"this program's {migrations.LATEST}",
                            "upgrade deployer-console (pip install -U deployer-console) on this machine"))
        store.close()
        return None
    if version == 0:
        checks.append(check("store schema", OK, f"{kind} store {shown} is empty: the first command creates the "
                                                f"tables (schema {migrations.LATEST})"))
        store.close()
        return None
    if version < migrations.LATEST:
        checks.append(check("store schema", WARN, f"{kind} store {shown} has schema version {version}; this "
                                                  f"program's is {migrations.LATEST}",
                            "none needed: the next command migrates it in place (back up the store first if you "
                            "want to keep the old version)"))
    else:
        checks.append(check("store schema", OK, f"{kind} store {shown}, schema version {version} (current)"))
    return store


def _lease() -> dict:
    from console.engine.lease import current
    from storage.clock import now
    try:
        leader = current()
    except Exception as e:  # noqa: BLE001 - an old schema without the table: the migration brings it
        return check("lease", WARN, f"cannot read the lease: {one_line(e)}", "run `deployer-console status`")
    if leader is None:
        return check("lease", WARN, "no engine holds the lease: queued deployments and cleanups wait",
                     "start the engine: `deployer-console engine` (systemd: `systemctl start deployer-console`), "
                     "or keep a console open")
    return check("lease", OK, f"held by {leader['holder']} (host {leader['host']}, pid {leader['pid']}), expires in "
                              f"{max(0.0, leader['expires_at'] - now()):.0f} s")


# ---- Docker engines and the base image
def _specs(settings, store) -> dict:
    """Every host as the engine sees them (Hosts.specs: the store's rows, when there is a store, with this run's
    config tables and --docker-host/DEPLOYER_DOCKER_HOST laid over them)."""
    from console.engine.hosts import Hosts
    return Hosts(settings).specs(stored=store is not None)


def _addresses(settings, specs: dict) -> list[dict]:
    """A host on another machine (tcp:// or ssh:// to a name or address that is not this machine's) whose containers
    publish on its loopback: no proxy here reaches them; its deployments fail before their route would move there."""
    out = []
    for name, s in specs.items():
        if s.address is None and not host_specs.on_this_machine(s):
            fix = (f"[hosts.{name}] address = \"IP\" in {settings.config_path}" if s.source == "config" else
                   f"`deployer-console host rm {name}` then `host add {name} {s.url} --address IP`")
            out.append(check(f"address {name}", WARN, f"{s.url}: its containers would publish on 127.0.0.1 of that "
                                                       f"machine, which no proxy here reaches: its deployments fail "
                                                       f"before their route moves", fix))
    return out


def _probe_host(name: str, url: str | None, tls: dict, timeout: float) -> list[dict]:
    from console.engine.docker_gateway import BASE_IMAGE, Gateway
    from console.engine.hosts import open_client
    where = url or "from the environment (DOCKER_HOST or the default socket)"
    fix_url = ("`deployer-console --docker-host URL ...` or DEPLOYER_DOCKER_HOST" if name == "local" else
               f"`deployer-console host rm {name}` then `host add {name} URL`")
    try:
        client = open_client(url, tls, timeout)
        try:
            gw = Gateway(name, client)
            version = gw.version()
            present = gw.image_exists(BASE_IMAGE)
        finally:
            client.close()
    except Exception as e:  # noqa: BLE001 - any failure means this engine cannot be used; the message says why
        return [check(f"engine {name}", FAIL, f"{where} unreachable: {one_line(e)}", f"{START_DOCKER} ({fix_url})"),
                check(f"base image {name}", WARN, "not checked: the engine is unreachable", "fix the engine first")]
    out = [check(f"engine {name}", OK, f"{where}: Docker {version.get('Version', '?')}, API "
                                       f"{version.get('ApiVersion', '?')}")]
    if present:
        out.append(check(f"base image {name}", OK, f"{BASE_IMAGE} present"))
    else:
        build = "deployer-console base-image" if not url else f"deployer-console --docker-host {url} base-image"
        out.append(check(f"base image {name}", FAIL, f"{BASE_IMAGE} missing: every build starts from it",
                         f"`{build}` (needs busybox-static)"))
    return out


def _engines(settings, store) -> list[dict]:
    from console.engine.errors import InputError
    timeout = float(settings.scheduler.host_timeout)
    try:
        specs = _specs(settings, store)
    except InputError as e:   # a [hosts.NAME] table with a bad URL or TLS file: every command refuses it
        return [check("hosts", FAIL, one_line(e), f"fix the [hosts] tables of {settings.config_path}")]
    from console.engine.parallel import at_once
    hosts = [(name, s.url or None, {"tls_ca": s.tls_ca, "tls_cert": s.tls_cert, "tls_key": s.tls_key})
             for name, s in specs.items()]
    results = at_once(lambda host: _probe_host(*host, timeout), hosts, timeout + 1.0, name="doctor")
    out = []
    for (name, url, _), result in zip(hosts, results, strict=True):
        if result is not None:
            out += result
        else:
            out.append(check(f"engine {name}", FAIL, f"{url or 'default engine'}: no answer within {timeout:.0f} s "
                                                     f"(host_timeout)", START_DOCKER))
    return out + _addresses(settings, specs)


# ---- disk and metrics port
def _disk(settings) -> dict:
    path = Path(settings.data_dir) / "archive"
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free_mb = shutil.disk_usage(probe).free / 1e6
    budget = float(settings.cleanup.archive_max_mb)
    detail = f"{free_mb:,.0f} MB free for {path} (archive budget archive_max_mb = {budget:,.0f} MB)"
    if free_mb < ARCHIVE_FLOOR_MB:
        return check("archive disk", FAIL, detail, f"free space on the file system of {probe}, or move --data-dir")
    if free_mb < budget:
        return check("archive disk", WARN, detail, f"free space on {probe}, or lower archive_max_mb in the config "
                                                   f"([cleanup] archive_max_mb = {int(free_mb // 2)})")
    return check("archive disk", OK, detail)


def _metrics_port(settings) -> dict:
    listen = settings.metrics.listen
    if not listen:
        return check("metrics port", OK, "metrics are off ([metrics] listen = \"\")")
    host, _, port_text = str(listen).rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    fix = 'stop the program on that port, or set [metrics] listen = "127.0.0.1:PORT" (DEPLOYER_METRICS_LISTEN)'
    try:
        port = int(port_text)
    except ValueError:
        return check("metrics port", FAIL, f"metrics listen address {listen!r} is not HOST:PORT",
                     'set [metrics] listen = "127.0.0.1:9464"')
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed connection in TIME_WAIT is not "busy"
        sock.bind((host, port))
        return check("metrics port", OK, f"{host}:{port} is free")
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            return check("metrics port", FAIL, f"cannot listen on {host}:{port}: {e.strerror}", fix)
    finally:
        sock.close()
    if _serves_our_metrics(host, port, float(settings.scheduler.host_timeout)):
        return check("metrics port", OK, f"{host}:{port} is served by a running deployer-console engine")
    return check("metrics port", FAIL, f"{host}:{port} is in use by another program", fix)


def _router(settings) -> dict:
    """[routes]: the route files' directory, or Caddy's admin API answering (bounded by host_timeout)."""
    if settings.routes.provider != "caddy":
        return check("routes", OK, f"Traefik file provider: route files in {Path(settings.data_dir) / 'routes'}")
    admin = settings.routes.caddy_admin.rstrip("/")
    try:
        with urllib.request.urlopen(f"{admin}/config/", timeout=min(float(settings.scheduler.host_timeout), 3.0)):
            pass
    except Exception as e:  # noqa: BLE001 - any failure means no route can be set
        return check("routes", FAIL, f"Caddy admin API at {admin} does not answer: {one_line(e)}",
                     f"start Caddy with its admin API at {admin} (`caddy run`, or `bash scripts/caddy start DIR "
                     f"PORT`), or set [routes] caddy_admin")
    return check("routes", OK, f"Caddy admin API at {admin} answers; the console's server `deployer` listens on "
                               f"{settings.routes.listen}")


def _serves_our_metrics(host: str, port: int, timeout: float) -> bool:
    target = f"[{host}]" if ":" in host else ("127.0.0.1" if host == "0.0.0.0" else host)
    try:
        with urllib.request.urlopen(f"http://{target}:{port}/metrics", timeout=min(timeout, 3.0)) as response:
            return b"deployer_" in response.read(1 << 20)
    except Exception:  # noqa: BLE001 - not an HTTP server of ours
        return False
