"""The engine's status as `status` and the console's status bar show it: the lease holder, each job's last run and
next one, the cleanup queue, each Docker host. Apart from the scheduler, so that asking it loads neither APScheduler
nor the pipeline, cleanup and reconcile code the runtime runs."""
from peewee import fn

from console.engine import deployments as D
from console.engine.lease import LEASE_NAME, lease_dict
from storage.clock import now
from storage.models import CleanupTask, JobRun, Lease

JOBS = ("dispatch", "cleanup", "reconcile", "retention")   # the runtime's jobs (scheduler.py), in the order shown


def status(engine, probe: bool = False) -> dict:
    """The lease, each job's last run, the cleanup queue and each engine's reachability: what `status` prints and
    the console's status bar shows. Works the same in a leader, a follower and a plain CLI process. With probe,
    every host is asked now (in parallel, bounded by host_timeout) instead of showing what was last noted."""
    rt = engine.runtime
    t = now()
    leader = lease_dict(Lease.get_or_none(Lease.name == LEASE_NAME), t)
    role = "none" if rt is None else ("leader" if rt.is_leader else "follower")
    latest = {r.job: r for r in JobRun.select().where(
        JobRun.id.in_(JobRun.select(fn.MAX(JobRun.id)).group_by(JobRun.job)))}
    last_reconcile = (JobRun.select(JobRun.finished_at).where((JobRun.job == "reconcile") &
                                                              JobRun.finished_at.is_null(False))
                      .order_by(JobRun.id.desc()).first())
    s = engine.settings.scheduler
    intervals = {"dispatch": s.dispatch_interval, "cleanup": s.cleanup_interval, "reconcile": s.reconcile_interval,
                 "retention": s.retention_interval}
    jobs = []
    for name in JOBS + tuple(sorted(set(latest) - set(JOBS))):
        run = latest.get(name)
        nxt = rt.next_run_at(name) if rt is not None and role == "leader" else None
        if nxt is None and leader and run is not None and name in intervals:
            nxt = (run.started_at or t) + float(intervals[name])  # the leader's schedule, seen from outside
        jobs.append({"name": name, "last_run_at": run.started_at if run else None,
                     "finished_at": run.finished_at if run else None,
                     "outcome": (run.outcome or "running") if run else None, "counts": run.counts if run else None,
                     "holder": run.holder if run else None, "error": run.error if run else None,
                     "next_run_at": nxt})
    rec = next(j for j in jobs if j["name"] == "reconcile")
    queue = CleanupTask.select().where(CleanupTask.state.in_(D.QUEUED_TASK)).count()
    # hosts that are this run's own (config, environment, default socket) are known to no other process: checked
    # here when this process has not done so within a reconcile interval
    names = None if probe else engine.hosts.stale(float(s.reconcile_interval))
    if probe or names:
        from console.engine.hosts import note_reachability
        note_reachability(engine.ctx, engine.hosts.probe(names=names))
    hosts = [{k: h[k] for k in ("name", "url", "source", "reachable", "last_error", "last_seen_at")}
             | {"is_default": h["default"]} for h in engine.hosts.rows()]
    return {"leader": leader, "role": role, "me": rt.holder if rt is not None else None, "jobs": jobs,
            "cleanup_queue": queue, "hosts": hosts, "read_only": bool(engine.settings.read_only),
            "last_reconcile_at": last_reconcile.finished_at if last_reconcile else None,
            "next_reconcile_at": rec["next_run_at"],
            "lease_error": rt.lease.last_error if rt is not None else None}
