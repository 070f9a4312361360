"""The Engine: one facade over the store, the hosts and the pipeline that both faces (CLI and TUI) call. Every
operator action goes through here, so the read-only switch, validation and the audit trail are in one place."""
import contextlib
import functools
import logging
import uuid

from console.config import Settings
from console.engine import deployments as D
from console.engine import liveness, notify, validate
from console.engine.context import Context
from console.engine.errors import DeployerError, EngineUnavailable, InputError, ReadOnlyError, one_line
from console.engine.hosts import Hosts
from console.engine.paths import Paths
from storage import queries
from storage.db import StoreError, StoreUnavailable, open_store, private_dir
from storage.models import CleanupTask, Deployment, DeploymentEvent, PhaseRun, Project, Service

log = logging.getLogger(__name__)
STORE_WAIT_S = 600.0   # how long a foreground deploy waits for a store that went away under it before giving up


class OperatorAction:
    """An operator action in progress: who, what, on which target; the audit record is written from this."""

    def __init__(self, action: str, target: str, actor: str):
        self.action, self.target, self.actor = action, target, actor
        self.deployment_id: str | None = None
        self.host: str | None = None
        self.recorded = False
        # set once the request is well-formed and names something that exists: only then is a refusal recorded
        # (bad input - a malformed or unknown name or id - leaves the store untouched, whoever typed it)
        self.known = False

    def ok(self, message: str | None = None) -> None:
        """Record success inside the caller's write transaction, so the record commits with the change."""
        D.audit(self.action, self.target, "ok", self.actor, message, self.deployment_id, self.host)
        self.recorded = True


class EventFollower:
    """Polls the events stored after the last id it saw: one indexed query on the id, then the matching rows.

    On PostgreSQL an id is taken when a row is inserted, not when it commits, so a lower id can become visible after
    a higher one: ids skipped over are asked for again for GAP_WAIT_S (a rolled-back insert leaves a gap forever)."""
    GAP_WAIT_S = 10.0
    MAX_GAPS = 1000
    BATCH = 500

    def __init__(self, query, after_id: int, as_row):
        self.query, self.last_id, self.as_row = query, after_id, as_row
        self._gaps: dict[int, float] = {}

    def poll(self) -> list[dict]:
        import time
        t = time.monotonic()
        self._gaps = {i: seen for i, seen in self._gaps.items() if t - seen < self.GAP_WAIT_S}
        cond = DeploymentEvent.id > self.last_id
        if self._gaps:
            cond |= DeploymentEvent.id.in_(list(self._gaps))
        ids = [i for (i,) in DeploymentEvent.select(DeploymentEvent.id).where(cond)
               .order_by(DeploymentEvent.id).limit(self.BATCH).tuples()]
        if not ids:
            return []
        for i in ids:
            self._gaps.pop(i, None)
        if ids[-1] > self.last_id:
            seen = set(ids)
            missing = [i for i in range(self.last_id + 1, ids[-1]) if i not in seen][-self.MAX_GAPS:]
            self._gaps.update((i, t) for i in missing)
            self.last_id = ids[-1]
        rows = self.query.where(DeploymentEvent.id.in_(ids)).order_by(DeploymentEvent.id)
        return [self.as_row(e) for e in rows.objects()]


def audit_row(event: dict) -> dict:
    """An audit event as `audit` shows it. Records from before structured audit (no detail) keep their message."""
    detail = event.get("detail") or {}
    actor = event.get("actor") or ""
    user, _, address = actor.rpartition("@") if "@" in actor else (actor, "", "")
    return {"id": event["id"], "time": event["time"], "actor": actor or None, "user": user or None,
            "address": address or None, "action": detail.get("action"), "target": detail.get("target"),
            "outcome": detail.get("outcome"), "error": detail.get("error"), "deployment_id": event["deployment_id"],
            "host": event["host"], "message": event["message"]}


class Engine:
    def __init__(self, settings: Settings):
        self.settings = settings
        dir_warning = private_dir(settings.data_dir)
        self.paths = Paths(settings.data_dir)
        self.store = open_store(settings.db_url, read_only=settings.read_only)
        # modes tightened on the way in: logged, and shown by the faces (one line each)
        self.warnings = [w for w in (dir_warning, *self.store.warnings) if w]
        self.store_id = self.store.meta("store_id")
        # this run's hosts (config, environment, flag) lie over the store's in memory: opening the store writes nothing
        self.hosts = Hosts(settings)
        # what the engine's parts are given instead of the Engine (context.py)
        self.ctx = Context(self.store, settings, self.hosts, self.paths, self.store_id)
        self.runtime = None  # the scheduler, when this process hosts one

    @property
    def router(self):
        """Where routes go (the context's router, made when first used)."""
        return self.ctx.router

    @functools.cached_property
    def pipeline(self):
        """Made when first used: the store-only commands start without the pipeline's imports."""
        from console.engine.pipeline import Pipeline
        return Pipeline(self.ctx)

    def release_connection(self) -> None:
        """Close the calling thread's store connection: a thread that ends, or that will not read the store again for
        a while, gives it back (peewee keeps one per thread). The console's polls keep theirs: they run on the few
        reused threads of the event loop's executor."""
        with contextlib.suppress(Exception):   # already closed, or the store is gone: nothing to give back
            if not self.store.db.is_closed():
                self.store.db.close()

    def close(self):
        if "stats" in self.__dict__:   # only when a face asked for live stats
            self.stats.close()
        if "_container_watch" in self.__dict__:   # only when a face watched containers
            self._container_watch.close()
        self.stop_runtime()
        self.hosts.close()
        self.store.close()

    # ---- guards
    def _mutation(self, what: str) -> str:
        if self.settings.read_only:
            raise ReadOnlyError(f"read-only mode: {what} refused")
        return D.actor()

    @contextlib.contextmanager
    def operator_action(self, action: str, target: str, deployment_id: str | None = None, host: str | None = None):
        """Every operator action (CLI or console) runs inside this: the read-only guard, then one audit record with
        the actor (login name and SSH client address) and the outcome: ok, refused (InputError: the engine said no)
        or failed. A read-only refusal writes nothing: a read-only process never writes; nor does a refusal of bad
        input (see OperatorAction.known)."""
        act = OperatorAction(action, target, self._mutation(action))
        act.deployment_id, act.host = deployment_id, host
        try:
            yield act
        except InputError as e:
            if act.known:
                self._record(act, "refused", e)
            raise
        except (Exception, KeyboardInterrupt) as e:
            self._record(act, "failed", e)
            raise
        if not act.recorded:
            self._record(act, "ok")

    def _record(self, act: OperatorAction, outcome: str, error: BaseException | None = None) -> None:
        if isinstance(error, StoreError):  # the store itself failed: a record would only wait for it again
            log.warning("%s %s by %s failed (not audited: %s)", act.action, act.target, act.actor, one_line(error))
            return
        reason = None if error is None else ("interrupted" if isinstance(error, KeyboardInterrupt) else
                                             one_line(error))
        try:
            dep_id = act.deployment_id
            if dep_id is not None and not Deployment.select().where(Deployment.id == dep_id).exists():
                dep_id = None  # a refusal names an id that does not exist: the target says it, the key cannot
            with self.store.write():
                D.audit(act.action, act.target, outcome, act.actor, deployment_id=dep_id, host=act.host,
                        error=reason)
        except Exception:  # noqa: BLE001 - the action's own error is what the operator must see
            log.warning("audit record of %s %s (%s) not written", act.action, act.target, outcome, exc_info=True)

    # ---- services
    def add_service(self, name: str, source: str, port: int = 8080, health_path: str = "/", route_host=None,
                    volumes=(), shared_volumes=(), env=(), host: str | None = None, project: str = "default",
                    replace: bool = False, shell: str | None = None) -> Service:
        with self.operator_action("service add", name) as act:
            return self._add_service(act, name, source, port, health_path, route_host, volumes, shared_volumes, env,
                                     host, project, replace, shell)

    def _add_service(self, act, name, source, port, health_path, route_host, volumes, shared_volumes, env, host,
                     project, replace, shell=None) -> Service:
        from pathlib import Path
        validate.service_name(name)
        validate.project_name(project)
        port = validate.port(port)
        validate.health_path(health_path)
        if route_host:
            validate.route_host(route_host)
        if shell is not None:
            validate.shell(shell)
        src = Path(source).expanduser()
        if not src.is_dir():
            raise InputError(f"source {source} is not a directory")
        if not (src / "Dockerfile").is_file():
            raise InputError(f"source {source} has no Dockerfile")
        vols, shared = validate.volume_specs(volumes, shared_volumes)
        env_map = validate.env_map(env)
        if host is not None:
            validate.host_name(host)
            if host not in self.hosts.names():
                raise InputError(f"unknown host {host!r}; add it with `host add`")
        act.known = True
        with self.store.write():
            proj, _ = Project.get_or_create(name=project)
            fields = dict(project=proj, source=str(src.resolve()), port=port, health_path=health_path,
                          route_host=route_host, volumes=vols, shared_volumes=shared, env=env_map, host=host,
                          shell=shell)
            existing = Service.get_or_none(Service.name == name)
            if existing and not replace:
                raise InputError(f"service {name} exists; use --replace to change it")
            if existing:
                Service.update(**fields).where(Service.id == existing.id).execute()
            else:
                Service.create(name=name, **fields)
            act.ok(f"Service {name} {'updated' if existing else 'added'} (source {src})")
        return Service.get(Service.name == name)

    def services(self) -> list[dict]:
        return [queries.service_dict(s) for s in Service.select().order_by(Service.name)]

    def service(self, name: str) -> Service:
        validate.service_name(name)
        svc = Service.get_or_none(Service.name == name)
        if svc is None:
            raise InputError(f"unknown service {name}; see `deployer-console service ls`")
        return svc

    # ---- deployments
    def create_deployment(self, service_name: str, actor_name: str | None = None, check_engine: bool = False
                          ) -> Deployment:
        """Queue a deployment on the service's host, without an audit record (`deploy` is the operator's action).
        With check_engine the host is asked first (bounded by host_timeout): an engine that does not answer raises
        EngineUnavailable and nothing is recorded."""
        actor_name = actor_name or self._mutation("deploy")
        svc = self.service(service_name)
        host = svc.host or self.hosts.default_name()
        if check_engine:
            self.hosts.spec(host)   # an unknown host is bad input (exit 2), not an outage
            self.hosts.require([host])
        with self.store.write():
            dep = Deployment.create(id=uuid.uuid4().hex[:12], service=svc, status="queued", host=host,
                                    actor=actor_name)
            D.event(dep.id, f"Deployment {dep.id} of {svc.name} queued on {host}", actor_name=actor_name, host=host)
        return dep

    def deploy(self, service_name: str, detach: bool = False, on_phase=None, on_wait=None, on_created=None,
               on_cancel=None, check_engine: bool = False, clean_up: bool = False) -> Deployment:
        """Queue a deployment of the service (audited as `deploy`: ok when queued), and unless detach run it here.
        With check_engine its host is probed first: an engine that does not answer is EngineUnavailable and nothing
        is recorded. Run here, `on_phase(index, phase)` is called as each phase starts, `on_wait(reason)` while it
        waits for another deployment of its service; a Ctrl-C cancels it (`on_cancel(dep)` first) and returns once
        its pipeline has stopped. With clean_up a failed or cancelled deployment's cleanup runs here once due (a
        foreground run from the CLI may have no engine behind it)."""
        with self.operator_action("deploy", service_name) as act:
            dep = self.create_deployment(service_name, act.actor, check_engine=check_engine)
            act.deployment_id, act.host = dep.id, dep.host
        if on_created:
            on_created(dep)
        if not detach:
            self._run_here(dep, act.actor, on_phase, on_wait, on_cancel)
            if clean_up:
                from console.engine.cleanup import run_inline_if_due
                run_inline_if_due(self.ctx, dep.id)
        return Deployment.get_by_id(dep.id)

    def _run_here(self, dep: Deployment, actor_name: str, on_phase, on_wait, on_cancel) -> None:
        """Run a queued deployment's pipeline in a thread of this process, so that a Ctrl-C in the caller's thread
        becomes a cancel of the deployment rather than an exception in the middle of a phase."""
        import threading
        failure: list[BaseException] = []
        # an Event, not Thread.join: on Python 3.11 a Ctrl-C that interrupts join() marks the thread as ended while
        # it still runs (join's own cleanup releases the tstate lock), so the caller would go on before the
        # cancelled pipeline had stopped
        ended = threading.Event()

        stop = threading.Event()

        def run():
            try:
                with notify.foreground(self.store, self.settings):  # a failure is notified before we return
                    self._through_outages(dep, actor_name, on_phase, on_wait, stop)
            except BaseException as e:  # raised again in the caller's thread
                failure.append(e)
            finally:
                ended.set()

        threading.Thread(target=run, name=f"deploy-{dep.id}").start()
        try:
            while not ended.wait(0.2):
                pass
        except KeyboardInterrupt:
            stop.set()      # a pipeline waiting out a store outage gives up at once
            if on_cancel:
                on_cancel(dep)
            with contextlib.suppress(InputError, StoreUnavailable):   # it ended meanwhile / nothing to write to
                self.cancel(dep.id)
            while not ended.wait(0.2):
                pass
        if failure:
            raise failure[0]

    def _through_outages(self, dep: Deployment, actor_name: str, on_phase, on_wait, stop) -> None:
        """Run the pipeline here; when the store goes away under it (a PostgreSQL restart), wait for the store and
        resume the deployment from its recorded phase in this process, as the engine resumes the pipelines an outage
        cut: a foreground `deploy` may have no engine behind it, and one would wait zombie_after first. Gives up
        (StoreUnavailable, the deployment left `deploying` for an engine to resume) after STORE_WAIT_S or a Ctrl-C;
        returns without resuming when the deployment is no longer this process's to run."""
        import os
        resume = False
        while True:
            try:
                if resume:
                    self.pipeline.run(dep.id, actor_name=actor_name, resume=True, on_phase=on_phase)
                else:
                    self.pipeline.run(dep.id, actor_name=actor_name, on_phase=on_phase, on_wait=on_wait)
                return
            except StoreUnavailable as e:
                if on_wait:
                    on_wait(f"{one_line(e)}; deployment {dep.id} resumes here once the store answers (waiting up to "
                            f"{STORE_WAIT_S / 60:.0f} min; Ctrl-C leaves it to the engine)")
                if not self._store_answers(stop, STORE_WAIT_S):
                    raise
            row = Deployment.get_or_none(Deployment.id == dep.id)
            if row is None or row.status not in ("queued", "deploying"):
                return                           # it ended (a cancel went through before the cut)
            if row.status == "deploying" and not (row.owner_machine == D.MACHINE and row.owner_pid == os.getpid()):
                if on_wait:
                    on_wait(f"deployment {dep.id} is run by {row.owner} now; not resumed here")
                return
            resume = row.status == "deploying"
            if on_wait:
                on_wait(f"the store answers again: deployment {dep.id} "
                        f"{f'resumes from {row.phase}' if resume else 'starts'}")

    def _store_answers(self, stop, within: float) -> bool:
        """Whether the store answers a read within `within` seconds (asked every second); False at once on `stop`."""
        import time
        end = time.monotonic() + within
        while not stop.is_set() and time.monotonic() < end:
            try:
                self.store.db.execute_sql("SELECT 1")
                return True
            except Exception:  # noqa: BLE001 - still unreachable (StoreUnavailable or the driver's own error)
                stop.wait(1.0)
        return False

    def get(self, deployment_id: str) -> Deployment:
        return D.resolve(self.store, deployment_id)

    def deployments(self, status=None, service=None, host=None, limit: int | None = None, match=None,
                    ids=None) -> list[dict]:
        """Deployments newest first. `match`: words that must each be a substring of the id, service, status, host
        or error (`status:fail` for one field); `ids`: only these deployments."""
        validate.deployment_filters(status, service, host)
        return queries.deployment_rows(status=status, service=service, host=host, limit=limit, match=match, ids=ids)

    # ---- trends (console/engine/trends.py decides the rules)
    def trends(self, service_name: str) -> dict:
        """The service's last 20 deployments: each phase's durations (oldest first), failure rate, median run."""
        from console.engine import trends
        validate.service_name(service_name)
        return trends.service_trends(service_name)

    def slow_deployments(self, rows: list[dict]) -> set[str]:
        """Ids of the given deployment rows whose run took over twice their service's median."""
        return self._slow_runs.slow_ids(rows)

    @functools.cached_property
    def _slow_runs(self):
        from console.engine.trends import SlowRuns
        return SlowRuns()

    @functools.cached_property
    def stats(self):
        """Live CPU/memory of our running containers, one stream per container a face watches (engine/stats.py)."""
        from console.engine.stats import StatsHub
        return StatsHub(self.hosts.gateway, self.store_id)

    def container_changes(self) -> int:
        """A number that moves when one of this store's containers starts, stops, dies or goes, on any host (one
        Docker event stream per host, opened at the first call: engine/container_watch.py). A face that shows
        containers reads them again when it moves."""
        if "_container_watch" not in self.__dict__:
            self._container_watch.watch(self.hosts.names())   # later host changes: containers() passes them on
        return self._container_watch.mark()

    @functools.cached_property
    def _container_watch(self):
        from console.engine.container_watch import ContainerWatch
        return ContainerWatch(self.hosts.gateway, self.store_id)

    def deployment_count(self, match=None) -> int:
        return queries.count_deployments(match)

    def service_names(self) -> list[str]:
        return [n for (n,) in Service.select(Service.name).order_by(Service.name).tuples()]

    def current_releases(self, services=None) -> dict[str, str]:
        """{service: deployment id} of the release each service's `current` link points at (what serves); `services`
        (names) saves the query when the caller knows them."""
        from console.engine.paths import link_target
        out = {}
        names = services if services is not None else self.service_names()
        for name in names:
            target = link_target(self.paths.current(name))
            if target:
                out[name] = target
        return out

    def list_hosts(self, probe: bool = True, timeout: float | None = None) -> list[dict]:
        """Every host, probed live unless probe=False (hosts.list_hosts)."""
        from console.engine.hosts import list_hosts
        return list_hosts(self.ctx, probe=probe, timeout=timeout)

    def hosts_summary(self) -> list[dict]:
        """Each Docker host: url, reachability, last error, last seen, and its deployments counted by status."""
        from peewee import fn
        counts: dict[str, dict[str, int]] = {}
        for host, status, n in (Deployment.select(Deployment.host, Deployment.status, fn.COUNT(Deployment.id))
                                .group_by(Deployment.host, Deployment.status).tuples()):
            counts.setdefault(host, {})[status] = n
        return [{**row, "deployments": counts.get(row["name"], {})} for row in self.hosts.rows()]

    def show(self, deployment_id: str, events: bool = True, event_limit: int = 500) -> dict:
        dep = self.get(deployment_id)
        out = D.as_dict(dep)
        out["phases"] = [{"phase": p.phase, "attempt": p.attempt, "started_at": p.started_at,
                          "finished_at": p.finished_at, "outcome": p.outcome, "detail": p.detail,
                          "duration": (p.finished_at - p.started_at) if p.finished_at else None}
                         for p in PhaseRun.select().where(PhaseRun.deployment == dep.id).order_by(PhaseRun.id)]
        task = CleanupTask.select().where(CleanupTask.deployment == dep.id).order_by(CleanupTask.id.desc()).first()
        out["cleanup"] = queries.cleanup_dict(task) if task else None
        if events:
            rows = (DeploymentEvent.select().where(DeploymentEvent.deployment == dep.id)
                    .order_by(DeploymentEvent.id.desc()).limit(event_limit))
            out["events"] = [queries.event_dict(e) for e in reversed(list(rows))]
        return out

    def cancel(self, deployment_id: str) -> Deployment:
        with self.operator_action("cancel", deployment_id, deployment_id=deployment_id) as act:
            actor = act.actor
            dep = self.get(deployment_id)
            act.deployment_id, act.target, act.host, act.known = dep.id, dep.id, dep.host, True
            if dep.status not in D.ACTIVE:
                raise InputError(f"deployment {dep.id} is {dep.status}; only queued or deploying deployments can be "
                                 f"cancelled")
            # A live pipeline stops by itself and keeps its heartbeat until it has (the cleanup task waits for that);
            # one whose process is gone leaves `current` and the route behind, so they are put back here.
            gone = liveness.is_stuck(dep, self.settings.scheduler.zombie_after)
            with self.store.write():
                D.move(self.store, dep.id, "cancelled", expect=D.ACTIVE, actor_name=actor,
                       cleanup_delay=self.settings.cleanup.cleanup_delay,
                       heartbeat_at=None if gone else dep.heartbeat_at,
                       message=f"Deployment {dep.id} cancelled by {actor}")
                if gone:  # no pipeline will ever close its phase rows
                    D.close_phases(dep.id, f"interrupted: the pipeline was gone when {actor} cancelled it")
                act.ok()
        if gone:
            from console.engine import releases
            releases.restore(self.ctx, Deployment.get_by_id(dep.id))
        return Deployment.get_by_id(dep.id)

    def exec_session(self, deployment_id: str, command=(), tty: bool = True):
        """A shell (no command: the service's, `sh` unless set) or `command` in the deployment's running container,
        ready to run in the caller's terminal (shell.ExecSession.run). Refused in read-only mode and unless the
        container is this store's and this deployment's; audited (who, which container, on which host) before it
        opens."""
        from console.engine import shell
        with self.operator_action("exec", deployment_id, deployment_id=deployment_id) as act:
            dep = self.get(deployment_id)
            act.deployment_id, act.target, act.host, act.known = dep.id, dep.id, dep.host, True
            session = shell.prepare(self.ctx, dep, list(command), tty)
            act.target = f"{dep.id} container {session.container}"
            what = "shell" if not command else "command"
            with self.store.write():
                act.ok(f"{act.actor} opened a {what} in container {session.container} of deployment {dep.id} on "
                       f"{dep.host}: {' '.join(session.command)[:200]}")
        return session

    def exec(self, deployment_id: str, command=(), tty: bool = True) -> int:
        """Run `exec_session` here, in this process's terminal; the command's exit code."""
        return self.exec_session(deployment_id, command, tty).run()

    def resume(self, deployment_id: str, from_phase: str | None = None, detach: bool = False, on_phase=None):
        """Resume a failed or stuck deployment from a phase. With detach the request is written to the store for
        the engine that holds the lease; otherwise it runs here, in the foreground."""
        with self.operator_action("resume", deployment_id, deployment_id=deployment_id) as act:
            actor = act.actor
            dep = self.get(deployment_id)
            act.deployment_id, act.target, act.host = dep.id, dep.id, dep.host
            phase = validate.phase(from_phase) if from_phase is not None else None
            act.known = True
            if dep.status not in D.RESUMABLE:
                raise InputError(f"deployment {dep.id} is {dep.status}; only failed or stuck deployments can be "
                                 f"resumed")
            if dep.status == "deploying" and not liveness.is_stuck(dep, self.settings.scheduler.zombie_after):
                raise InputError(f"deployment {dep.id} is deploying and its pipeline is alive; cancel it first")
            if detach:
                with self.store.write():
                    Deployment.update(resume_from=phase or dep.phase or "PULLING_SOURCE").where(
                        Deployment.id == dep.id).execute()
                    act.ok(f"Resume of {dep.id} from {phase or dep.phase} requested by {actor}")
                return Deployment.get_by_id(dep.id)
            # audited when it starts (ok: resumed); how the run ends is the deployment's own events
            with self.store.write():
                act.ok(f"Resume of {dep.id} from {phase or dep.phase} started by {actor}")
        with notify.foreground(self.store, self.settings):
            self.pipeline.run(dep.id, from_phase=phase, actor_name=actor, resume=True, on_phase=on_phase)
        return Deployment.get_by_id(dep.id)

    # ---- rollback and cleanup
    def rollback(self, service_name: str, to: str | None = None):
        """Roll the service back to its previous successful release (or `to`); raises RollbackFailed on failure."""
        from console.engine.rollback import rollback
        with self.operator_action("rollback", service_name + (f" to {to}" if to else "")) as act, \
                notify.foreground(self.store, self.settings):
            self.service(service_name)
            if to is not None:  # `--to ''` is bad input, not "the previous release"
                self.get(to)
            act.known = True
            return rollback(self.ctx, self.pipeline, self.service(service_name), to, act.actor)

    def rollback_target(self, service_name: str) -> dict:
        """What `rollback(service_name)` would do now: {"serving": {id, status} or None, "target": id}. Raises
        InputError when the service has nothing to roll back to, as `rollback` would. A confirmation names this
        target and passes it on as `to`, so the release confirmed is the one rolled back to."""
        from console.engine.rollback import pick_target
        serving, target = pick_target(self.service(service_name), None, self.paths)
        return {"serving": {"id": serving.id, "status": serving.status} if serving else None, "target": target.id}

    def rollbacks(self, service_name: str | None = None) -> list[dict]:
        from storage.models import Rollback
        q = Rollback.select().order_by(Rollback.id.desc())
        if service_name:
            q = q.where(Rollback.service == self.service(service_name).id)
        return [{"id": r.id, "service": r.service.name, "from": r.from_deployment_id, "to": r.to_deployment_id,
                 "state": r.state, "actor": r.actor, "error": r.error, "started_at": r.started_at,
                 "finished_at": r.finished_at} for r in q]

    def cleanup(self, dry_run: bool = False) -> dict:
        """Run the due cleanup tasks now, or (dry_run) the plan: what would be removed, archived, kept, and why."""
        from console.engine.cleanup import Cleaner
        cleaner = Cleaner(self.ctx)
        if dry_run:
            return {"dry_run": True, "plan": cleaner.plan()}
        with self.operator_action("cleanup", "due cleanup tasks") as act:
            act.known = True
            # the hosts the open tasks need: none answering is an outage (exit 3), some down is a warning
            needed = {d.host for d in Deployment.select(Deployment.host).join(CleanupTask).where(
                CleanupTask.state.in_(D.QUEUED_TASK))}
            down = self.hosts.require(needed)
            counts = cleaner.run_due()
            with self.store.write():
                act.ok(f"Cleanup run by {act.actor}: {counts['done']} done, {counts['kept']} kept, "
                       f"{counts['skipped']} skipped, {counts['retried']} to retry")
        return {"dry_run": False, "counts": counts, "plan": cleaner.plan(), "unreachable": down}

    def clean_now(self, deployment_id: str) -> dict:
        """Run the cleanup of a failed or cancelled deployment now instead of after cleanup_delay, through the same
        Cleaner the scheduler runs (archive, backups, removal events, keep rules). Returns {"id", "outcome" (done or
        kept), "state"}. Refused (InputError, named) when there is nothing to run: not failed/cancelled, no open
        task, already done or running, or the cleanup must wait (its pipeline still stopping, an active rollback);
        a run that fails raises with the task's error (it stays queued and is retried)."""
        from console.engine.cleanup import Cleaner
        from storage.clock import now
        with self.operator_action("clean", deployment_id, deployment_id=deployment_id) as act:
            dep = self.get(deployment_id)
            act.deployment_id, act.target, act.host, act.known = dep.id, dep.id, dep.host, True
            if dep.status not in ("failed", "cancelled"):
                raise InputError(f"deployment {dep.id} is {dep.status}; only failed or cancelled deployments are "
                                 f"cleaned up")
            task = (CleanupTask.select().where(CleanupTask.deployment == dep.id)
                    .order_by(CleanupTask.id.desc()).first())
            if task is None:
                raise InputError(f"deployment {dep.id} has no cleanup task")
            if task.state != "pending":
                said = {"done": "is already cleaned up", "running": "is being cleaned up now",
                        "kept": "is kept for inspection (keep_failed)", "abandoned": "has an abandoned cleanup"}
                raise InputError(f"deployment {dep.id} {said.get(task.state, f'has a {task.state} cleanup')}")
            self.hosts.require([dep.host])    # its engine does not answer: exit 3, nothing recorded as run
            with self.store.write():
                CleanupTask.update(due_at=now()).where((CleanupTask.id == task.id) &
                                                       (CleanupTask.state == "pending")).execute()
            counts = Cleaner(self.ctx).run_due(deployment_id=dep.id)
            task = CleanupTask.get_by_id(task.id)
            if task.state == "running":   # another engine claimed it first: it runs there
                raise InputError(f"deployment {dep.id} is being cleaned up by another engine now")
            if task.state == "pending":   # it has to wait (pipeline, rollback, archive space) or failed: say why
                why = task.last_error or "an active rollback involves it"
                if counts["retried"] and task.attempts and not why.startswith(("Volume kept", "Engine stopping")):
                    raise DeployerError(f"cleanup of deployment {dep.id} failed: {why}; it is retried")
                raise InputError(f"cleanup of deployment {dep.id} cannot run now: {why}")
            outcome = "done" if task.state == "done" else task.state
            with self.store.write():
                act.ok(f"Cleanup of deployment {dep.id} run now by {act.actor}: {outcome}")
        return {"id": dep.id, "outcome": outcome, "state": task.state}

    def for_each(self, action: str, deployment_ids) -> list[dict]:
        """`cancel` or `clean` (clean_now) on each deployment, in order, each its own audited action: one result per
        id, {"id", "ok": True, "outcome"} or {"id", "ok": False, "error", "code"}, so one that does not apply is
        named and skipped while the others still run. Read-only refuses the whole request before any."""
        run = {"cancel": lambda i: self.cancel(i).status, "clean": lambda i: self.clean_now(i)["outcome"]}[action]
        self._mutation(action)
        out = []
        for dep_id in dict.fromkeys(deployment_ids):
            try:
                out.append({"id": dep_id, "ok": True, "outcome": run(dep_id)})
            except DeployerError as e:
                out.append({"id": dep_id, "ok": False, "error": one_line(e), "code": e.exit_code})
        return out

    # ---- containers
    def containers(self, all: bool = False, host: str | None = None, unreachable: dict | None = None) -> list[dict]:
        """Our containers on one host, or on every host. Without a host, a host that does not answer is skipped
        and reported in `unreachable` ({host: error}) so one dead engine never hides the others."""
        if host is not None:
            validate.host_name(host)
        from console.engine.reconcile import container_verdicts
        names = [host] if host is not None else self.hosts.names()
        if host is None and "_container_watch" in self.__dict__:
            self._container_watch.watch(names)   # a host added or removed since is watched from this read on
        listed = []
        for name in names:
            try:
                listed.append(self.hosts.gateway(name).list_managed(self.store_id, all=all))
            except EngineUnavailable as e:
                if host is not None or unreachable is None:
                    raise
                unreachable[name] = one_line(e)
        # the status of the deployments these containers belong to only (not every row of the store)
        known = queries.known_deployments({i.deployment_id for infos in listed for i in infos if i.deployment_id})
        out = []
        for infos in listed:
            # orphan = what a reconcile pass would sweep, decided by the pass's own rule; look-alikes are foreign
            verdicts = container_verdicts(self.ctx, infos)
            for info in infos:
                row = info.as_dict()
                row["deployment_status"] = known.get(info.deployment_id)
                row.update(verdicts[info.id])
                out.append(row)
        return sorted(out, key=lambda r: (-r["created"], r["name"]))

    # ---- events and logs
    def events(self, since_id: int = 0, deployment_id: str | None = None, kinds=None, limit: int = 500) -> list[dict]:
        """Events after `since_id`, oldest first (a live tail polls with the last id it saw)."""
        q = DeploymentEvent.select().where(DeploymentEvent.id > since_id)
        if deployment_id:
            q = q.where(DeploymentEvent.deployment == self.get(deployment_id).id)
        if kinds:
            q = q.where(DeploymentEvent.kind.in_(list(kinds)))
        if since_id == 0:
            rows = list(q.order_by(DeploymentEvent.id.desc()).limit(limit))[::-1]
        else:
            rows = list(q.order_by(DeploymentEvent.id).limit(limit))
        return [queries.event_dict(e) for e in rows]

    def _event_query(self, kinds=None, deployment_id: str | None = None, service: str | None = None,
                     since: float | None = None):
        from peewee import JOIN
        q = (DeploymentEvent.select(DeploymentEvent, Service.name.alias("service_name"))
             .join(Deployment, JOIN.LEFT_OUTER).join(Service, JOIN.LEFT_OUTER))
        if kinds:
            q = q.where(DeploymentEvent.kind.in_([validate.event_kind(k) for k in kinds]))
        if deployment_id:
            q = q.where(DeploymentEvent.deployment == self.get(deployment_id).id)
        if service is not None:
            q = q.where(Service.name == self.service(service).name)
        if since is not None:
            q = q.where(DeploymentEvent.time >= since)
        return q

    @staticmethod
    def _event_row(e) -> dict:
        return queries.event_dict(e) | {"service": getattr(e, "service_name", None)}

    def events_since(self, since: float | None = None, kinds=None, deployment_id: str | None = None,
                     service: str | None = None, limit: int | None = 100) -> list[dict]:
        """The newest `limit` events (at or after `since`, epoch seconds) matching the filters, oldest first."""
        q = self._event_query(kinds, deployment_id, service, since).order_by(DeploymentEvent.id.desc())
        if limit:
            q = q.limit(limit)
        return [self._event_row(e) for e in reversed(list(q.objects()))]

    def follow_events(self, after_id: int | None = None, kinds=None, deployment_id: str | None = None,
                      service: str | None = None) -> "EventFollower":
        """A follower whose poll() returns the events stored since the last poll (from now, or after `after_id`)."""
        query = self._event_query(kinds, deployment_id, service)  # validated now: a bad filter fails at once
        if after_id is None:
            from peewee import fn
            after_id = DeploymentEvent.select(fn.MAX(DeploymentEvent.id)).scalar() or 0
        return EventFollower(query, after_id, self._event_row)

    def audit(self, since: float | None = None, limit: int | None = 500) -> list[dict]:
        """Who did what: the audit records (newest `limit`, oldest first), each with the actor split into the login
        name and the SSH client address it came from, the action, its target and the outcome."""
        rows = self.events_since(since=since, kinds=["audit"], limit=limit)
        return [audit_row(r) for r in rows]

    def container_logs(self, container_id: str, host: str | None = None, follow: bool = False, tail: int = 200):
        """Bytes of a managed container's log, or (follow=True) a generator of chunks. Only our containers."""
        gw = self.hosts.gateway(host)
        ours = {c.id for c in gw.list_managed(self.store_id)}
        match = [cid for cid in ours if cid.startswith(container_id)]
        if len(match) != 1:
            raise InputError(f"unknown container {container_id} on host {gw.host} (only managed containers)")
        return gw.follow_logs(match[0], tail=tail) if follow else gw.logs(match[0], tail=tail)

    # ---- runtime: scheduler, lease, reconciliation (issue 4). Logic lives in scheduler.py, lease.py, reconcile.py.
    def start_runtime(self, run_jobs: bool = True):
        """Start this process's runtime: the lease and the scheduler whose jobs only the lease holder runs. A
        read-only process never runs jobs (it follows)."""
        from console.engine.scheduler import Runtime
        if self.runtime is None:
            self.runtime = Runtime(self.ctx, self.pipeline, run_jobs=run_jobs and not self.settings.read_only).start()
        return self.runtime

    def in_flight(self) -> list[dict]:
        """The deployments whose pipelines this process's runtime runs right now (none for a follower): what a
        quitting console asks about."""
        ids = self.runtime.running_ids() if self.runtime is not None else set()
        if not ids:
            return []
        rows = Deployment.select().where(Deployment.id.in_(sorted(ids)) & (Deployment.status == "deploying"))
        return [D.as_dict(d) for d in rows.order_by(Deployment.created_at)]

    def stop_runtime(self) -> None:
        """Stop this process's runtime cleanly (within 5 s): its pipelines stop and are handed over with a resume
        request for their recorded phase, which the next engine to hold the lease runs; the lease is released so
        another engine takes it at once. Idempotent; `close()` calls it too."""
        if self.runtime is not None:
            self.runtime.stop()

    def status(self, probe: bool = False) -> dict:
        """Leader, this process's role, each job's last run, cleanup queue, hosts (probed now with probe; see
        status.py)."""
        from console.engine.status import status
        return status(self.ctx, self.runtime, probe=probe)

    def reconcile(self, dry_run: bool = False) -> dict:
        """One observe → diff → act pass now, or (dry_run) its plan without touching anything."""
        from console.engine import reconcile
        if dry_run:
            return reconcile.manual(self.ctx, self.pipeline, self.runtime, dry_run=True)
        with self.operator_action("reconcile", "every host") as act:
            act.known = True
            result = reconcile.manual(self.ctx, self.pipeline, self.runtime)
            with self.store.write():
                act.ok(f"Reconciliation pass run by {act.actor}")
        return result
