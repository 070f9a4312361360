"""Cleanup of failed and cancelled deployments, and of superseded releases beyond `keep_releases`: plan and apply,
rollback-aware, with retention and an archive.

Tasks come from the outbox (CleanupTask rows written with the status move). A run claims due tasks with a
compare-and-set (all in one write), so two processes never run the same task, and runs them in a thread pool. It lists
each host once per run (containers, volumes, images of this store), and every container is still checked against
this store's id and its task's deployment id before it is touched; the containers of all tasks go through one
bounded pool of archive-then-remove jobs; a task's events are written in one statement with its outcome.

Per task: skip and re-queue while a rollback involves the deployment; keep the last N failed deployments of a service
(containers stopped, not removed); otherwise archive each container's log, remove the container (force, v), back up
and remove the deployment's own volumes, remove its image once unused and its release directory. A failure anywhere
re-queues the task with capped exponential backoff; whatever was not yet archived is not removed. A volume whose
backup does not fit the archive (archive.py) is kept and its task waits; a backup helper left by a run that died mid-
backup is removed first; a stopping runtime (`should_stop`) abandons a backup in progress and the task goes back to
the queue.

Superseded deployments keep their stopped container, image and release as rollback targets, the newest
`keep_releases` per service only: older ones get a task (reason `superseded`) when a success or a rollback supersedes
one and from the retention job. Never one that serves, that `current`/`previous` points at, or that an active
rollback involves.

A cancel only stops the pipeline; removal is this task's. It waits while the pipeline may still run (its heartbeat is
fresh), so a container created just as the cancel landed is listed and removed with the rest, its log archived.
"""
import logging
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from peewee import fn

from console.engine import deployments as D
from console.engine import labels as L
from console.engine import metrics, notify
from console.engine.archive import Archive, DoesNotFit
from console.engine.errors import Cancelled, EngineUnavailable, one_line
from console.engine.liveness import pipeline_alive
from console.engine.paths import link_target
from console.engine.pipeline import container_name, image_tag
from console.engine.validate import PHASES
from storage.clock import now
from storage.models import CleanupTask, Deployment, DeploymentEvent, PhaseRun, Rollback, Service

log = logging.getLogger(__name__)
STALE_RUNNING_S = 300
ROLLBACK_RECHECK_S = 2.0
ARCHIVE_RECHECK_S = 600.0   # a volume whose backup does not fit waits: room comes back as retention prunes
PIPELINE_RECHECK_S = 1.0
WAITS_FOR_PIPELINE = "waits for its pipeline to stop"


def active_rollback_ids() -> set[str]:
    ids = set()
    for r in Rollback.select(Rollback.from_deployment, Rollback.to_deployment).where(Rollback.state == "active"):
        ids.update(x for x in (r.from_deployment_id, r.to_deployment_id) if x)
    return ids


def _skip_noted(deployment_id: str, message: str) -> bool:
    """Whether the skip event was already written during the rollback(s) now involving the deployment."""
    since = (Rollback.select(fn.MIN(Rollback.started_at)).where(
        (Rollback.state == "active") & ((Rollback.from_deployment == deployment_id) |
                                        (Rollback.to_deployment == deployment_id))).scalar())
    if since is None:
        return False
    return DeploymentEvent.select().where((DeploymentEvent.deployment == deployment_id) &
                                          (DeploymentEvent.kind == "cleanup") & (DeploymentEvent.message == message) &
                                          (DeploymentEvent.time >= since)).exists()


def linked_releases(paths, service_name: str) -> set[str]:
    """The deployments the service's current and previous links point at: never cleaned while they do."""
    return {t for t in (link_target(paths.current(service_name)), link_target(paths.previous(service_name))) if t}


def releases_beyond_keep(paths, svc: Service, keep: int) -> list[Deployment]:
    """Superseded deployments of the service past the newest `keep` (by creation), minus the ones a link points at
    or an active rollback involves, and minus those already cleaned since they were superseded (a task created
    after the deployment's last status move) or with a cleanup task open."""
    superseded = list(Deployment.select().where((Deployment.service == svc.id) &
                                                (Deployment.status == "superseded"))
                      .order_by(Deployment.created_at.desc(), Deployment.id.desc()))
    older = superseded[keep:]
    if not older:
        return []
    protected = linked_releases(paths, svc.name) | active_rollback_ids()
    tasks: dict[str, list[CleanupTask]] = {}
    for t in CleanupTask.select().where(CleanupTask.deployment.in_([d.id for d in older])):
        tasks.setdefault(t.deployment_id, []).append(t)
    return [d for d in older if d.id not in protected and not any(
        t.state in D.OPEN_TASK or t.created_at >= d.updated_at for t in tasks.get(d.id, []))]


def queue_release_retention(ctx, svc: Service) -> int:
    """Superseded releases beyond `keep_releases` get a cleanup task (reason `superseded`): the Cleaner archives
    their logs and removes container, image and release directory with events, as for a failed deployment."""
    keep = int(ctx.settings.cleanup.keep_releases)
    try:
        with ctx.store.write():
            beyond = releases_beyond_keep(ctx.paths, svc, keep)
            if beyond:  # none has an open task (releases_beyond_keep, in this write): one insert of each kind
                t = now()
                CleanupTask.insert_many([{"deployment": dep.id, "reason": "superseded", "state": "pending",
                                          "due_at": t, "attempts": 0, "created_at": t, "updated_at": t}
                                         for dep in beyond]).execute()
                D.events([(dep.id, t, "info", "cleanup", f"Deployment {dep.id} is older than the newest {keep} "
                           f"superseded release(s) of {svc.name}; its cleanup is queued", dep.host) for dep in beyond])
    except Exception as e:  # the hourly retention job tries again; a deploy or rollback never fails on it
        log.warning("release retention of %s: %s", svc.name, e)
        return 0
    return len(beyond)


class CleanupFailed(Exception):
    pass


class Events:
    """A deployment's cleanup events, kept in order with their own times and written in one statement inside the
    write that records the task's outcome (done, kept, retried): one store write per deployment, not one per event.
    A run that dies before that write leaves the task `running`; it is run again and says again what it does."""

    def __init__(self, deployment_id: str, host: str | None):
        self.deployment_id = deployment_id
        self.host = host
        self.rows: list[tuple] = []
        self._lock = threading.Lock()

    def add(self, message: str, level: str = "info") -> None:
        row = (self.deployment_id, now(), level, "cleanup", message, self.host)
        with self._lock:
            self.rows.append(row)

    def flush(self) -> None:
        """Write what was added (call inside a write transaction)."""
        with self._lock:
            rows, self.rows = self.rows, []
        D.events(rows)


@dataclass
class HostView:
    """What one host holds for this store, listed once per cleanup run (not once per deployment): our containers and
    volumes by deployment id, and our images' tags. Listed only after every task of the run was checked for a
    pipeline that may still create a container, so nothing a task must remove is missing from it."""
    containers: dict[str, list] = field(default_factory=dict)
    volumes: dict[str, list] = field(default_factory=dict)
    image_tags: dict[str, int] = field(default_factory=dict)
    error: Exception | None = None

    @classmethod
    def of(cls, gw, store_id: str) -> "HostView":
        view = cls()
        for c in gw.list_managed(store_id):
            view.containers.setdefault(c.deployment_id, []).append(c)
        for v in gw.list_volumes(store_id):
            view.volumes.setdefault((v.get("Labels") or {}).get(L.DEPLOYMENT), []).append(v)
        view.image_tags = gw.store_image_tags(store_id)
        return view


class Cleaner:
    def __init__(self, ctx, workers: int = 16, container_workers: int = 16, should_stop=None):
        self.ctx = ctx
        self.workers = workers                      # deployments cleaned side by side
        self.container_workers = container_workers  # containers (of every deployment of a run) removed side by side
        self._removals: ThreadPoolExecutor | None = None  # the run's shared pool of archive-then-remove jobs
        self._built: set[str] | None = None  # the run's deployments that have build output (None: ask per task)
        self.should_stop = should_stop or (lambda: False)  # the runtime stopping: claim nothing more, abandon backups
        self.archive = Archive(ctx.paths.archive_root(), ctx.settings)

    # ---- which tasks
    @staticmethod
    def _due_condition(t: float):
        """Pending and due, or claimed by a run that stopped touching it (a stale claim)."""
        return (((CleanupTask.state == "pending") & (CleanupTask.due_at <= t)) |
                ((CleanupTask.state == "running") & (CleanupTask.updated_at < t - STALE_RUNNING_S)))

    def _due_query(self, t: float):
        return CleanupTask.select().where(self._due_condition(t)).order_by(CleanupTask.due_at, CleanupTask.id)

    def claim(self, task_id: int) -> bool:
        t = now()
        with self.ctx.store.write():
            return D.move_task("running", (CleanupTask.id == task_id) & self._due_condition(t), updated_at=t) == 1

    def claim_many(self, task_ids: list[int]) -> list[int]:
        """claim() of each task, in one write transaction. Returns the ids this process now holds."""
        if not task_ids:
            return []
        t = now()
        due = self._due_condition(t)
        with self.ctx.store.write():  # claims are serialised by the write lock: what is due here is ours
            ids = [r.id for r in CleanupTask.select(CleanupTask.id).where(CleanupTask.id.in_(task_ids) & due)]
            if ids:
                D.move_task("running", CleanupTask.id.in_(ids), updated_at=t)
        return ids

    def _release(self, task_ids: list[int]) -> None:
        """Claimed tasks the run will not start (the runtime is stopping): back to pending, no attempt counted."""
        if task_ids:
            with self.ctx.store.write():
                D.move_task("pending", CleanupTask.id.in_(task_ids) & (CleanupTask.state == "running"),
                            updated_at=now())

    def run_due(self, limit: int = 200, deployment_id: str | None = None) -> dict:
        """Run every due task now. Returns counts: done, kept, skipped, retried.

        The run claims its tasks in one write, decides for each whether it waits or is dropped (rollback, pipeline
        still stopping, retention...), then lists each host that has removals to do once (HostView) and runs the
        tasks side by side; the containers of every task go through one shared pool of archive-then-remove jobs, so
        one deployment's logs are archived while others' removals are in flight."""
        counts = {"done": 0, "kept": 0, "skipped": 0, "retried": 0}
        if self.should_stop():
            return counts
        q = self._due_query(now())
        if deployment_id:
            q = q.where(CleanupTask.deployment == deployment_id)
        claimed = self.claim_many([t.id for t in q.limit(limit)])
        if not claimed:
            return counts
        tasks = list(CleanupTask.select(CleanupTask, Deployment, Service).join(Deployment).join(Service)
                     .where(CleanupTask.id.in_(claimed)).order_by(CleanupTask.due_at, CleanupTask.id))
        rollbacks = active_rollback_ids()
        plans = []
        for task in tasks:
            try:
                why = self.keep_reason(task, task.deployment, rollbacks)
            except Exception as e:  # noqa: BLE001 - decided again at the retry
                why = e
            plans.append((task, why))
        store_id = self.ctx.store_id
        views: dict[str, HostView] = {}
        for host in {task.deployment.host for task, why in plans if why is None}:
            try:
                views[host] = HostView.of(self.ctx.hosts.gateway(host), store_id)
            except Exception as e:  # noqa: BLE001 - every task of that host is retried, with this reason
                views[host] = HostView(error=e)

        go = [task.deployment_id for task, why in plans if why is None]
        self._built = {r.deployment_id for r in DeploymentEvent.select(DeploymentEvent.deployment).where(
            DeploymentEvent.deployment.in_(go) & (DeploymentEvent.kind == "build")).distinct()} if go else set()

        def one(plan) -> str | None:
            task, why = plan
            if self.should_stop():
                self._release([task.id])
                return None
            return self._run_one(task, why, views.get(task.deployment.host))

        with ThreadPoolExecutor(max_workers=max(1, self.container_workers), thread_name_prefix="cleanup-rm") as rm, \
                ThreadPoolExecutor(max_workers=min(self.workers, len(plans)), thread_name_prefix="cleanup") as pool:
            self._removals = rm
            try:
                for outcome in pool.map(one, plans):
                    if outcome:
                        counts[outcome] += 1
                        metrics.cleanup_outcome(outcome)
            finally:
                self._removals = None
                self._built = None
        return counts

    def _run_one(self, task: CleanupTask, why=None, view: HostView | None = None) -> str | None:
        dep = task.deployment
        events = Events(dep.id, dep.host)
        try:
            if isinstance(why, Exception):
                raise why
            if view is not None and view.error is not None:
                raise view.error
            outcome = self.apply(task, dep, why=why, view=view, events=events)
        except Cancelled as e:  # the engine is stopping: not a failure, the next run (or engine) takes it up
            self._wait(task, dep, f"Engine stopping: {e}; the volume is kept and the cleanup of deployment {dep.id} "
                                  f"is retried", 0.0, events=events)
            return "retried"
        except DoesNotFit as e:
            self._wait(task, dep, f"Volume kept: {e}", ARCHIVE_RECHECK_S, once=True, events=events)
            return "retried"
        except Exception as e:  # any failure re-queues the task; the store keeps why
            self._retry(task, dep, e, events=events)
            return "retried"
        return outcome

    def _wait(self, task: CleanupTask, dep: Deployment, message: str, delay: float, once: bool = False,
              events: Events | None = None) -> None:
        """Back to pending without counting an attempt; with `once`, the event is not repeated at every recheck."""
        repeat = once and task.last_error == message[:500]
        with self.ctx.store.write():
            if events is not None:
                events.flush()
            D.move_task("pending", CleanupTask.id == task.id, last_error=message[:500], due_at=now() + delay,
                        updated_at=now())
            if not repeat:
                D.event(dep.id, message, kind="cleanup", level="warning", host=dep.host)

    def _retry(self, task: CleanupTask, dep: Deployment, error: Exception, events: Events | None = None) -> None:
        attempts = task.attempts + 1
        delay = min(self.ctx.settings.cleanup.cleanup_backoff_max, 2.0 ** min(attempts - 1, 10))
        message = one_line(error)
        if not isinstance(error, (EngineUnavailable, CleanupFailed)):
            log.exception("cleanup of %s", dep.id)
        with self.ctx.store.write():
            if events is not None:
                events.flush()
            D.move_task("pending", CleanupTask.id == task.id, attempts=attempts, last_error=message[:500],
                        due_at=now() + delay, updated_at=now())
            D.event(dep.id, f"Cleanup of deployment {dep.id} failed (attempt {attempts}): {message}; "
                            f"retrying in {delay:.0f} s", kind="cleanup", level="warning", host=dep.host)
        notify.cleanup_failed(dep.id, attempts, message)
        log.warning("cleanup of %s failed (attempt %d): %s; retrying in %.0f s", dep.id, attempts, message, delay)

    def _finish(self, task: CleanupTask, state: str, message: str, level: str = "info", dep=None,
                events: Events | None = None) -> None:
        with self.ctx.store.write():
            D.move_task(state, CleanupTask.id == task.id, updated_at=now(), last_error=None,
                        finished_at=now() if state == "done" else None,
                        attempts=task.attempts + (1 if state == "done" else 0))
            if events is not None:  # the run's events and this last one in one statement
                events.add(message, level)
                events.flush()
            else:
                D.event(task.deployment_id, message, kind="cleanup", level=level, host=dep.host if dep else None)
        log.info("cleanup of %s %s: %s", task.deployment_id, state, message)

    # ---- one task
    def keep_reason(self, task: CleanupTask, dep: Deployment, rollbacks: set[str] | None = None) -> str | None:
        """Why this deployment's resources stay for now, or None."""
        if dep.id in (rollbacks if rollbacks is not None else active_rollback_ids()):
            return "rollback"
        if dep.status in D.ACTIVE | D.SERVING:
            return "active"
        if dep.status == "superseded" and dep.id in linked_releases(self.ctx.paths, dep.service.name):
            return "linked"
        if pipeline_alive(dep, self.ctx.settings.scheduler.zombie_after):
            return "pipeline"
        if task.reason == "failed" and self.ctx.settings.cleanup.keep_failed > 0 and \
                dep.id in self.kept_failed_ids(dep.service_id):
            return "retention"
        return None

    def kept_failed_ids(self, service_id: int) -> set[str]:
        n = int(self.ctx.settings.cleanup.keep_failed)
        if n <= 0:
            return set()
        rows = (Deployment.select(Deployment.id).where((Deployment.service == service_id) &
                                                       (Deployment.status == "failed"))
                .order_by(Deployment.created_at.desc()).limit(n))
        return {r.id for r in rows}

    def apply(self, task: CleanupTask, dep: Deployment, why=..., view: HostView | None = None,
              events: Events | None = None) -> str:
        """One task. `why` is keep_reason() when the caller decided it already; `view` the host's listing of this
        run (else this deployment's resources are listed here); `events` collects the events, written with the
        task's outcome (else they are written here, even when the task fails)."""
        if events is None:
            events = Events(dep.id, dep.host)
            try:
                return self.apply(task, dep, why, view, events)
            finally:
                if events.rows:
                    with self.ctx.store.write():
                        events.flush()
        store_id = self.ctx.store_id
        if why is ...:
            why = self.keep_reason(task, dep, active_rollback_ids())
        if why == "rollback":
            message = f"Skipping cleanup for deployment {dep.id} - active rollback in progress"
            with self.ctx.store.write():
                D.move_task("pending", CleanupTask.id == task.id, due_at=now() + ROLLBACK_RECHECK_S, updated_at=now())
                if not _skip_noted(dep.id, message):  # once per rollback, not every re-check
                    D.event(dep.id, message, kind="cleanup", host=dep.host)
            return "skipped"
        if why == "active":
            self._finish(task, "done", f"Cleanup of deployment {dep.id} dropped: it is {dep.status} again", dep=dep)
            return "skipped"
        if why == "linked":
            self._finish(task, "done", f"Cleanup of deployment {dep.id} dropped: the current/previous link of "
                                       f"{dep.service.name} points at it again (a rollback target)", dep=dep)
            return "skipped"
        if why == "pipeline":
            # a cancelled (or failed-by-reconcile) pipeline may still create a container: remove only once it ended
            with self.ctx.store.write():
                D.move_task("pending", CleanupTask.id == task.id, due_at=now() + PIPELINE_RECHECK_S, updated_at=now(),
                            last_error=WAITS_FOR_PIPELINE)
                if task.last_error != WAITS_FOR_PIPELINE:  # said once, not every pass
                    D.event(dep.id, f"Cleanup of deployment {dep.id} {WAITS_FOR_PIPELINE} ({dep.owner})",
                            kind="cleanup", host=dep.host)
            return "skipped"
        gw = self.ctx.hosts.gateway(dep.host)
        if why == "retention":
            for info in gw.list_managed(store_id, dep.id, all=False):
                gw.stop(info)
                events.add(f"Stopped container {info.name} (kept for inspection)")
            self._finish(task, "kept", f"Keeping deployment {dep.id} for inspection: one of the last "
                         f"{self.ctx.settings.cleanup.keep_failed} failed deployments of {dep.service.name}", dep=dep,
                         events=events)
            self._rearm_older_failed(dep.service_id)
            return "kept"
        reason = task.reason
        events.add(f"Starting cleanup of resources for {reason} deployment {dep.id}")
        found = view.containers.get(dep.id, []) if view is not None else gw.list_managed(store_id, dep.id)
        # the ownership check before any removal: this store's id and this deployment's, on the engine's own labels
        found = [c for c in found if L.is_ours(c.labels, store_id, dep.id)]
        for helper in [c for c in found if L.is_backup_helper(c.labels)]:
            # left by a run that died mid-backup; it holds the volume, whose removal would fail (409) for good
            gw.remove_container(helper.id)
            events.add(f"Removed backup helper {helper.name} left by an interrupted backup", level="warning")
        found = [c for c in found if not L.is_backup_helper(c.labels)]
        events.add(f"Found {len(found)} container(s) for deployment {dep.id}")
        archive = self.ctx.paths.ensure(self.ctx.paths.archive(dep.id))

        def remove(info) -> str | None:
            """One container: archive its log, then remove it; a failed archive keeps it. None when done."""
            try:
                size = gw.archive_logs(info.id, archive / f"{info.name}.log.gz")
                events.add(f"Archived logs of {info.name} ({size} bytes)", level="debug")
                events.add(f"Removing container /{info.name} for deployment {dep.id}")
                result = gw.remove_container(info.id)
                if result == "gone":
                    events.add(f"Container {info.id[:12]} already removed or not found")
                else:
                    events.add(f"Successfully removed container /{info.name}")
                return None
            except EngineUnavailable:
                raise
            except Exception as e:  # graceful degradation: one container failing does not stop the others
                events.add(f"Failed to remove container {info.name}: {one_line(e)}", level="error")
                return f"{info.name}: {e}"

        # A forced removal mostly waits for the engine (kill, exit, teardown), so more removals in flight finish
        # sooner, up to the engine's own limit: within a run, every deployment's containers share one pool.
        if self._removals is not None and found:
            outcomes = [f.result() for f in [self._removals.submit(remove, info) for info in found]]
        elif len(found) > 1 and self.container_workers > 1:
            with ThreadPoolExecutor(max_workers=min(len(found), self.container_workers),
                                    thread_name_prefix="cleanup-rm") as pool:
                outcomes = list(pool.map(remove, found))
        else:
            outcomes = [remove(info) for info in found]
        errors = [o for o in outcomes if o]
        expected = container_name(dep.service.name, dep.id)
        if task.attempts == 0 and not any(c.name == expected for c in found) and self._created_container(dep):
            events.add(f"Container {expected} already removed or not found")
        if errors:
            raise CleanupFailed("; ".join(errors))
        volumes = view.volumes.get(dep.id, []) if view is not None else gw.list_volumes(store_id, dep.id)
        for vol in volumes:
            if not L.is_ours(vol.get("Labels"), store_id, dep.id):
                continue
            name = vol["Name"]
            size = self.archive.backup_volume(gw, vol, archive, self.should_stop)
            events.add(f"Backed up volume {name} ({size} bytes)")
            result = gw.remove_volume(name)
            events.add(f"{'Removed' if result == 'removed' else 'Already gone:'} volume {name}")
        tag = dep.image or image_tag(dep.service.name, dep.id)
        result = gw.remove_image(tag, view.image_tags.get(tag, 0) if view is not None else None)
        if result == "removed":
            events.add(f"Removed image {tag}")
        if result != "in-use":
            self._remove_build_leftovers(gw, dep, events)
        self._remove_release(dep, events)
        self._finish(task, "done", f"Completed cleanup for deployment {dep.id}", dep=dep, events=events)
        return "done"

    def _remove_build_leftovers(self, gw, dep: Deployment, events: Events) -> None:
        """A cancelled or failed build leaves the steps it committed as untagged images; its output (the build
        events) says which are its own."""
        if self._built is not None and dep.id not in self._built:
            return
        lines = [e.message for e in DeploymentEvent.select(DeploymentEvent.message).where(
            (DeploymentEvent.deployment == dep.id) & (DeploymentEvent.kind == "build")).order_by(DeploymentEvent.id)]
        removed = gw.remove_build_leftovers(lines, dep.created_at) if lines else []
        if removed:
            events.add(f"Removed {len(removed)} untagged image(s) left by the build of {dep.id}")

    def _created_container(self, dep: Deployment) -> bool:
        return PhaseRun.select().where((PhaseRun.deployment == dep.id) &
                                       (PhaseRun.phase.in_(PHASES[2:]))).exists()

    def _remove_release(self, dep: Deployment, events: Events) -> None:
        svc = dep.service.name
        if dep.id in (link_target(self.ctx.paths.current(svc)), link_target(self.ctx.paths.previous(svc))):
            events.add(f"Release directory of {dep.id} kept: the service's current/previous link points at it")
            return
        release = self.ctx.paths.release(dep.id)
        if release.exists():
            shutil.rmtree(release)
            events.add(f"Removed release directory {release}", level="debug")

    # ---- retention
    def _rearm_older_failed(self, service_id: int) -> int:
        """Kept failed deployments that fell out of the last N are cleaned now."""
        keep = self.kept_failed_ids(service_id)
        rows = (CleanupTask.select(CleanupTask.id, CleanupTask.deployment).join(Deployment)
                .where((CleanupTask.state == "kept") & (Deployment.service == service_id)))
        rearm = [r.id for r in rows if r.deployment_id not in keep]
        if rearm:
            with self.ctx.store.write():
                D.move_task("pending", CleanupTask.id.in_(rearm), reason="retention", due_at=now(), updated_at=now())
        return len(rearm)

    def retention(self) -> dict:
        """The hourly job: re-arm kept deployments beyond keep-last-N, queue the cleanup of superseded releases beyond
        `keep_releases`, prune the archive by age and size."""
        services = list(Service.select())
        rearmed = sum(self._rearm_older_failed(s.id) for s in services)
        releases = sum(queue_release_retention(self.ctx, s) for s in services)
        pruned = self.prune_archive()
        return {"rearmed": rearmed, "releases_queued": releases, "archives_pruned": pruned}

    def prune_archive(self) -> int:
        """Archive retention (archive.py decides): one event per file removed. Returns how many."""
        pruned = self.archive.prune()
        for path, why in pruned:
            folder = path.parent.name
            D.event(folder if Deployment.get_or_none(Deployment.id == folder) else None,
                    f"Pruned archive {folder}/{path.name} ({why})", kind="cleanup")
        return len(pruned)

    # ---- plan
    def plan(self) -> list[dict]:
        """What a run would do for every open task, without touching anything: one list call per host."""
        store_id = self.ctx.store_id
        tasks = list(CleanupTask.select(CleanupTask, Deployment, Service).join(Deployment).join(Service)
                     .where(CleanupTask.state.in_(D.OPEN_TASK)).order_by(CleanupTask.due_at))
        by_host: dict[str, dict[str, list]] = {}
        vols_by_host: dict[str, dict[str, list]] = {}
        errors = {}
        for host in {t.deployment.host for t in tasks}:
            try:
                gw = self.ctx.hosts.gateway(host)
                grouped: dict[str, list] = {}
                for c in gw.list_managed(store_id):
                    # as apply() does: a project-scoped label is never removed, a backup helper is not the deployment's
                    if L.is_ours(c.labels, store_id) and not L.is_backup_helper(c.labels):
                        grouped.setdefault(c.deployment_id, []).append(c.name)
                by_host[host] = grouped
                vgrouped: dict[str, list] = {}
                for v in gw.list_volumes(store_id):
                    if L.is_ours(v.get("Labels"), store_id):
                        vgrouped.setdefault((v.get("Labels") or {}).get(L.DEPLOYMENT), []).append(v["Name"])
                vols_by_host[host] = vgrouped
            except Exception as e:  # a host that does not answer is reported in the plan, not fatal
                errors[host] = one_line(e)
        rollbacks = active_rollback_ids()
        t = now()
        out = []
        for task in tasks:
            dep = task.deployment
            why = self.keep_reason(task, dep, rollbacks)
            if task.state == "kept" and why is None:
                why = None
            action = {"rollback": "skip (active rollback)", "active": "drop (deployment active again)",
                      "linked": "drop (current/previous link points at it)",
                      "pipeline": "wait (its pipeline is still stopping)",
                      "retention": "keep (stopped, for inspection)"}.get(why)
            if action is None:
                action = "remove" if task.due_at <= t else f"remove in {task.due_at - t:.0f} s"
            if dep.host in errors:
                action += f" (host {dep.host} unreachable: {errors[dep.host]})"
            containers = by_host.get(dep.host, {}).get(dep.id, [])
            volumes = vols_by_host.get(dep.host, {}).get(dep.id, [])
            release = self.ctx.paths.release(dep.id)
            out.append({"deployment_id": dep.id, "service": dep.service.name, "status": dep.status,
                        "host": dep.host, "reason": task.reason, "state": task.state, "attempts": task.attempts,
                        "last_error": task.last_error, "due_at": task.due_at, "action": action,
                        "containers": containers, "volumes": volumes,
                        "archive": [f"{c}.log.gz" for c in containers] + [f"{v}.tar.gz" for v in volumes],
                        "image": dep.image or image_tag(dep.service.name, dep.id),
                        "release_dir": str(release) if release.exists() else None})
        return out


def run_inline_if_due(ctx, deployment_id: str) -> None:
    """After a foreground deploy ends failed/cancelled, run its cleanup here if it is due (no engine needed)."""
    try:
        task = CleanupTask.get_or_none((CleanupTask.deployment == deployment_id) &
                                       (CleanupTask.state == "pending") & (CleanupTask.due_at <= now()))
        if task is not None:
            Cleaner(ctx).run_due(deployment_id=deployment_id)
    except Exception as e:  # the task stays queued for the engine; the operator sees a notice in the events
        log.warning("inline cleanup of %s: %s", deployment_id, e)
