"""The command line: the headless twin of every console action. Errors are one line on stderr with exit code 2 (bad
input, illegal move), 3 (a Docker engine unreachable) or 1; tracebacks go to the log, never to the operator."""
import json as jsonlib
import logging
import signal
import sys
import threading
import time

import click

import storage
from console import config, fmt
from console.engine.errors import DeployerError, EngineUnavailable, InputError, one_line
from console.engine.validate import PHASES, STATUSES

log = logging.getLogger("deployer")


class Ctx:
    def __init__(self, data_dir, db, docker_host, json_out, read_only):
        self.options = dict(data_dir=data_dir, db=db, docker_host=docker_host, read_only=read_only)
        self.json = json_out
        self._engine = None

    @property
    def settings(self):
        return config.load(**self.options)

    @property
    def engine(self):
        if self._engine is None:
            settings = self.settings
            storage.sqlite_only(settings.db_url)   # before the engine's import brings peewee in
            from console.engine.core import Engine
            log_to_file(settings.data_dir)
            self._engine = Engine(settings)
            for warning in self._engine.warnings:
                click.echo(f"warning: {warning}", err=True)
        return self._engine

    def close(self):
        if self._engine is not None:
            self._engine.close()


def log_to_file(data_dir) -> None:
    """Tracebacks and warnings go to <data dir>/deployer.log (0600), never to the operator's terminal."""
    import os
    from pathlib import Path
    root = logging.getLogger()
    if any(getattr(h, "_deployer", None) == "file" for h in root.handlers):
        return
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path / "deployer.log", os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    os.close(fd)
    handler = logging.FileHandler(path / "deployer.log")
    handler._deployer = "file"
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("apscheduler", "urllib3", "docker"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for h in list(root.handlers):
        if not getattr(h, "_deployer", False):
            root.removeHandler(h)


# journald reads a "<N>" prefix on a line as its priority (SyslogLevelPrefix=, on by default) and strips it
SYSLOG_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class OneLineFormatter(logging.Formatter):
    """`LEVEL logger: message`, one line: journald adds the time; a traceback stays in the data dir's log."""

    def __init__(self, journald: bool):
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        plain = logging.makeLogRecord(record.__dict__)
        plain.exc_info, plain.exc_text, plain.stack_info = None, None, None
        line = " ".join(super().format(plain).split("\n"))
        if record.exc_info:
            line += " (traceback in deployer.log)"
        return f"<{SYSLOG_PRIORITY.get(record.levelname, 6)}>{line}" if self.journald else line


def log_to_stderr(level: str) -> None:
    """The headless engine's log for systemd: one line per notable thing on stderr, at `level` and above."""
    import os
    root = logging.getLogger()
    if any(getattr(h, "_deployer", None) == "stderr" for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._deployer = "stderr"
    handler.setLevel(getattr(logging, level.upper()))
    # JOURNAL_STREAM is set by systemd when stderr is connected to the journal
    handler.setFormatter(OneLineFormatter(journald=bool(os.environ.get("JOURNAL_STREAM"))))
    root.addHandler(handler)


def _json_flag(f):
    return click.option("--json", "json_out", is_flag=True, help="Print data as JSON.")(f)


def emit(ctx: Ctx, data, text: str | None = None, json_out: bool = False):
    if ctx.json or json_out:
        click.echo(fmt.to_json(data))
    elif text is not None:
        click.echo(text)


@click.group(invoke_without_command=True)
@click.option("--data-dir", envvar="DEPLOYER_DATA_DIR", type=click.Path(file_okay=False), help="Data directory.")
@click.option("--db", envvar="DEPLOYER_DB", help="Store: a SQLite file path or a postgresql:// URL.")
@click.option("--docker-host", envvar="DEPLOYER_DOCKER_HOST", help="Docker engine URL of the default host.")
@click.option("--json", "json_out", is_flag=True, help="Print data as JSON.")
@click.option("--read-only", is_flag=True, help="Refuse every mutation.")
@click.version_option(package_name="deployer-console")
@click.pass_context
def cli(click_ctx, data_dir, db, docker_host, json_out, read_only):
    """deployer-console: watch and operate deployments and their containers. With no command it opens the console."""
    if click_ctx.get_parameter_source("docker_host") == click.core.ParameterSource.ENVIRONMENT:
        docker_host = None   # config.load reads DEPLOYER_DOCKER_HOST itself, and `host ls` says it came from there
    click_ctx.obj = Ctx(data_dir, db, docker_host, json_out, read_only)
    click_ctx.call_on_close(click_ctx.obj.close)
    if click_ctx.invoked_subcommand is None:
        from console.tui.app import run_console
        settings = click_ctx.obj.settings
        log_to_file(settings.data_dir)   # the console's warnings and tracebacks: its screen is no place for them
        run_console(settings)


# ---- services
@cli.group()
def service():
    """Services: a directory (or git repository) with a Dockerfile."""


@service.command("add")
@click.argument("name")
@click.option("--source", required=True, help="Directory or git repository with a Dockerfile.")
@click.option("--port", default=8080, show_default=True, help="Port the container listens on.")
@click.option("--health-path", default="/", show_default=True)
@click.option("--route-host", default=None, help="Host name Traefik routes to the service.")
@click.option("--volume", "volumes", multiple=True, metavar="NAME:/path", help="A volume per deployment.")
@click.option("--shared-volume", "shared", multiple=True, metavar="NAME:/path", help="A volume shared by the project.")
@click.option("--env", "env", multiple=True, metavar="K=V")
@click.option("--host", default=None, help="Docker host the service runs on (default: the default host).")
@click.option("--project", default="default", show_default=True)
@click.option("--shell", default=None, help="Shell that `x` and `exec` open in its containers (default: sh).")
@click.option("--replace", is_flag=True, help="Change an existing service.")
@_json_flag
@click.pass_obj
def service_add(ctx, name, source, port, health_path, route_host, volumes, shared, env, host, project, shell, replace,
                json_out):
    from console.engine.validate import service_name
    service_name(name)
    ctx.engine.add_service(name, source, port, health_path, route_host, volumes, shared, env, host, project, replace,
                           shell)
    row = next(s for s in ctx.engine.services() if s["name"] == name)
    emit(ctx, row, f"service {name} added (source {row['source']}, port {row['port']})", json_out)


@service.command("ls")
@_json_flag
@click.pass_obj
def service_ls(ctx, json_out):
    rows = ctx.engine.services()
    emit(ctx, rows, fmt.table([[r["name"], r["project"], r["host"] or "(default)", r["port"], r["health_path"],
                                r["source"]] for r in rows], ["NAME", "PROJECT", "HOST", "PORT", "HEALTH", "SOURCE"]),
         json_out)


# ---- deployments
@cli.command()
@click.argument("service_name", metavar="SERVICE")
@click.option("--detach", is_flag=True, help="Only queue it; a running engine picks it up.")
@_json_flag
@click.pass_obj
def deploy(ctx, service_name, detach, json_out):
    """Deploy SERVICE: runs the six phases in the foreground (Ctrl-C cancels)."""
    engine = ctx.engine
    quiet = ctx.json or json_out
    if detach:
        dep = engine.deploy(service_name, detach=True)
        row = engine.show(dep.id, events=False)
        emit(ctx, fmt.public_deployment(row), f"deployment {dep.id} queued", json_out)
        return
    run = {}

    def on_created(dep):
        run.update(id=dep.id, started=time.monotonic())

    def on_phase(index, phase):
        if not quiet:
            click.echo(f"[{index + 1}/6] {phase:<18} {time.monotonic() - run['started']:6.1f}s  {run['id']}",
                       err=False)

    def on_wait(reason):
        if not quiet:
            click.echo(reason if "Ctrl-C" in reason else f"{reason} (Ctrl-C cancels)", err=True)

    # queued (and audited) once its engine answers (exit 3 and nothing recorded otherwise); this process runs it
    dep = engine.deploy(service_name, check_engine=True, clean_up=True, on_created=on_created,
                        on_phase=on_phase, on_wait=on_wait,
                        on_cancel=lambda d: click.echo(f"cancelling {d.id} ...", err=True))
    row = engine.show(dep.id, events=False)
    emit(ctx, fmt.public_deployment(row),
         f"deployment {dep.id} {row['status']}" + (f": {row['error']}" if row["error"] else ""), json_out)
    if row["status"] != "success":
        sys.exit(1)


@cli.command("ls")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--service", "service_name")
@click.option("--host")
@click.option("--limit", default=50, show_default=True)
@_json_flag
@click.pass_obj
def ls(ctx, status, service_name, host, limit, json_out):
    """List deployments, newest first."""
    rows = ctx.engine.deployments(status=status, service=service_name, host=host, limit=limit)
    emit(ctx, fmt.deployments_json(rows), fmt.deployments_table(rows), json_out)


@cli.command()
@click.argument("deployment_id")
@_json_flag
@click.pass_obj
def show(ctx, deployment_id, json_out):
    """A deployment's phases (with durations), cleanup task and events."""
    row = ctx.engine.show(deployment_id)
    if ctx.json or json_out:
        emit(ctx, fmt.public_deployment(row), json_out=True)
        return
    click.echo(fmt.deployments_table([row | {"cleanup": (row["cleanup"] or {}).get("state")}]))
    if row.get("wait_reason"):
        click.echo(f"\nWAITING  {row['wait_reason']}")
    click.echo("\nPHASES")
    click.echo(fmt.table([[p["phase"], p["attempt"], p["outcome"] or "running", fmt.duration(p["duration"]),
                           (p["detail"] or "")[:70]] for p in row["phases"]],
                         ["PHASE", "ATTEMPT", "OUTCOME", "DURATION", "DETAIL"]))
    if row["cleanup"]:
        c = row["cleanup"]
        click.echo(f"\nCLEANUP  {c['state']} ({c['reason']}), attempts {c['attempts']}"
                   + (f", last error: {c['last_error']}" if c["last_error"] else ""))
    click.echo("\nEVENTS")
    for e in row["events"]:
        if e["kind"] == "build":
            continue
        click.echo(f"{time.strftime('%H:%M:%S', time.localtime(e['time']))} {e['level']:<7} {e['kind']:<10} "
                   f"{e['message']}" + (f"  [{e['actor']}]" if e["actor"] else ""))


@cli.command()
@click.argument("deployment_id")
@_json_flag
@click.pass_obj
def cancel(ctx, deployment_id, json_out):
    """Cancel a queued or deploying deployment; its resources are cleaned up."""
    dep = ctx.engine.cancel(deployment_id)
    emit(ctx, fmt.public_deployment(ctx.engine.show(dep.id, events=False)), f"deployment {dep.id} cancelled", json_out)


@cli.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("deployment_id", metavar="ID")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD...]")
@click.pass_obj
def exec_(ctx, deployment_id, command):
    """Open a shell in deployment ID's running container (the service's shell, sh unless set), or run CMD there.
    Interactive (a terminal) when stdin and stdout are one, plain otherwise (stdin still forwarded, as with
    `docker exec -i`: `echo hi | deployer-console exec ID -- cat`); the exit code is the command's."""
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    sys.exit(ctx.engine.exec(deployment_id, command, tty=tty))


@cli.command()
@click.argument("deployment_ids", nargs=-1, required=True, metavar="ID...")
@_json_flag
@click.pass_obj
def clean(ctx, deployment_ids, json_out):
    """Run the cleanup of failed or cancelled deployments now instead of after cleanup_delay. Each ID is cleaned
    or named with why not (the others still run); the exit code is not 0 when any was not cleaned."""
    results = ctx.engine.for_each("clean", deployment_ids)
    emit(ctx, results, "\n".join(f"{r['id']}  {r['outcome']}" for r in results if r["ok"]) or None, json_out)
    if not (ctx.json or json_out):
        for r in results:
            if not r["ok"]:
                click.echo(f"error: {r['id']}: {r['error']}", err=True)
    failed = [r["code"] for r in results if not r["ok"]]
    if failed:
        sys.exit(max(failed))


@cli.command()
@click.argument("deployment_id")
@click.option("--from", "from_phase", type=click.Choice(PHASES, case_sensitive=False), help="Phase to resume from.")
@click.option("--detach", is_flag=True, help="Ask the running engine to resume it.")
@_json_flag
@click.pass_obj
def resume(ctx, deployment_id, from_phase, detach, json_out):
    """Resume a failed or stuck deployment from its recorded phase (or --from PHASE)."""
    quiet = ctx.json or json_out

    def on_phase(index, phase):
        if not quiet:
            click.echo(f"[{index + 1}/6] {phase}")
    dep = ctx.engine.resume(deployment_id, from_phase, detach=detach, on_phase=on_phase)
    row = ctx.engine.show(dep.id, events=False)
    emit(ctx, fmt.public_deployment(row), f"deployment {dep.id} {'resume requested' if detach else row['status']}"
         + (f": {row['error']}" if row["error"] and not detach else ""), json_out)
    if not detach and row["status"] != "success":
        sys.exit(1)


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Include stopped containers.")
@click.option("--host")
@_json_flag
@click.pass_obj
def containers(ctx, show_all, host, json_out):
    """Managed containers, with orphans (what the next reconcile pass removes) and foreign look-alikes marked."""
    unreachable: dict = {}
    rows = ctx.engine.containers(all=show_all, host=host, unreachable=unreachable)
    if unreachable and len(unreachable) == len(ctx.engine.hosts.names()):
        raise EngineUnavailable("no Docker host answers: " + "; ".join(f"{n}: {e}" for n, e in unreachable.items()))
    _warn_down(unreachable, "its containers are not listed")
    keys = ["id", "name", "deployment_id", "service", "state", "host"]
    emit(ctx, [{k: r[k] for k in keys} | {"health": r["health"], "orphan": r["orphan"], "foreign": r["foreign"],
                                          "in_grace": r["in_grace"]} for r in rows],
         fmt.table([[r["id"], r["name"], r["deployment_id"], r["service"], r["state"], r["health"], r["host"],
                     "orphan" if r["orphan"] else "foreign" if r["foreign"] else ""] for r in rows],
                   ["ID", "NAME", "DEPLOYMENT", "SERVICE", "STATE", "HEALTH", "HOST", ""]), json_out)


def _warn_down(unreachable: dict, what: str) -> None:
    for name, error in sorted(unreachable.items()):
        click.echo(f"warning: host {name} is down, {what}: {error}", err=True)


@cli.command("base-image")
@click.pass_obj
def base_image(ctx):
    """Build deployer/base:busybox from the host's static busybox when missing."""
    import docker
    import requests

    from console.engine import docker_compat
    from console.engine.docker_gateway import Gateway
    from console.engine.hosts import make_client
    settings = ctx.settings
    url, wait = settings.docker_host, float(settings.scheduler.host_timeout)
    try:
        # connects, the version handshake and the first answer are bounded by host_timeout (an engine that accepts
        # and never answers); the build itself may take longer
        client = make_client(url, None, 300.0, wait)
        docker_compat.ping_within(client.api, wait)
        built = Gateway("local", client).ensure_base_image()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise EngineUnavailable(f"no Docker engine answers at {url or 'DOCKER_HOST / the default socket'} within "
                                f"{wait:g} s ({str(e).splitlines()[0]}); run scripts/docker-engine") from None
    except FileNotFoundError:
        raise InputError("/bin/busybox is missing; install busybox-static") from None
    click.echo("deployer/base:busybox built" if built else "deployer/base:busybox present")


@cli.command()
@click.argument("service_name", metavar="SERVICE")
@click.option("--to", "to", default=None, help="Deployment id to roll back to (default: the previous success).")
@_json_flag
@click.pass_obj
def rollback(ctx, service_name, to, json_out):
    """Roll SERVICE back to its previous successful release; health-checked, recorded, cleanup-safe."""
    rb = ctx.engine.rollback(service_name, to)
    row = ctx.engine.rollbacks(service_name)[0]
    emit(ctx, row, f"rollback of {service_name} to {rb.to_deployment_id} {rb.state}", json_out)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print the plan without touching anything.")
@_json_flag
@click.pass_obj
def cleanup(ctx, dry_run, json_out):
    """Run due cleanup tasks now, or print the plan (what is removed, archived, kept, and why)."""
    result = ctx.engine.cleanup(dry_run=dry_run)
    rows = result["plan"]
    text = fmt.table([[r["deployment_id"], r["service"], r["status"], r["host"], r["state"], r["attempts"],
                       r["action"], ",".join(r["containers"]) or "-", ",".join(r["volumes"]) or "-"] for r in rows],
                     ["DEPLOYMENT", "SERVICE", "STATUS", "HOST", "TASK", "ATTEMPTS", "ACTION", "CONTAINERS",
                      "VOLUMES"])
    _warn_down(result.get("unreachable") or {}, "its cleanup tasks wait")
    if not dry_run:
        c = result["counts"]
        text = (f"cleanup: {c['done']} done, {c['kept']} kept, {c['skipped']} skipped, {c['retried']} to retry\n"
                + (text if rows else "no open cleanup tasks"))
    emit(ctx, result, text, json_out)


@cli.command()
@click.option("--no-console", is_flag=True, help="Only seed and queue the demo deployments; do not open the console.")
@click.pass_obj
def demo(ctx, no_console):
    """Seed a demo project (busybox httpd services) and open the console hosting the engine: one deployment
    succeeds, one fails its health check, one slow build waits for you to cancel it (c), and cleanup and
    reconciliation happen within a minute."""
    from console.tui import demo as demo_mod
    engine = ctx.engine
    demo_mod.prepare(engine)
    if no_console:
        engine.start_runtime(run_jobs=True)
        demo_mod.start(engine).join()
        return
    demo_mod.start(engine)
    from console.tui.app import run_console
    run_console(engine.settings, engine=engine)


# ---- the operator's toolbox: events, audit, doctor (issue 13)
def _iso(t: float) -> str:
    import datetime
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _since(value):
    if value is None:
        return None
    from console.engine.validate import since
    from storage.clock import now
    return since(value, now())


def _event_line(e: dict, as_json: bool) -> str:
    if as_json:  # one object per line, for log shippers
        return jsonlib.dumps(e | {"at": _iso(e["time"])}, sort_keys=True, default=str)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
    return (f"{when} {e['level'].upper():<7} {e['kind']:<10} {e['deployment_id'] or '-':<12} "
            f"{e['service'] or '-':<12} {e['message']}" + (f"  [{e['actor']}]" if e["actor"] else ""))


@cli.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing events as they are stored, until Ctrl-C.")
@click.option("--since", "since", metavar="AGE|TIME", help="Only events since 30s, 10m, 2h, 1d ago or an ISO time.")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="deployment, build, cleanup, reconcile, rollback, audit, host (repeatable).")
@click.option("--deployment", "deployment_id", metavar="ID", help="Only this deployment's events.")
@click.option("--service", "service_name", metavar="SERVICE", help="Only the events of this service's deployments.")
@click.option("--limit", default=100, show_default=True, help="At most this many past events (0: all).")
@_json_flag
@click.pass_obj
def events(ctx, follow, since, kinds, deployment_id, service_name, limit, json_out):
    """The event stream: one line per event, newest last; --json prints JSON lines; --follow waits for more."""
    engine = ctx.engine
    as_json = ctx.json or json_out
    filters = dict(kinds=kinds or None, deployment_id=deployment_id, service=service_name)
    rows = engine.events_since(since=_since(since), limit=limit or None, **filters)
    try:
        for e in rows:
            click.echo(_event_line(e, as_json))
        if not follow:
            return
        follower = engine.follow_events(after_id=rows[-1]["id"] if rows else None, **filters)
        while True:
            for e in follower.poll():
                click.echo(_event_line(e, as_json))  # click.echo flushes: a pipe sees each line at once
            time.sleep(0.5)
    except KeyboardInterrupt:  # Ctrl-C is how a follow ends: quietly, exit 0
        return
    except BrokenPipeError:  # `events | head`: the reader is gone; nothing more to flush at exit (Python's docs)
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return


@cli.command()
@click.option("--since", "since", metavar="AGE|TIME", help="Only actions since 30s, 10m, 2h, 1d ago or an ISO time.")
@click.option("--limit", default=500, show_default=True, help="At most this many records (0: all).")
@_json_flag
@click.pass_obj
def audit(ctx, since, limit, json_out):
    """Who did what: every operator action (CLI and console) with the actor and SSH client address, the action,
    its target, the time and the outcome (ok, refused, failed), oldest first."""
    rows = ctx.engine.audit(since=_since(since), limit=limit or None)
    emit(ctx, [r | {"at": _iso(r["time"])} for r in rows],
         fmt.table([[time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"])), r["user"] or "-",
                     r["address"] or "-", r["action"] or "-", r["target"] or r["deployment_id"] or "-",
                     r["outcome"] or "-", (r["error"] or ("" if r["action"] else r["message"]))[:70]] for r in rows],
                   ["TIME", "ACTOR", "FROM", "ACTION", "TARGET", "OUTCOME", "DETAIL"]), json_out)


@cli.command()
@_json_flag
@click.pass_obj
def doctor(ctx, json_out):
    """What to run first: each Docker engine (API version, base image), the data dir and store modes, the store's
    schema, the lease holder, free disk for the archive, the config, the metrics port. One line each, OK / WARN /
    FAIL with the fix; exit 1 on any FAIL."""
    from console.engine import doctor as doctor_mod
    checks = doctor_mod.run(ctx.options)
    bad = doctor_mod.failed(checks)
    lines = [f"{c['level']:<4}  {c['name']:<18} {c['detail']}" + (f"\n      fix: {c['fix']}" if c["fix"] else "")
             for c in checks]
    lines.append("FAIL: fix the lines marked FAIL above" if bad else "all checks passed" +
                 (" (see the warnings)" if any(c["level"] == "WARN" for c in checks) else ""))
    emit(ctx, {"ok": not bad, "checks": checks}, "\n".join(lines), json_out)
    if bad:
        sys.exit(1)


# ---- the runtime: engine, reconcile, status (issue 4)
@cli.command("engine")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@click.pass_obj
def engine_cmd(ctx, log_level):
    """Run the engine headless in the foreground (for systemd): the lease, dispatch, cleanup, reconcile, retention.
    SIGTERM or Ctrl-C stops it within 5 s."""
    import os
    log_to_stderr(log_level)
    logging.getLogger().setLevel(getattr(logging, log_level.upper()))
    logging.getLogger("console").setLevel(getattr(logging, log_level.upper()))
    stop = threading.Event()
    # here SIGTERM is a request to stop cleanly, not an exception thrown into whatever the main thread is doing
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    engine = ctx.engine
    logging.getLogger().setLevel(getattr(logging, log_level.upper()))  # opening the log file set its own level
    runtime = engine.start_runtime(run_jobs=True)
    log.info("engine %s started (store %s, %s)", runtime.holder, engine.store_id,
             "read-only: following only" if engine.settings.read_only else
             "leader" if runtime.is_leader else "follower")
    while not stop.wait(0.5):
        pass
    t0 = time.monotonic()
    ctx.close()
    log.info("engine %s stopped in %.1f s", runtime.holder, time.monotonic() - t0)
    lingering = [t.name for t in threading.enumerate()
                 if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if lingering:  # a Docker call still blocked in a worker must not hold the exit past the 5 s promise
        log.warning("exiting with %d busy worker thread(s): %s", len(lingering), ", ".join(lingering))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _reconcile_text(result: dict) -> str:
    lines = [(f"reconcile{' (dry run)' if result['dry_run'] else ''}: {len(result['zombies'])} zombie(s), "
              f"{len(result['deadlines'])} overrun phase(s), {len(result['orphans'])} orphan(s) "
              f"(+{result['in_grace']} within the grace period), {len(result['drift'])} drift, "
              f"{len(result.get('rollbacks', []))} interrupted rollback(s); "
              f"{result['docker_calls']} Docker call(s) in {result['duration_ms']:.0f} ms")]
    for name, error in sorted(result["hosts"].items()):
        lines.append(f"host {name}: {'reachable' if error is None else 'UNREACHABLE: ' + error}")
    rows = [["zombie", z["deployment_id"], z["service"], z["host"], f"{z['phase']}: {z['reason']}", z["action"],
             z.get("result", "")] for z in result["zombies"]]
    rows += [["deadline", d["deployment_id"], d["service"], d["host"],
              f"{d['phase']} running {d['running_for']:.0f}s > {d['deadline']:.0f}s", d["action"],
              d.get("result", "")] for d in result["deadlines"]]
    rows += [["orphan", o["deployment_id"], o["deployment_status"], o["host"],
              f"{o['kind']} {o['name']} ({o['age']:.0f}s old)", o["action"], o.get("result", "")]
             for o in result["orphans"]]
    rows += [["drift", d["deployment_id"], d["service"], d["host"], d["problem"], d["action"], d.get("result", "")]
             for d in result["drift"]]
    rows += [["rollback", r["deployment_id"], r["service"], r["host"], f"rollback {r['rollback_id']}: {r['reason']}",
              r["action"], r.get("result", "")] for r in result.get("rollbacks", [])]
    if rows:
        lines.append(fmt.table(rows, ["KIND", "DEPLOYMENT", "SERVICE", "HOST", "WHAT", "ACTION", "RESULT"]))
    lines += [f"error: {e}" for e in result["errors"]]
    return "\n".join(lines)


@cli.command("reconcile")
@click.option("--dry-run", is_flag=True, help="Print the plan without touching anything.")
@_json_flag
@click.pass_obj
def reconcile_cmd(ctx, dry_run, json_out):
    """One reconciliation pass now (zombies, overrun phases, orphans, drift), or its plan."""
    result = ctx.engine.reconcile(dry_run=dry_run)
    down = {n: e for n, e in result["hosts"].items() if e is not None}
    if down and len(down) == len(result["hosts"]):
        raise EngineUnavailable("no Docker host answers: " + "; ".join(f"{n}: {e}" for n, e in sorted(down.items())))
    emit(ctx, result, _reconcile_text(result), json_out)
    _warn_down(down, "it was not reconciled")


@cli.command("status")
@_json_flag
@click.pass_obj
def status_cmd(ctx, json_out):
    """The engine: who holds the lease, each job's last run, the cleanup queue, each Docker host."""
    st = ctx.engine.status(probe=True)
    emit(ctx, st, fmt.status_text(st), json_out)



# ---- Docker hosts
@cli.group()
def host():
    """Docker hosts: the default one (`local`), named ones from `host add` (kept in the store) and this run's own
    ([hosts.NAME] in the config, DEPLOYER_DOCKER_HOST, --docker-host: never written to the store)."""


@host.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--tls-ca", default=None, help="CA certificate that signed the engine's certificate.")
@click.option("--tls-cert", default=None, help="Client certificate (with --tls-key).")
@click.option("--tls-key", default=None, help="Client key.")
@click.option("--address", default=None, metavar="IP",
              help="The host's IP address a proxy on another machine reaches its containers at; they publish "
                   "their port on it (default 127.0.0.1: the proxy runs on that machine).")
@click.option("--default", "make_default", is_flag=True, help="Deploy services without --host here.")
@click.option("--base-image", "base_image_too", is_flag=True, help="Also build deployer/base:busybox on it.")
@click.option("--force", is_flag=True, help="Add it even if its engine does not answer now.")
@_json_flag
@click.pass_obj
def host_add(ctx, name, url, tls_ca, tls_cert, tls_key, address, make_default, base_image_too, force, json_out):
    """Add the Docker engine at URL (unix://, tcp:// with TLS, ssh://) as host NAME. All or nothing: when the engine
    does not answer (or --base-image fails) nothing is added and the exit code is 3, unless --force."""
    from console.engine import hosts as H
    row = H.add_host(ctx.engine, name, url, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, default=make_default,
                     base_image=base_image_too, force=force, address=address)
    text = f"host {name} added ({url})" + (", default" if make_default else "") + \
        (f", containers published on {row['address']}" if address else "")
    if row["problem"]:
        text += f", but it is unreachable: {row['problem']}"
    elif base_image_too:
        text += f"; deployer/base:busybox {row['base_image']}"
    emit(ctx, row, text, json_out)


@host.command("ls")
@click.option("--no-probe", is_flag=True, help="Show the last recorded state instead of asking each engine now.")
@_json_flag
@click.pass_obj
def host_ls(ctx, no_probe, json_out):
    """Hosts, each probed now in parallel (at most host_timeout seconds in all)."""
    rows = ctx.engine.list_hosts(probe=not no_probe)
    emit(ctx, rows, fmt.table([[r["name"] + (" *" if r["default"] else ""), r["url"], r["address"], r["source"],
                                {True: "up", False: "DOWN", None: "?"}[r["reachable"]],
                                fmt.age(r["last_seen_at"]) if r["last_seen_at"] else "never",
                                (r["last_error"] or "")[:80]] for r in rows],
                              ["HOST", "URL", "PUBLISH", "SOURCE", "STATE", "SEEN", "LAST ERROR"]), json_out)


@host.command("rm")
@click.argument("name")
@click.option("--force", is_flag=True, help="Decommission a dead host: end its deployments, abandon its cleanups.")
@_json_flag
@click.pass_obj
def host_rm(ctx, name, force, json_out):
    """Remove host NAME; refused while services are pinned to it or deployments or cleanups still need it. With
    --force its deployments end and its open cleanup tasks are abandoned (what they would remove may remain on
    that engine; each task's events say what)."""
    from console.engine import hosts as H
    H.remove_host(ctx.engine, name, force=force)
    emit(ctx, {"removed": name}, f"host {name} removed", json_out)


def _wants_json(argv: list[str]) -> bool:
    """--json anywhere before a `--` (also when click could not parse the rest)."""
    return "--json" in (argv[:argv.index("--")] if "--" in argv else argv)


def fail(message: str, code: int, as_json: bool) -> None:
    """The one-line error and its exit code; with --json, a JSON object on stderr instead of the line."""
    if as_json:
        click.echo(jsonlib.dumps({"error": message, "code": code}), err=True)
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main():
    logging.basicConfig(level=logging.CRITICAL, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM ends the process like Ctrl-C does, so cleanups in `finally` blocks run
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    as_json = _wants_json(sys.argv[1:])
    try:
        cli.main(standalone_mode=False, prog_name="deployer-console")
    except click.exceptions.Abort:
        fail("aborted", 130, as_json)
    except click.exceptions.NoArgsIsHelpError as e:  # `deployer-console service`: the group's help, as asked
        click.echo(e.ctx.get_help() if e.ctx else e.format_message())
        sys.exit(0)
    except click.ClickException as e:
        lines = e.format_message().strip().splitlines()
        fail(lines[0] if lines else type(e).__name__, 2, as_json)
    except (DeployerError, config.ConfigError) as e:
        fail(one_line(e), getattr(e, "exit_code", 1), as_json)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # the operator gets one line; the traceback goes to the log
        # the store's errors can only come from a command that loaded the store (and peewee): looked up, not imported
        errors, peewee = sys.modules.get("storage.errors"), sys.modules.get("peewee")
        if errors is not None and isinstance(e, errors.StoreError):
            fail(one_line(e), getattr(e, "exit_code", 1), as_json)
        log.debug("unexpected error", exc_info=True)
        if peewee is not None and isinstance(e, peewee.DatabaseError):  # damaged past what opening checks, or locked
            fail(f"the store cannot be used: {one_line(e)}", 1, as_json)
        fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", 1, as_json)


if __name__ == "__main__":
    main()
