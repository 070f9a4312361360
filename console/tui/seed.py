"""A deterministic store for snapshot tests, screenshots and the benchmark: fixed ids, fixed times, every status.

Rows are inserted directly (no Docker, no pipeline), and the caller freezes `storage.clock` at `FROZEN_AT` so ages and
durations render the same on every run. No Textual import: the benchmark and scripts use it headless.
"""
from storage.models import CleanupTask, Deployment, DeploymentEvent, Host, JobRun, Lease, PhaseRun, Project, Service

FROZEN_AT = 1_767_268_800.0   # 2026-01-01 12:00:00 UTC
PHASES = ["PULLING_SOURCE", "BUILDING", "COPYING_FILES", "CREATING_SYMLINKS", "UPDATING_ROUTES", "HEALTH_CHECK"]

# id, service, status, phase, minutes ago created, run seconds, error, cleanup state
SHOWCASE = [
    ("a1b2c3d4e5f6", "web", "deploying", "COPYING_FILES", 1, None, None, None),
    ("b2c3d4e5f6a1", "api", "queued", None, 0.5, None, None, None),
    ("c3d4e5f6a1b2", "web", "failed", "HEALTH_CHECK", 6, 74.2,
     "HEALTH_CHECK: health check timed out after 60 s (wget: server returned error: HTTP/1.1 404 Not Found)",
     "pending"),
    ("d4e5f6a1b2c3", "api", "success", "HEALTH_CHECK", 14, 21.7, None, None),
    ("e5f6a1b2c3d4", "worker", "degraded", "HEALTH_CHECK", 25, 18.3, None, None),
    ("f6a1b2c3d4e5", "slow", "cancelled", "BUILDING", 31, 12.9, None, "done"),
    ("0a1b2c3d4e5f", "web", "success", "HEALTH_CHECK", 48, 16.1, None, None),
    ("1b2c3d4e5f0a", "web", "superseded", "HEALTH_CHECK", 95, 15.4, None, None),
    ("2c3d4e5f0a1b", "api", "superseded", "HEALTH_CHECK", 180, 22.0, None, None),
    ("3d4e5f0a1b2c", "broken", "failed", "BUILDING", 320, 8.8,
     "BUILDING: The command '/bin/sh -c make' returned a non-zero code: 127", "kept"),
    ("4e5f0a1b2c3d", "worker", "superseded", "HEALTH_CHECK", 1440, 19.9, None, None),
    ("5f0a1b2c3d4e", "web", "cancelled", "PULLING_SOURCE", 2900, 2.1, None, "done"),
]


def _lease_name() -> str:
    try:
        from console.engine.lease import LEASE_NAME
        return LEASE_NAME
    except ImportError:
        return "engine"


def _service_ids() -> dict[str, int]:
    project, _ = Project.get_or_create(name="demo", defaults={"created_at": FROZEN_AT - 86400 * 3})
    out = {}
    for name in ("web", "api", "worker", "slow", "broken"):
        svc = Service.get_or_none(Service.name == name)
        if svc is None:
            svc = Service.create(name=name, project=project, source=f"/srv/demo/{name}", port=8080,
                                 created_at=FROZEN_AT - 86400 * 3)
        out[name] = svc.id
    return out


def _phase_rows(dep_id: str, status: str, phase: str | None, start: float, run: float | None) -> list[dict]:
    if not phase:
        return []
    upto = PHASES.index(phase)
    rows, t = [], start
    per = (run or 60.0) / (upto + 1)
    for i, name in enumerate(PHASES[:upto + 1]):
        last = i == upto
        outcome = "done"
        if last and status == "failed":
            outcome = "failed"
        elif last and status == "cancelled":
            outcome = "cancelled"
        elif last and status == "deploying":
            outcome = None
        rows.append({"deployment": dep_id, "phase": name, "attempt": 0, "started_at": t,
                     "finished_at": None if outcome is None else t + per, "outcome": outcome,
                     "detail": None if outcome is None else f"{name.lower().replace('_', ' ')} {outcome}"})
        t += per
    return rows


def seed(store, extra: int = 0, at: float = FROZEN_AT) -> list[str]:
    """Insert the showcase deployments (and `extra` old finished ones) into an open store. Returns the showcase ids,
    newest first."""
    with store.write():
        # the showcase's default host is a Host row seen up (a run's own default host is only held in memory)
        Host.insert(name="local", url="", is_default=True).on_conflict_ignore().execute()
        Host.update(reachable=True, last_seen_at=at - 3, last_error=None).execute()
        svc = _service_ids()
        deps, phases, events, tasks = [], [], [], []
        for dep_id, service, status, phase, minutes, run, error, cleanup in SHOWCASE:
            created = at - minutes * 60
            started = created + 0.4 if status != "queued" else None
            finished = started + run if run is not None and status not in ("deploying", "queued") else None
            deps.append({"id": dep_id, "service": svc[service], "status": status, "phase": phase, "host": "local",
                         "image": f"deployer/{service}:{dep_id}" if phase and phase != "PULLING_SOURCE" else None,
                         "error": error, "created_at": created, "updated_at": finished or created,
                         "started_at": started, "finished_at": finished, "attempts": 0,
                         "heartbeat_at": at - 1 if status == "deploying" else None,
                         "phase_started_at": at - 20 if status == "deploying" else None, "actor": "ops"})
            phases += _phase_rows(dep_id, status, phase, started or created, run if finished else 60.0)
            events.append({"deployment": dep_id, "time": created, "level": "info", "kind": "deployment",
                           "message": f"Deployment {dep_id} of {service} queued on local", "actor": "ops",
                           "host": "local"})
            if finished:
                level = {"failed": "error", "cancelled": "warning", "degraded": "warning"}.get(status, "info")
                events.append({"deployment": dep_id, "time": finished, "level": level, "kind": "deployment",
                               "message": f"Deployment {dep_id} deploying -> {status}"
                                          + (f": {error}" if error else ""), "actor": None, "host": "local"})
            if cleanup:
                done = cleanup == "done"
                tasks.append({"deployment": dep_id, "reason": status, "state": cleanup, "due_at": finished,
                              "attempts": 1 if done else 0, "created_at": finished, "updated_at": finished,
                              "finished_at": finished + 2 if done else None})
                if done:
                    events.append({"deployment": dep_id, "time": finished + 2, "level": "info", "kind": "cleanup",
                                   "message": f"Cleanup of {dep_id}: removed 1 container, archived its log",
                                   "actor": None, "host": "local"})
        events += [
            {"deployment": None, "time": at - 40, "level": "info", "kind": "reconcile",
             "message": "Reconcile pass: 1 host, 4 containers, no drift", "actor": None, "host": None},
            {"deployment": "e5f6a1b2c3d4", "time": at - 35, "level": "warning", "kind": "reconcile",
             "message": "Deployment e5f6a1b2c3d4 of worker degraded: container exited (code 137)", "actor": None,
             "host": "local"},
            {"deployment": None, "time": at - 30, "level": "info", "kind": "audit",
             "message": "Service web updated (source /srv/demo/web)", "actor": "ops", "host": None},
            {"deployment": "a1b2c3d4e5f6", "time": at - 20, "level": "info", "kind": "deployment",
             "message": "BUILDING done in 11.4 s", "actor": None, "host": "local"},
        ]
        Deployment.insert_many(deps).execute()
        PhaseRun.insert_many(phases).execute()
        DeploymentEvent.insert_many(sorted(events, key=lambda e: e["time"])).execute()
        if tasks:
            CleanupTask.insert_many(tasks).execute()
        # another console holds the lease and reconciled 6 s ago: the status bar has something to say
        Lease.delete().where(Lease.name == _lease_name()).execute()
        Lease.insert(name=_lease_name(), holder="ops-1:4242:7", holder_machine="ops-1", holder_pid=4242,
                     acquired_at=at - 3600, renewed_at=at - 2, expires_at=at + 13).execute()
        JobRun.insert_many([{"job": "reconcile", "holder": "ops-1:4242:7", "started_at": at - 7, "finished_at": at - 6,
                             "outcome": "ok", "counts": {}},
                            {"job": "cleanup", "holder": "ops-1:4242:7", "started_at": at - 1, "finished_at": at - 1,
                             "outcome": "ok", "counts": {}}]).execute()
    if extra:
        seed_history(store, extra, at)
    return [d[0] for d in SHOWCASE]


def seed_history(store, count: int, at: float = FROZEN_AT) -> None:
    """`count` old, finished deployments (one every 10 minutes, going back in time): a big store for the bench."""
    svc = _service_ids()
    names = list(svc)
    statuses = ["superseded"] * 6 + ["failed", "cancelled", "superseded", "superseded"]
    rows = []
    for i in range(count):
        created = at - 3 * 86400 - i * 600
        status = statuses[i % len(statuses)]
        rows.append({"id": f"{0x900000000000 + i:012x}", "service": svc[names[i % len(names)]], "status": status,
                     "phase": "HEALTH_CHECK" if status == "superseded" else "BUILDING", "host": "local",
                     "created_at": created, "updated_at": created + 30, "started_at": created + 1,
                     "finished_at": created + 30, "attempts": 0,
                     "error": "BUILDING: exit 1" if status == "failed" else None})
    with store.write():
        for i in range(0, len(rows), 500):
            Deployment.insert_many(rows[i:i + 500]).execute()


def link_current(paths) -> None:
    """Point each serving service's `current` link at its release, as a finished deployment leaves it."""
    import os
    for dep_id, service, status, *_ in SHOWCASE:
        if status in ("success", "degraded"):
            link = paths.current(service)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                os.symlink(str(paths.release(dep_id)), link)


def showcase_status(at: float = FROZEN_AT) -> dict:
    """What `Engine.status()` says in a console that leads, with two hosts (one down): snapshots and screenshots."""
    return {"leader": {"holder": "ops-1:4242:7", "host": "ops-1", "pid": 4242, "expires_at": at + 13},
            "role": "leader", "me": "ops-1:4242:7", "jobs": [], "cleanup_queue": 1, "read_only": False,
            "hosts": [{"name": "local", "url": "unix:///var/run/docker.sock", "reachable": True, "last_error": None,
                       "last_seen_at": at - 3},
                      {"name": "h2", "url": "tcp://10.0.0.2:2376", "reachable": False,
                       "last_error": "connection refused", "last_seen_at": at - 600}],
            "last_reconcile_at": at - 6, "next_reconcile_at": at + 9}


def showcase_containers(at: float = FROZEN_AT) -> list[dict]:
    """What `Engine.containers(all=True)` lists for the showcase: serving ones healthy, the failed deployment's
    container unhealthy (an orphan now), a container of no known deployment, and a stopped rollback target."""
    def row(dep_id, service, state, health, minutes, orphan, status=None, ports=()):
        return {"id": f"{dep_id[:6]}c0ffee"[:12], "name": f"deployer-{service}-{dep_id}", "deployment_id": dep_id,
                "service": service, "state": state, "status": state, "health": health,
                "image": f"deployer/{service}:{dep_id}", "created": at - minutes * 60, "ports": list(ports),
                "host": "local", "deployment_status": status, "orphan": orphan}
    return [row("a1b2c3d4e5f6", "web", "created", "starting", 0.5, False, "deploying"),
            row("c3d4e5f6a1b2", "web", "exited", "unhealthy", 5, True, "failed"),
            row("d4e5f6a1b2c3", "api", "running", "healthy", 14, False, "success", ["0.0.0.0:32771->8080/tcp"]),
            row("e5f6a1b2c3d4", "worker", "restarting", "unhealthy", 25, False, "degraded"),
            row("0a1b2c3d4e5f", "web", "running", "healthy", 48, False, "success", ["0.0.0.0:32768->8080/tcp"]),
            row("1b2c3d4e5f0a", "web", "exited", "-", 95, False, "superseded"),
            row("77aa88bb99cc", "ghost", "running", "-", 600, True)]
