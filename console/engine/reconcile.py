"""Reconciliation: observe → diff → act, level-triggered. A pass that stops half-way is simply run again.

Observe: per Docker host, in parallel with a per-host timeout (`host_timeout`), ONE label-filtered container list
(all states) and ONE volume list; then one query per table (Deployment joined with Service, CleanupTask, Rollback).
Never a Docker call per deployment: the number of Docker calls of a pass is 2 × hosts, whatever the store holds.
The store is read *before* Docker, so anything that appears in Docker after the snapshot (a container being created
right now) is either newer than the orphan grace or belongs to a row the snapshot already knows.

Diff (and the decisions, each in one place here):
- zombies: `deploying` rows whose pipeline is gone (`liveness.is_stuck`: heartbeat older than `zombie_after`, or the
  owner pid provably dead on this machine). Policy `resume` resumes from the recorded phase (at most
  `max_resume_attempts`, then `failed` with the reason); policy `fail` moves it to `failed` (the move writes the
  cleanup task). A zombie whose host did not answer waits for it.
- deadlines: a live `deploying` row whose current phase started longer ago than its phase deadline is a wedged
  pipeline: `failed`, with a reason naming the phase.
- rollbacks: an `active` rollback whose owner is gone (same proofs as a zombie, on the rollback's own heartbeat) is
  finished when its target runs and answers its health check, undone otherwise (rollback.recover), with an event
  saying which; until then its deployments are left out of the orphan and drift checks.
- orphans: containers/volumes carrying our labels whose deployment is unknown, `failed` or `cancelled` with no open
  cleanup task, older than `orphan_grace`. A known deployment gets a cleanup task (reason `orphan`; the Cleaner
  archives and removes as usual); an unknown id has no row to hang a task on, so the pass re-checks the labels,
  archives the container's log / backs up the volume to `archive/<id>/`, and removes it, with a `reconcile` event.
  `superseded` deployments keep their stopped container (it is the rollback target) and are never orphans; one whose
  container still *runs* is reported as drift (`superseded-running`) and left alone, as is anything involved in an
  active rollback. A backup helper container (role `backup-helper`, left by a run that died mid-backup, holding its
  volume) is never judged as a deployment's container: older than the grace and not under a running cleanup, it is
  removed (nothing to archive: it never ran).
- drift: a `success` deployment whose container is missing or not running, or (between deployments of its service)
  whose service's `current` link or route points elsewhere → `degraded` (an event naming what disagrees, never
  "fixed"); a `degraded` one whose container runs and is served again → back to `success`. Only judged on hosts that
  answered. Routes are level-triggered: the router is asked once per pass what each route serves (`routed`), and a
  route that is missing or wrong while the rest agrees (a restarted Caddy forgets its live config) is applied again
  in the same pass; the next pass finds it serving. A router that does not answer is an error of the pass.
- hosts: reachability noted (Hosts.record: Host rows, or memory for this run's hosts); a change is a `host` event.

Act: every act re-checks its precondition inside the write (compare-and-set through `deployments.move(expect=...)`),
so a pass racing a pipeline, a cancel or another pass never makes a wrong move.
"""
import logging
import os
import threading
import time
from datetime import datetime

from console.engine import deployments as D
from console.engine import jobruns, metrics, notify, releases, validate
from console.engine import labels as L
from console.engine.archive import Archive
from console.engine.cleanup import STALE_RUNNING_S, active_rollback_ids
from console.engine.errors import InputError, one_line
from console.engine.hosts import note_reachability
from console.engine.liveness import is_stuck
from console.engine.parallel import at_once
from console.engine.paths import link_target
from console.engine.pipeline import container_name
from console.engine.rollback import orphaned as orphaned_rollbacks
from console.engine.rollback import recover as recover_rollback
from storage.clock import now
from storage.models import CleanupTask, Deployment, Service

log = logging.getLogger(__name__)
JUDGED = {"deploying"} | D.SERVING
ORPHAN_STATUSES = D.CLEANUP_ON


# ---- counting Docker API calls
_local = threading.local()


def _count_call(host: str, what: str) -> None:
    counter = getattr(_local, "counter", None)
    if counter is not None:
        counter.add()


class CallCounter:
    """Counts the Docker API calls a pass makes: the gateways' `on_call` hook, counting only in threads attached to
    this counter."""

    def __init__(self):
        self.calls = 0
        self._lock = threading.Lock()

    def add(self):
        with self._lock:
            self.calls += 1

    @staticmethod
    def install(gateway) -> None:
        gateway.on_call = _count_call

    def attach(self):
        _local.counter = self

    @staticmethod
    def detach():
        _local.counter = None


# ---- observe
def observe_hosts(ctx, timeout: float, counter: CallCounter) -> tuple[dict, dict, dict]:
    """(errors, containers, volumes) per host name; errors[name] is None for a host that answered both lists in
    time. Every host's two lists run at once, each in its own thread (parallel.at_once: one that hangs is abandoned)."""
    names = ctx.hosts.names()

    def look(job) -> tuple[str | None, list | None]:   # (error, the list)
        name, what = job
        counter.attach()
        try:
            gw = ctx.hosts.gateway(name)
            counter.install(gw)
            return None, (gw.list_managed(ctx.store_id, all=True) if what == "containers" else
                          gw.list_volumes(ctx.store_id))
        except Exception as e:  # noqa: BLE001 - any failure means this host is not judged in this pass
            return one_line(e), None
        finally:
            counter.detach()

    jobs = [(n, what) for n in names for what in ("containers", "volumes")]
    timed_out = (f"no answer within {timeout:g} s", None)
    got = dict(zip(jobs, at_once(look, jobs, timeout, default=timed_out, name="observe"), strict=True))
    errors: dict[str, str | None] = {}
    containers, volumes = {}, {}
    for name in names:
        (c_error, listed), (v_error, vols) = got[(name, "containers")], got[(name, "volumes")]
        errors[name] = c_error or v_error
        if errors[name] is None:
            containers[name], volumes[name] = listed, vols
    return errors, containers, volumes


def serving_problems(paths, service: str, deployment_id: str) -> list[str]:
    """What disagrees with `deployment_id` serving `service` on disk: the `current` link must point at it."""
    current = link_target(paths.current(service))
    return [] if current == deployment_id else [f"current points at {current or 'nothing'}, not at {deployment_id}"]


def route_problem(router, routed: dict, service: str, deployment_id: str) -> str | None:
    """How the live route (`routed`, from `router.routed`) disagrees with `deployment_id` serving `service`."""
    target = routed.get(service)
    if target == deployment_id:
        return None
    where = f"route file routes/{service}.yml" if router.name == "traefik-file" else f"{router.name} route of {service}"
    return f"{where} is missing" if target is None else f"{where} points at {target}, not at {deployment_id}"


def _volume_created(vol: dict) -> float | None:
    raw = vol.get("CreatedAt")
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        return None


# ---- the pass
class Pass:
    def __init__(self, ctx, pipeline, runtime=None, dry_run: bool = False, scheduled: bool = False):
        self.ctx = ctx
        self.pipeline = pipeline   # puts `current` and the route back when a serving deployment is failed
        self.scheduled = scheduled  # a scheduled pass acts only while this process holds the lease
        self.settings = ctx.settings
        self.runtime = runtime
        self.dry_run = dry_run
        self.counter = CallCounter()
        self.errors: list[str] = []

    def may_act(self) -> bool:
        if self.dry_run:
            return False
        if self.runtime is None:
            return True
        return self.runtime.may_act() if self.scheduled else not self.runtime.stopping

    def run(self) -> dict:
        started, t0 = now(), time.monotonic()
        self.counter.attach()
        try:
            plan = self.plan()
            if not self.dry_run:
                self.act(plan)
        finally:
            self.counter.detach()
        if not self.dry_run:
            metrics.observe_reconcile(time.monotonic() - t0, plan)
        plan.pop("_deps", None)
        plan.pop("_errors", None)
        plan.update(dry_run=self.dry_run, started_at=started, duration_ms=round((time.monotonic() - t0) * 1000, 1),
                    docker_calls=self.counter.calls, errors=self.errors)
        plan["counts"] = {"orphans": len(plan["orphans"]), "drift": len(plan["drift"]),
                          "zombies": len(plan["zombies"]), "deadlines": len(plan["deadlines"]),
                          "rollbacks": len(plan["rollbacks"]),
                          "hosts_down": sum(1 for e in plan["hosts"].values() if e), "in_grace": plan["in_grace"],
                          "docker_calls": self.counter.calls, "errors": len(self.errors)}
        return plan

    # ---- observe + diff
    def plan(self) -> dict:
        s, t = self.settings, now()
        store_id = self.ctx.store_id
        # the store first (see the module docstring), one query per table
        tasks = list(CleanupTask.select(CleanupTask.deployment, CleanupTask.state, CleanupTask.updated_at)
                     .where(CleanupTask.state.in_(D.OPEN_TASK)))
        open_tasks = {r.deployment_id for r in tasks}
        # a cleanup being run right now may be backing up a volume: its helper container is in use
        cleaning = {r.deployment_id for r in tasks if r.state == "running" and r.updated_at >= t - STALE_RUNNING_S}
        rollbacks = active_rollback_ids()
        stuck_rollbacks = orphaned_rollbacks(float(s.scheduler.zombie_after))
        errors, containers, volumes = observe_hosts(self.ctx, float(s.scheduler.host_timeout), self.counter)
        for r in stuck_rollbacks:
            if errors.get(r["host"]):
                r["action"] = f"wait (host {r['host']} unreachable)"
        seen_ids = {c.deployment_id for cs in containers.values() for c in cs if c.deployment_id}
        seen_ids |= {(v.get("Labels") or {}).get(L.DEPLOYMENT) for vs in volumes.values() for v in vs}
        seen_ids.discard(None)
        q = (Deployment.select(Deployment.id, Deployment.status, Deployment.phase, Deployment.host,
                               Deployment.heartbeat_at, Deployment.owner, Deployment.owner_machine,
                               Deployment.owner_pid, Deployment.phase_started_at, Deployment.attempts,
                               Deployment.resume_from, Deployment.service, Service.name.alias("service_name"))
             .join(Service))
        if len(seen_ids) > 5000:  # past SQLite's comfortable IN size: read every row's few columns instead
            deps = {d.id: d for d in q.objects()}
        else:
            where = Deployment.status.in_(JUDGED)
            if seen_ids:
                where = where | Deployment.id.in_(sorted(seen_ids))
            deps = {d.id: d for d in q.where(where).objects()}

        running_here = self.runtime.running_ids() if self.runtime is not None else set()
        # while a deployment of a service runs, `current` and its route move: they are judged between deployments
        busy = {d.service_id for d in deps.values() if d.status == "deploying"}
        zombies, deadlines = self._diff_deploying(deps, errors, running_here, t)
        orphans, drift, in_grace = [], [], 0
        routed = self._routed({d.service_name for d in deps.values()
                               if d.status in D.SERVING and d.service_id not in busy})
        for host, cs in containers.items():
            by_dep: dict[str, list] = {}
            for c in cs:
                if L.is_backup_helper(c.labels):  # never a deployment's own container: judged on its own
                    found, fresh = self._helper(host, c, t - c.created, deps.get(c.deployment_id), cleaning)
                    in_grace += fresh
                    if found:
                        orphans.append(found)
                elif c.deployment_id:
                    by_dep.setdefault(c.deployment_id, []).append(c)
            for dep_id, group in by_dep.items():
                for c in group:
                    if not L.is_ours(c.labels, store_id, dep_id):
                        continue
                    found, fresh = self.orphan(host, "container", dep_id, c.id, c.name, t - c.created,
                                                deps.get(dep_id), open_tasks, rollbacks, running=c.running)
                    in_grace += fresh
                    if found:
                        (drift if found.get("problem") else orphans).append(found)
            for d in deps.values():
                if d.host != host or d.status not in D.SERVING or d.id in rollbacks:
                    continue
                mine = by_dep.get(d.id, [])
                running = any(c.running for c in mine)
                problems = [] if running else [f"container {mine[0].name} is {mine[0].state}" if mine else
                                               f"container {container_name(d.service_name, d.id)} is missing"]
                serving = d.service_id not in busy
                route = None
                if serving:
                    problems += serving_problems(self.ctx.paths, d.service_name, d.id)
                    if routed is not None and d.id not in rollbacks:
                        route = route_problem(self.ctx.router, routed, d.service_name, d.id)
                # a proxy that restarted (Caddy forgets its live config) or a route moved by hand: drift, and the
                # route is applied again when the rest agrees (the next pass then finds it serving: success)
                reapply = bool(route) and not problems
                if route:
                    problems.append(route)
                if d.status == "success" and problems:
                    drift.append({"deployment_id": d.id, "service": d.service_name, "host": host,
                                  "status": d.status, "problem": "; ".join(problems),
                                  "action": "mark degraded, re-apply route" if reapply else "mark degraded",
                                  "serving": serving and running, "reapply": reapply})
                elif d.status == "degraded" and reapply:
                    drift.append({"deployment_id": d.id, "service": d.service_name, "host": host,
                                  "status": d.status, "problem": route, "action": "re-apply route",
                                  "reapply": True})
                elif d.status == "degraded" and not problems and serving:
                    drift.append({"deployment_id": d.id, "service": d.service_name, "host": host,
                                  "status": d.status, "problem": f"container {mine[0].name} runs and current and "
                                                                 f"the route point at it again",
                                  "action": "mark success"})
        for host, vs in volumes.items():
            for v in vs:
                labels = v.get("Labels") or {}
                dep_id = labels.get(L.DEPLOYMENT)
                if not dep_id or not L.is_ours(labels, store_id, dep_id):
                    continue  # shared project volumes carry no deployment id and are never orphans
                created = _volume_created(v)
                age = t - created if created is not None else 0.0
                found, fresh = self.orphan(host, "volume", dep_id, v["Name"], v["Name"], age, deps.get(dep_id),
                                            open_tasks, rollbacks)
                in_grace += fresh
                if found and not found.get("problem"):
                    orphans.append(found)
        return {"orphans": orphans, "drift": drift, "zombies": zombies, "deadlines": deadlines,
                "rollbacks": stuck_rollbacks,
                "hosts": errors, "in_grace": in_grace, "_deps": deps, "_errors": errors}

    def _routed(self, services: set[str]) -> dict | None:
        """{service: the deployment its live route serves} in one look at the router; None when it did not answer
        (an error of the pass, not drift)."""
        try:
            return self.ctx.router.routed(sorted(services)) if services else {}
        except Exception as e:  # noqa: BLE001 - an unreachable proxy is reported, and the next pass looks again
            self.errors.append(f"routes: {one_line(e)}")
            return None

    def orphan(self, host, kind, dep_id, obj_id, name, age, dep, open_tasks, rollbacks, running=False):
        """(finding or None, 1 if it is an orphan still inside its grace period)."""
        status = dep.status if dep is not None else None
        if dep_id in rollbacks:
            return None, 0
        if status == "superseded":
            if kind == "container" and running:
                return {"deployment_id": dep_id, "service": dep.service_name, "host": host, "status": status,
                        "problem": f"container {name} of a superseded deployment is still running",
                        "kind": "superseded-running", "action": "report"}, 0
            return None, 0  # the stopped container of a superseded deployment is its rollback target
        if status is not None and status not in ORPHAN_STATUSES:
            return None, 0
        if status is not None and dep_id in open_tasks:
            return None, 0  # its cleanup task is already queued (or it is kept for inspection)
        if age < float(self.settings.scheduler.orphan_grace):
            return None, 1
        known = status is not None and dep.host == host
        return {"kind": kind, "host": host, "id": obj_id, "name": name, "deployment_id": dep_id,
                "deployment_status": status or "unknown", "age": round(age, 1),
                "action": "cleanup task" if known else "remove"}, 0

    def _helper(self, host, c, age, dep, cleaning):
        """A backup helper left by a run that died mid-backup holds its volume (removal fails with 409 for good):
        removed once older than the orphan grace, unless its deployment's cleanup is running right now."""
        if not L.is_ours(c.labels, self.ctx.store_id, c.deployment_id) or c.deployment_id in cleaning:
            return None, 0
        if age < float(self.settings.scheduler.orphan_grace):
            return None, 1
        return {"kind": "backup-helper", "host": host, "id": c.id, "name": c.name, "deployment_id": c.deployment_id,
                "deployment_status": dep.status if dep is not None else "unknown", "age": round(age, 1),
                "action": "remove"}, 0

    def _diff_deploying(self, deps, host_errors, running_here, t):
        s = self.settings.scheduler
        zombies, deadlines = [], []
        for d in deps.values():
            if d.status != "deploying" or d.id in running_here:
                continue
            if is_stuck(d, self.settings.scheduler.zombie_after):
                gone_pid = d.heartbeat_at is not None and t - d.heartbeat_at <= s.zombie_after
                why = (f"owner pid {d.owner_pid} is gone on {d.owner_machine}" if gone_pid else
                       "no heartbeat ever" if d.heartbeat_at is None else
                       f"no heartbeat for {t - d.heartbeat_at:.0f} s")
                phase = d.phase or validate.PHASES[0]
                if d.resume_from:
                    action = f"resume requested from {d.resume_from} (the dispatcher runs it)"
                elif s.zombie_policy == "fail":
                    action = "fail (zombie_policy=fail)"
                elif d.attempts >= int(s.max_resume_attempts):
                    action = f"fail (gave up after {d.attempts} resume attempts)"
                elif host_errors.get(d.host):
                    action = f"wait (host {d.host} unreachable)"
                else:
                    action = f"resume from {phase} (attempt {d.attempts + 1}/{s.max_resume_attempts})"
                zombies.append({"deployment_id": d.id, "service": d.service_name, "phase": phase, "host": d.host,
                                "owner": d.owner, "heartbeat_age": None if d.heartbeat_at is None else
                                round(t - d.heartbeat_at, 1), "attempts": d.attempts, "reason": why,
                                "action": action})
                continue
            if d.phase and d.phase_started_at:
                limit = float(self.settings.pipeline.phase_deadlines.get(d.phase, 300))
                if t - d.phase_started_at > limit:
                    deadlines.append({"deployment_id": d.id, "service": d.service_name, "phase": d.phase,
                                      "host": d.host, "running_for": round(t - d.phase_started_at, 1),
                                      "deadline": limit, "action": "fail"})
        return zombies, deadlines

    # ---- act
    def act(self, plan: dict) -> None:
        self._record_hosts(plan["_errors"])
        steps = [(self._act_zombie, plan["zombies"]), (self._act_deadline, plan["deadlines"]),
                 (self._act_rollback, plan["rollbacks"]),
                 (self._act_drift, plan["drift"]), (self._act_orphan, plan["orphans"])]
        for fn, items in steps:
            for item in items:
                if not self.may_act():
                    item["action"] += " (not done: engine stopping)"
                    continue
                try:
                    item["result"] = fn(item)
                    log.log(logging.DEBUG if item["result"] == "left alone" else logging.INFO,
                            "reconcile: %s %s: %s%s", fn.__name__.removeprefix("_act_"),
                            item.get("deployment_id") or item.get("name"), item["action"],
                            f" ({item['result']})" if item["result"] else "")
                except Exception as e:  # noqa: BLE001 - one failed act does not stop the others; the next pass retries
                    log.warning("reconcile: %s of %s failed: %s", fn.__name__, item.get("deployment_id"), e)
                    item["result"] = f"error: {one_line(e)}"
                    self.errors.append(f"{item.get('deployment_id')}: {one_line(e)}")

    def _record_hosts(self, errors: dict) -> None:
        note_reachability(self.ctx, errors)

    def _stuck_now(self, dep_id: str, phase: str) -> Deployment | None:
        d = Deployment.get_or_none(Deployment.id == dep_id)
        if d is None or d.status != "deploying" or (d.phase or validate.PHASES[0]) != phase or d.resume_from:
            return None
        return d if is_stuck(d, self.settings.scheduler.zombie_after) else None

    def _act_zombie(self, z: dict) -> str:
        action, dep_id, phase = z["action"], z["deployment_id"], z["phase"]
        if action.startswith(("wait", "resume requested")):
            return "left alone"
        if action.startswith("fail"):
            reason = (f"{phase}: pipeline gone ({z['reason']}); zombie_policy=fail" if "policy" in action else
                      f"{phase}: pipeline gone ({z['reason']}); gave up after {z['attempts']} resume attempts")
            result = self._fail(dep_id, reason, check=lambda: self._stuck_now(dep_id, phase) is not None)
            if result == "failed":
                notify.zombie(dep_id, z["service"], "failed", z["reason"])
            return result
        # resume: in this process when it runs jobs, else as a request for the engine that holds the lease
        if self.runtime is not None and self.runtime.may_act():
            ok = self.runtime.start_pipeline(dep_id, from_phase=phase, resume=True,
                                             verify=lambda d: self._stuck_now(d.id, phase) is not None,
                                             note=f"zombie: {z['reason']}")
            if ok:
                notify.zombie(dep_id, z["service"], "resumed", z["reason"])
            return "resumed" if ok else "not resumed now (no free worker or no longer stuck)"
        with self.ctx.store.write():
            if self._stuck_now(dep_id, phase) is None:
                return "no longer stuck"
            Deployment.update(resume_from=phase).where(Deployment.id == dep_id).execute()
            D.event(dep_id, f"Reconcile: deployment {dep_id} is a zombie ({z['reason']}); resume from {phase} "
                            f"requested from the engine holding the lease", kind="reconcile", level="warning")
        return "resume requested"

    def _act_deadline(self, item: dict) -> str:
        dep_id, phase = item["deployment_id"], item["phase"]

        def still_overdue():
            d = Deployment.get_or_none(Deployment.id == dep_id)
            return d is not None and d.status == "deploying" and d.phase == phase and d.phase_started_at and \
                now() - d.phase_started_at > item["deadline"]
        reason = (f"{phase}: phase overran its deadline of {item['deadline']:.0f} s (no progress for "
                  f"{item['running_for']:.0f} s; pipeline wedged)")
        return self._fail(dep_id, reason, check=still_overdue)

    def _fail(self, dep_id: str, reason: str, check) -> str:
        with self.ctx.store.write():
            if not check():
                return "no longer applies"
            D.move(self.ctx.store, dep_id, "failed", error=reason, expect={"deploying"},
                   cleanup_delay=self.settings.cleanup.cleanup_delay, message=f"Reconcile: deployment {dep_id} failed: "
                                                                      f"{reason}")
            D.close_phases(dep_id, f"interrupted: {reason}")
        self._restore_current(dep_id)
        return "failed"

    def _restore_current(self, dep_id: str) -> None:
        """A failed deployment must not stay `current`; the pipeline's own rule puts back what served before."""
        dep = Deployment.get_by_id(dep_id)
        try:
            releases.restore(self.ctx, dep)
        except Exception as e:  # noqa: BLE001 - the link is repaired by hand or by the next deployment; say so
            D.event(dep_id, f"Reconcile could not restore the previous release of {dep.service.name}: "
                            f"{one_line(e)}", kind="reconcile", level="warning")

    def _act_rollback(self, item: dict) -> str:
        if item["action"].startswith("wait"):
            return "left alone"
        return recover_rollback(self.ctx, self.pipeline, item["rollback_id"])

    def _act_drift(self, item: dict) -> str:
        dep_id = item["deployment_id"]
        if item["action"].startswith("mark degraded"):
            with self.ctx.store.write():
                if item.get("serving") and not item.get("reapply") and \
                        not self._still_not_serving(dep_id, item["service"]):
                    return "no longer applies"
                if not self._drift_move(dep_id, "success", "degraded", f"Drift: {item['problem']} (deployment "
                                                                       f"{dep_id} is success); marked degraded"):
                    return "no longer success"
            notify.drift(dep_id, item["service"], item["problem"])
            return "degraded" + (f", {self._reapply_route(item)}" if item.get("reapply") else "")
        if item["action"] == "mark success":
            if not self._drift_move(dep_id, "degraded", "success", f"Drift resolved: {item['problem']}; deployment "
                                                                   f"{dep_id} is success again"):
                return "no longer degraded"
            return "success"
        if item["action"] == "re-apply route":
            return self._reapply_route(item)
        return "reported"

    def _drift_move(self, dep_id: str, was: str, to: str, message: str) -> bool:
        """Compare-and-set `was` -> `to`; False when the deployment is no longer `was` (it moved since the plan)."""
        try:
            D.move(self.ctx.store, dep_id, to, expect={was}, message=message)
        except InputError:
            return False
        return True

    def _reapply_route(self, item: dict) -> str:
        dep_id, service = item["deployment_id"], item["service"]
        dep = Deployment.get_or_none(Deployment.id == dep_id)
        if dep is None or dep.status not in D.SERVING or dep.id in active_rollback_ids() or \
                serving_problems(self.ctx.paths, service, dep_id) or Deployment.select().where(
                    (Deployment.service == dep.service_id) & (Deployment.status == "deploying")).exists():
            return "no longer applies"
        done = releases.route(self.ctx, dep.service, dep_id)
        D.event(dep_id, f"Reconcile: {item['problem']}; route applied again ({done})", kind="reconcile",
                level="warning", host=dep.host)
        return "route re-applied"

    def _still_not_serving(self, dep_id: str, service: str) -> bool:
        """Inside the write: a deployment or rollback that started since the snapshot moves `current` and the route
        legitimately; only a disagreement that still stands between deployments is drift."""
        dep = Deployment.get_or_none(Deployment.id == dep_id)
        if dep is None or dep.id in active_rollback_ids() or Deployment.select().where(
                (Deployment.service == dep.service_id) & (Deployment.status == "deploying")).exists():
            return False
        return bool(serving_problems(self.ctx.paths, service, dep_id))

    def _act_orphan(self, item: dict) -> str:
        dep_id, host = item["deployment_id"], item["host"]
        if item["kind"] == "backup-helper":
            return self._remove_helper(item)
        if item["action"] == "cleanup task":
            with self.ctx.store.write():
                d = Deployment.get_or_none(Deployment.id == dep_id)
                if d is None or d.status not in ORPHAN_STATUSES:
                    return "no longer an orphan"
                if CleanupTask.select().where((CleanupTask.deployment == dep_id) &
                                              (CleanupTask.state.in_(D.OPEN_TASK))).exists():
                    return "cleanup already queued"
                D.enqueue_cleanup(dep_id, "orphan")
                D.event(dep_id, f"Reconcile: {item['kind']} {item['name']} of {d.status} deployment {dep_id} "
                                f"outlived its cleanup; cleanup task queued", kind="reconcile", level="warning",
                        host=host)
            return "cleanup task queued"
        return self._remove_unknown(item)

    def _remove_helper(self, item: dict) -> str:
        gw = self.ctx.hosts.gateway(item["host"])
        details = gw.inspect(item["id"])
        if details is None:
            return "already gone"
        labels = (details.get("Config") or {}).get("Labels")
        if not L.is_ours(labels, self.ctx.store_id, item["deployment_id"]) or not L.is_backup_helper(labels):
            return "labels changed: left alone"
        result = gw.remove_container(item["id"])
        dep_id = item["deployment_id"]
        with self.ctx.store.write():
            D.event(dep_id if item["deployment_status"] != "unknown" else None,
                    f"Reconcile: removed backup helper {item['name']} of deployment {dep_id} on {item['host']}, "
                    f"left by an interrupted backup (age {item['age']:.0f} s)", kind="reconcile", level="warning",
                    host=item["host"])
        return result

    def _remove_unknown(self, item: dict) -> str:
        """A resource of a deployment this store does not know (or on another host than its row says): re-check the
        labels, archive, remove; the event carries no deployment row, so it names the id."""
        gw = self.ctx.hosts.gateway(item["host"])
        store_id, dep_id = self.ctx.store_id, item["deployment_id"]
        folder = dep_id if validate.DEPLOYMENT_RE.fullmatch(dep_id or "") else "unknown-deployment"
        archive = self.ctx.paths.ensure(self.ctx.paths.archive(folder))
        if item["kind"] == "container":
            details = gw.inspect(item["id"])
            if details is None:
                return "already gone"
            if not L.is_ours((details.get("Config") or {}).get("Labels"), store_id, dep_id):
                return "labels changed: left alone"
            gw.archive_logs(item["id"], archive / f"{item['name']}.log.gz")
            result = gw.remove_container(item["id"])
        else:
            vols = [v for v in gw.list_volumes(store_id, dep_id) if v["Name"] == item["id"]]
            if not vols:
                return "already gone"
            if not L.is_ours(vols[0].get("Labels"), store_id, dep_id):
                return "labels changed: left alone"
            Archive(self.ctx.paths.archive_root(), self.settings).backup_volume(gw, vols[0], archive)
            result = gw.remove_volume(item["id"])
        with self.ctx.store.write():
            D.event(None, f"Reconcile: removed orphan {item['kind']} {item['name']} of "
                          f"{item['deployment_status']} deployment {dep_id} on {item['host']} "
                          f"(age {item['age']:.0f} s; archived to archive/{folder})", kind="reconcile",
                    level="warning", host=item["host"])
        return result


def container_verdicts(ctx, infos: list) -> dict[str, dict]:
    """What a pass would make of each listed container, by the rule `plan()` uses (labels.is_ours with the
    container's own deployment id, then `_orphan`), for `containers`: {container id: {"orphan": the pass sweeps it
    now, "in_grace": it will once orphan_grace has passed, "foreign": it carries our store label but is not ours
    (a look-alike, a shared-scope label, no or a malformed deployment id), so no pass will ever touch it}}."""
    # a dry run acts on nothing: it needs no pipeline
    judge, t, store_id = Pass(ctx, None, dry_run=True), now(), ctx.store_id
    open_tasks = {r.deployment_id for r in CleanupTask.select(CleanupTask.deployment)
                  .where(CleanupTask.state.in_(D.OPEN_TASK))}
    rollbacks = active_rollback_ids()
    ids = sorted({c.deployment_id for c in infos if c.deployment_id})
    deps = {d.id: d for d in (Deployment.select(Deployment.id, Deployment.status, Deployment.host,
                                                Service.name.alias("service_name"))
                              .join(Service).where(Deployment.id.in_(ids)).objects())} if ids else {}
    out = {}
    for c in infos:
        if not c.deployment_id or not L.is_ours(c.labels, store_id, c.deployment_id):
            out[c.id] = {"orphan": False, "in_grace": False, "foreign": True}
            continue
        found, fresh = judge.orphan(c.host, "container", c.deployment_id, c.id, c.name, t - c.created,
                                     deps.get(c.deployment_id), open_tasks, rollbacks, running=c.running)
        out[c.id] = {"orphan": bool(found) and not found.get("problem"), "in_grace": bool(fresh), "foreign": False}
    return out


def run(ctx, pipeline, dry_run: bool = False, runtime=None, scheduled: bool = False) -> dict:
    """One pass now (or, with dry_run, only its plan: nothing is written, nothing is touched)."""
    return Pass(ctx, pipeline, runtime=runtime, dry_run=dry_run, scheduled=scheduled).run()


def manual(ctx, pipeline, runtime=None, dry_run: bool = False) -> dict:
    """`deployer-console reconcile`: one pass, recorded as a job run of this process (`runtime`, when it hosts
    one) unless it is a dry run."""
    if dry_run:
        return run(ctx, pipeline, dry_run=True, runtime=runtime)
    holder = runtime.holder if runtime is not None else f"manual:{D.MACHINE}:{os.getpid()}"
    run_id, _ = jobruns.open_run(ctx.store, "reconcile", holder)
    outcome, counts, error = "error", {}, None
    try:
        result = run(ctx, pipeline, runtime=runtime)
        counts = result["counts"]
        outcome = "error" if result["errors"] else "ok"
        error = "; ".join(result["errors"])[:500] or None
        return result
    except Exception as e:
        error = one_line(e)
        raise
    finally:
        jobruns.close_run(ctx.store, run_id, outcome, counts, error)
