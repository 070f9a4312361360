"""The `deployer-console` command's entry point, and the quick path of its two most-run reads.

`ls` and `status` on a SQLite store are answered here with the standard library alone: the same settings
(console/config.py), the same checks of the store file (storage/sqlite_file.py), the same SQL (storage/reads.py), the
same status (console/engine/status.py's `build`) and the same output (console/fmt.py) as console/cli.py gives, without
loading click, peewee, docker-py or the engine, which cost most of the command's time (bench/cli_bench.py).

Everything else goes to console/cli.py, which can do all of it: any other command or option, `--help`, input the full
CLI would refuse, a PostgreSQL store, a store that is missing or needs a migration, a host that is not on a local
unix socket or does not answer, a host coming back (an event to write). The quick path writes nothing before it knows
it can answer, so handing over is always safe; DEPLOYER_QUICK=0 turns it off.
"""
import os
import sys

GLOBAL_OPTIONS = {"--data-dir": "data_dir", "--db": "db", "--docker-host": "docker_host"}
COMMAND_OPTIONS = {"ls": {"--status": "status", "--service": "service", "--host": "host", "--limit": "limit"},
                   "status": {}}


class NotHere(Exception):
    """The quick path does not answer this one: the full CLI does."""


def parse(argv: list[str]) -> tuple[str, dict, dict, bool]:
    """(command, global options, command options, json) of a command line the quick path knows, else NotHere."""
    args, command, json_out, read_only = iter(argv), None, False, False
    options: dict = {}
    flags: dict = {}
    for arg in args:
        name, eq, value = arg.partition("=")
        known = COMMAND_OPTIONS[command] if command else GLOBAL_OPTIONS
        if name == "--json" and not eq:
            json_out = True
        elif name == "--read-only" and not eq and command is None:
            read_only = True
        elif name in known:
            if not eq:
                value = next(args, None)
                if value is None or value.startswith("-"):
                    raise NotHere(arg)
            (flags if command else options)[known[name]] = value
        elif command is None and arg in COMMAND_OPTIONS:
            command = arg
        else:
            raise NotHere(arg)
    if command is None:
        raise NotHere("no command")
    return command, options | {"read_only": read_only}, flags, json_out


def _checked_filters(flags: dict) -> dict:
    """The `ls` filters as the engine checks them; anything it would refuse is the full CLI's to say."""
    from console.engine import validate
    if "limit" in flags:
        flags["limit"] = int(flags["limit"])
    validate.deployment_filters(flags.get("status"), flags.get("service"), flags.get("host"))
    return flags


def _open(settings):
    """A sqlite3 connection to an existing, up-to-date SQLite store, after the checks storage/db.py makes. A data dir
    or store file whose modes those checks would tighten (with a warning, logged) is the full CLI's to handle."""
    import sqlite3
    from pathlib import Path

    import storage
    from storage import sqlite_file
    url = settings.db_url
    if storage.is_server_url(url):
        raise NotHere("a database server")
    path = Path(url.removeprefix("sqlite:///")).expanduser()
    data_dir = Path(settings.data_dir)
    if not (path.is_file() and path.stat().st_size > 0 and data_dir.is_dir()):
        raise NotHere("no store yet")
    sides = (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
    if not all(sqlite_file.is_private(p) for p in (data_dir, path, *sides) if p.exists()):
        raise NotHere("modes to tighten")
    sqlite_file.private_dir(data_dir)
    sqlite_file.prepare_sqlite_file(path)   # ours, a SQLite database, not damaged: StoreError otherwise
    con = sqlite3.connect(path, timeout=sqlite_file.BUSY_TIMEOUT_S, isolation_level=None)
    try:
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or int(version[0]) != storage.SCHEMA_VERSION:
            raise NotHere("the store needs a migration")
        con.execute("PRAGMA query_only = 1")
    except BaseException:
        con.close()
        raise
    return con


def _hosts(reader, settings) -> tuple[list[dict], list[str]]:
    """Every host pinged now, as Hosts.rows() shows them after `status` probed them: NotHere unless each is on a local
    unix socket and answers, and none comes back from down (that is an event, which the full CLI writes). Returns the
    rows and the names of the Host rows to note as seen."""
    from console.engine import docker_ping, host_specs
    from console.engine.parallel import at_once
    from storage.clock import now
    stored = {r["name"]: r for r in reader.host_rows()}
    specs = host_specs.merge(stored.values(), host_specs.overlay(settings))
    paths = {}
    for name, spec in specs.items():
        path = None if spec.tls_ca or spec.tls_cert else docker_ping.socket_path(spec.url or None)
        if path is None:
            raise NotHere(f"host {name} is not on a local socket")
        if spec.source == "store" and stored[name]["reachable"] is False:
            raise NotHere(f"host {name} was down")
        paths[name] = path
    timeout = float(settings.scheduler.host_timeout)

    def ping(name) -> bool:
        try:
            docker_ping.ping(paths[name], timeout)
        except docker_ping.PingFailed as e:
            docker_ping.hand_over(paths[name], e)   # the full CLI's probe says it without asking again
            raise
        return True

    if not all(at_once(ping, list(paths), timeout + docker_ping.GRACE_S, default=False, name="quick-ping")):
        raise NotHere("a host does not answer")
    seen = now()
    rows = [{**host_specs.row(s), "reachable": True, "last_error": None, "last_seen_at": seen}
            for s in specs.values()]
    return rows, [n for n, s in specs.items() if s.source == "store"]


def answer(argv: list[str]) -> str:
    """The output of a command the quick path answers; NotHere (or any error) when it cannot."""
    command, options, flags, json_out = parse(argv)
    from console import config, fmt
    from storage.reads import Reader
    flags = _checked_filters(flags)
    settings = config.load(**options)
    con = _open(settings)
    try:
        reader = Reader.sqlite(con)
        if command == "ls":
            rows = reader.deployment_rows(limit=50, **flags)
            out = fmt.to_json(fmt.deployments_json(rows)) if json_out else fmt.deployments_table(rows)
        else:
            from console.engine import status
            hosts, seen = _hosts(reader, settings)
            if seen and not settings.read_only:   # what Hosts.record writes for a Host row that answered
                con.execute("PRAGMA query_only = 0")
                con.executemany("UPDATE host SET reachable = 1, last_error = NULL, last_seen_at = ? WHERE name = ?",
                                [(hosts[0]["last_seen_at"], n) for n in seen])
            st = status.build(reader, settings, hosts)
            out = fmt.to_json(st) if json_out else fmt.status_text(st)
    finally:
        con.close()
    return out


def main():
    if os.environ.get("DEPLOYER_QUICK", "1") != "0":
        try:
            out = answer(sys.argv[1:])
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception:  # noqa: BLE001 - NotHere, or anything the full CLI says better (one line, its exit code)
            pass
        else:
            try:
                sys.stdout.write(out + "\n")
                sys.stdout.flush()
            except BrokenPipeError:   # `ls | head`: the reader had enough; Python's own note about it is noise
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
    from console.cli import main as full
    full()


if __name__ == "__main__":
    main()
