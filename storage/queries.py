"""Queries both faces use. One query per table: no per-row lookups in loops."""
from storage import reads
from storage.models import CleanupTask, Deployment, Service
from storage.statuses import COMPLETED


def service_dict(s: Service) -> dict:
    return {"name": s.name, "project": s.project.name, "source": s.source, "port": s.port,
            "health_path": s.health_path, "route_host": s.route_host, "volumes": s.volumes,
            "shared_volumes": s.shared_volumes, "env": {k: "***" for k in (s.env or {})}, "host": s.host,
            "shell": s.shell}


def cleanup_dict(t: CleanupTask) -> dict:
    return {"id": t.id, "reason": t.reason, "state": t.state, "due_at": t.due_at, "attempts": t.attempts,
            "last_error": t.last_error, "finished_at": t.finished_at}


def event_dict(e) -> dict:
    return {"id": e.id, "deployment_id": e.deployment_id, "time": e.time, "level": e.level, "kind": e.kind,
            "message": e.message, "actor": e.actor, "host": e.host, "detail": e.detail}


def _reader() -> reads.Reader:
    return reads.Reader.peewee(Deployment._meta.database.obj)


def count_deployments(match=None) -> int:
    return _reader().count_deployments(match)


def deployment_rows(status=None, service=None, host=None, limit=None, match=None, ids=None) -> list[dict]:
    """Deployments newest first, joined with their service name and latest cleanup state in two queries (the SQL is
    storage/reads.py's, which the CLI's quick path runs too)."""
    return _reader().deployment_rows(status=status, service=service, host=host, limit=limit, match=match, ids=ids)


def known_deployments(ids=None) -> dict[str, str]:
    """{id: status} of every deployment, or of these ids only."""
    q = Deployment.select(Deployment.id, Deployment.status)
    if ids is not None:
        ids = sorted(ids)
        out = {}
        for start in range(0, len(ids), 500):
            out.update(q.where(Deployment.id.in_(ids[start:start + 500])).tuples())
        return out
    return dict(q.tuples())


def recent_runs(services, per_service: int) -> dict[str, list[float]]:
    """{service: run times (finished - started) of its newest `per_service` ended deployments, newest first}, for
    the named services, in one query (a window function: SQLite >= 3.25 and PostgreSQL both have ROW_NUMBER)."""
    from peewee import fn
    services = list(services)
    if not services:
        return {}
    rank = fn.ROW_NUMBER().over(partition_by=[Deployment.service],
                                order_by=[Deployment.created_at.desc(), Deployment.id])
    inner = (Deployment.select(Service.name.alias("service_name"),
                               (Deployment.finished_at - Deployment.started_at).alias("took"), rank.alias("rn"))
             .join(Service)
             .where(Service.name.in_(services), Deployment.status.in_(sorted(COMPLETED)),
                    Deployment.started_at.is_null(False), Deployment.finished_at.is_null(False)))
    q = (Deployment.select(inner.c.service_name, inner.c.took).from_(inner)
         .where(inner.c.rn <= per_service).order_by(inner.c.service_name, inner.c.rn))
    out: dict[str, list[float]] = {}
    for name, took in q.tuples():
        out.setdefault(name, []).append(float(took))
    return out


def service_history(service: str, limit: int) -> tuple[list[dict], list[dict]]:
    """The service's newest `limit` deployments that left the queue (oldest first) and their phase runs, in two
    queries: ([{id, status, created_at, started_at, finished_at}], [{deployment_id, phase, attempt, duration}])."""
    from storage.models import PhaseRun
    deps = list(Deployment.select(Deployment.id, Deployment.status, Deployment.created_at, Deployment.started_at,
                                  Deployment.finished_at)
                .join(Service).where(Service.name == service, Deployment.status != "queued")
                .order_by(Deployment.created_at.desc(), Deployment.id).limit(limit).dicts())
    deps.reverse()
    if not deps:
        return [], []
    runs = [{"deployment_id": r["deployment"], "phase": r["phase"], "attempt": r["attempt"],
             "duration": (r["finished_at"] - r["started_at"]) if r["finished_at"] is not None else None,
             "outcome": r["outcome"]}
            for r in (PhaseRun.select(PhaseRun.deployment, PhaseRun.phase, PhaseRun.attempt, PhaseRun.started_at,
                                      PhaseRun.finished_at, PhaseRun.outcome)
                      .where(PhaseRun.deployment.in_([d["id"] for d in deps])).order_by(PhaseRun.id).dicts())]
    return deps, runs
