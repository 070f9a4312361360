"""Queries both faces use. One query per table: no per-row lookups in loops."""
from storage.models import CleanupTask, Deployment, Service


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


MATCH_FIELDS = {"id": Deployment.id, "service": Service.name, "status": Deployment.status, "host": Deployment.host,
                "error": Deployment.error}


def _match(q, words):
    """Each word (case-insensitive substring, `field:value` for one field) must match id, service, status, host or
    error. The LIKE is a superset (`_` and `%` are wildcards there): callers that care re-check in Python."""
    for word in words or ():
        field, sep, value = word.partition(":")
        fields = [MATCH_FIELDS[field]] if sep and field in MATCH_FIELDS else list(MATCH_FIELDS.values())
        value = value if sep and field in MATCH_FIELDS else word
        cond = None
        for f in fields:
            c = f.contains(value)
            cond = c if cond is None else cond | c
        q = q.where(cond)
    return q


def count_deployments(match=None) -> int:
    return _match(Deployment.select().join(Service), match).count()


def deployment_rows(status=None, service=None, host=None, limit=None, since_id=None, match=None,
                    ids=None) -> list[dict]:
    """Deployments newest first, joined with their service name and latest cleanup state in two queries."""
    q = (Deployment.select(Deployment, Service.name.alias("service_name"))
         .join(Service).order_by(Deployment.created_at.desc(), Deployment.id))
    q = _match(q, match)
    if ids is not None:
        q = q.where(Deployment.id.in_(list(ids)))
    if status:
        q = q.where(Deployment.status == status)
    if service:
        q = q.where(Service.name == service)
    if host:
        q = q.where(Deployment.host == host)
    if limit:
        q = q.limit(limit)
    rows = []
    for d in q.dicts():
        rows.append({"id": d["id"], "service": d["service_name"], "status": d["status"], "phase": d["phase"],
                     "host": d["host"], "error": d["error"], "created_at": d["created_at"],
                     "updated_at": d["updated_at"], "finished_at": d["finished_at"],
                     "started_at": d["started_at"], "attempts": d["attempts"], "heartbeat_at": d["heartbeat_at"],
                     "wait_reason": d["wait_reason"]})
    if rows:
        states = cleanup_states([r["id"] for r in rows] if len(rows) < 500 else None)
        for r in rows:
            r["cleanup"] = states.get(r["id"])
    return rows


def cleanup_states(ids=None) -> dict[str, str]:
    q = CleanupTask.select(CleanupTask.deployment, CleanupTask.state, CleanupTask.id).order_by(CleanupTask.id)
    if ids is not None:
        q = q.where(CleanupTask.deployment.in_(ids))
    return {row["deployment"]: row["state"] for row in q.dicts()}


def known_deployments() -> dict[str, str]:
    return {row["id"]: row["status"] for row in Deployment.select(Deployment.id, Deployment.status).dicts()}
