"""The engine's status as `status` and the console's status bar show it: the lease holder, each job's last run and
next one, the cleanup queue, each Docker host. Apart from the scheduler, so that asking it loads neither APScheduler
nor the pipeline, cleanup and reconcile code the runtime runs."""
from storage.clock import now
from storage.statuses import QUEUED_TASK

JOBS = ("dispatch", "cleanup", "reconcile", "retention")   # the runtime's jobs (scheduler.py), in the order shown
LEASE_NAME = "engine"   # the lease row every engine of a store competes for (lease.py)


def lease_dict(row: dict | None, at: float | None = None) -> dict | None:
    """The leader as the status shows it (from a lease row), or None when nobody holds an unexpired lease."""
    at = now() if at is None else at
    if row is None or not row["holder"] or (row["expires_at"] or 0) <= at:
        return None
    return {"holder": row["holder"], "host": row["holder_machine"], "pid": row["holder_pid"],
            "expires_at": row["expires_at"], "renewed_at": row["renewed_at"], "acquired_at": row["acquired_at"]}


def status(ctx, runtime=None, probe: bool = False) -> dict:
    """The lease, each job's last run, the cleanup queue and each engine's reachability: what `status` prints and
    the console's status bar shows. Works the same in a leader, a follower and a plain CLI process (`runtime`: this
    process's scheduler, if it hosts one). With probe, every host is asked now (in parallel, bounded by host_timeout)
    instead of showing what was last noted."""
    from storage.reads import Reader
    s = ctx.settings.scheduler
    # hosts that are this run's own (config, environment, default socket) are known to no other process: checked
    # here when this process has not done so within a reconcile interval
    names = None if probe else ctx.hosts.stale(float(s.reconcile_interval))
    if probe or names:
        from console.engine.hosts import note_reachability
        note_reachability(ctx, ctx.hosts.probe(names=names))
    return build(Reader.peewee(ctx.store.db), ctx.settings, ctx.hosts.rows(), runtime)


def build(reader, settings, hosts: list[dict], runtime=None) -> dict:
    """The status from the store's rows (a storage.reads.Reader), the settings and the host rows (Hosts.rows());
    `runtime`: this process's scheduler, if it hosts one. The CLI's quick path (console/quick.py) calls this too."""
    rt = runtime
    t = now()
    leader = lease_dict(reader.lease(LEASE_NAME), t)
    role = "none" if rt is None else ("leader" if rt.is_leader else "follower")
    latest = reader.latest_job_runs()
    s = settings.scheduler
    intervals = {"dispatch": s.dispatch_interval, "cleanup": s.cleanup_interval, "reconcile": s.reconcile_interval,
                 "retention": s.retention_interval}
    jobs = []
    for name in JOBS + tuple(sorted(set(latest) - set(JOBS))):
        run = latest.get(name)
        nxt = rt.next_run_at(name) if rt is not None and role == "leader" else None
        if nxt is None and leader and run is not None and name in intervals:
            nxt = (run["started_at"] or t) + float(intervals[name])  # the leader's schedule, seen from outside
        jobs.append({"name": name, "last_run_at": run["started_at"] if run else None,
                     "finished_at": run["finished_at"] if run else None,
                     "outcome": (run["outcome"] or "running") if run else None,
                     "counts": run["counts"] if run else None, "holder": run["holder"] if run else None,
                     "error": run["error"] if run else None, "next_run_at": nxt})
    rec = next(j for j in jobs if j["name"] == "reconcile")
    hosts = [{k: h[k] for k in ("name", "url", "source", "reachable", "last_error", "last_seen_at")}
             | {"is_default": h["default"]} for h in hosts]
    return {"leader": leader, "role": role, "me": rt.holder if rt is not None else None, "jobs": jobs,
            "cleanup_queue": reader.count_tasks(QUEUED_TASK), "hosts": hosts, "read_only": bool(settings.read_only),
            "last_reconcile_at": reader.last_finished("reconcile"), "next_reconcile_at": rec["next_run_at"],
            "lease_error": rt.lease.last_error if rt is not None else None}
