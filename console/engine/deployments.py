"""Status moves, decided in one place, and the events and audit lines that go with them.

A move to `failed` or `cancelled` writes the cleanup task (the outbox row) in the same transaction, so the move never
waits for Docker and the cleanup can never be lost.
"""
import json
import os
import pwd
import socket

from console.engine.errors import InputError
from storage.clock import now
from storage.models import CleanupTask, Deployment, PhaseRun
from storage.statuses import (  # noqa: F401 (the engine names them D.TERMINAL, D.QUEUED_TASK, ...)
    ACTIVE,
    CLEANUP_ON,
    COMPLETED,
    ENDED,
    LEGAL_MOVES,
    OPEN_TASK,
    QUEUED_TASK,
    RESUMABLE,
    RUN_ENDS,
    SERVING,
    STATUSES,
    TASK_MOVES,
    TERMINAL,
)

MACHINE = socket.gethostname()


def login_name() -> str:
    """$USER or $LOGNAME, else the password database's name for our uid (cron and systemd set neither); a uid
    without an entry is written `uid N`, never a bare number that reads like a count."""
    name = os.environ.get("USER") or os.environ.get("LOGNAME")
    if name:
        return name
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def actor() -> str:
    """Who is acting: the login name, plus the SSH client's address when there is one."""
    user = login_name()
    ssh = os.environ.get("SSH_CLIENT") or os.environ.get("SSH_CONNECTION")
    return f"{user}@{ssh.split()[0]}" if ssh else user


def _sql(template: str) -> str:
    """Status moves and events are the store's hottest writes; peewee's query building costs more than the write
    itself, so they use fixed SQL with the database's own placeholder."""
    return template.replace("?", Deployment._meta.database.param)


def event(deployment_id: str | None, message: str, kind: str = "deployment", level: str = "info",
          actor_name: str | None = None, host: str | None = None, detail: dict | None = None) -> None:
    if detail is None:
        Deployment._meta.database.execute_sql(
            _sql("INSERT INTO deployment_event (deployment_id, time, level, kind, message, actor, host) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)"), (deployment_id, now(), level, kind, message, actor_name, host))
        return
    Deployment._meta.database.execute_sql(
        _sql("INSERT INTO deployment_event (deployment_id, time, level, kind, message, actor, host, detail) "
             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
        (deployment_id, now(), level, kind, message, actor_name, host, json.dumps(detail, sort_keys=True)))


def events(rows: list[tuple]) -> None:
    """Several events in one statement (call inside a write): rows of (deployment_id, time, level, kind, message,
    host), in order."""
    if rows:
        values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(rows))
        Deployment._meta.database.execute_sql(
            _sql(f"INSERT INTO deployment_event (deployment_id, time, level, kind, message, host) VALUES {values}"),
            [v for row in rows for v in row])


AUDIT_OUTCOMES = ("ok", "refused", "failed")


def audit(action: str, target: str, outcome: str, actor_name: str, message: str | None = None,
          deployment_id: str | None = None, host: str | None = None, error: str | None = None) -> None:
    """One operator action as an audit record: an event of kind `audit` whose detail says action, target and
    outcome (ok, refused: the engine said no, failed: it was tried and did not work). Call inside a write."""
    target = target[:200]  # a refused target is the operator's input, whatever its length
    detail = {"action": action, "target": target, "outcome": outcome} | ({"error": error} if error else {})
    if message is None:
        message = f"{action} {target}: {outcome}" + (f" ({error})" if error else "")
    level = {"ok": "info", "refused": "warning"}.get(outcome, "error")
    event(deployment_id, message, kind="audit", level=level, actor_name=actor_name, host=host, detail=detail)


def resolve(store, prefix: str) -> Deployment:
    """A deployment by id or unique prefix (4+ hex digits)."""
    from console.engine import validate
    validate.deployment_id(prefix)
    dep = Deployment.get_or_none(Deployment.id == prefix)
    if dep is not None:
        return dep
    matches = list(Deployment.select().where(Deployment.id.startswith(prefix)).limit(2))
    if not matches:
        raise InputError(f"unknown deployment {prefix}")
    if len(matches) > 1:
        raise InputError(f"deployment id {prefix} is ambiguous; give more digits")
    return matches[0]


def check_move(current: str, to: str, deployment_id: str) -> None:
    if to not in LEGAL_MOVES.get(current, set()):
        raise InputError(f"deployment {deployment_id} is {current}; it cannot become {to}")


def move(store, deployment_id: str, to: str, *, error: str | None = None, expect: set[str] | None = None,
         reason: str | None = None, cleanup_delay: float = 0.0, message: str | None = None,
         actor_name: str | None = None, **fields) -> None:
    """Move a deployment to `to` in one write transaction, refusing illegal moves. `expect` narrows the statuses it
    may be in (a compare-and-set: a pipeline that lost a race with a cancel gets an InputError, not a bad state)."""
    with store.write():
        # only the columns the decision needs: a full 20-column row costs more than the whole write
        db = Deployment._meta.database
        row = db.execute_sql(_sql("SELECT status, host FROM deployment WHERE id = ?"), (deployment_id,)).fetchone()
        if row is None:
            raise InputError(f"unknown deployment {deployment_id}")
        status, host = row
        if expect is not None and status not in expect:
            raise InputError(f"deployment {deployment_id} is {status}, not {'/'.join(sorted(expect))}")
        check_move(status, to, deployment_id)
        t = now()
        values = {"status": to, "updated_at": t, **fields}
        if error is not None:
            values["error"] = error
        if to in TERMINAL or to == "success":
            values.setdefault("heartbeat_at", None)
        if status in ACTIVE and to in RUN_ENDS:
            # finished_at ends the deployment's own run (DURATION); a supersede, a rollback or a drift move later
            # changes its status, not how long it ran
            values.setdefault("finished_at", t)
        if to == "deploying" and status != "deploying":
            values.setdefault("started_at", t)
            values.setdefault("finished_at", None)
            values.setdefault("error", None)
        fields_by_name = Deployment._meta.fields
        columns = ", ".join(f"{fields_by_name[k].column_name} = ?" for k in values)
        db.execute_sql(_sql(f"UPDATE deployment SET {columns} WHERE id = ?"),
                       (*(fields_by_name[k].db_value(v) for k, v in values.items()), deployment_id))
        if message is None:
            message = f"Deployment {deployment_id} {status} -> {to}" + (f": {error}" if error else "")
        level = "error" if to == "failed" else "warning" if to in ("cancelled", "degraded") else "info"
        event(deployment_id, message, kind="deployment", level=level, actor_name=actor_name, host=host)
        if to in CLEANUP_ON:
            enqueue_cleanup(deployment_id, reason or to, delay=cleanup_delay)


def close_phases(deployment_id: str, detail: str, outcome: str = "interrupted") -> int:
    """Close the phase rows a dead pipeline left open (a zombie failed by reconcile, a cancel of a pipeline that is
    gone): nobody will ever finish them, and `running` would be a lie. Call inside a write transaction."""
    return PhaseRun.update(finished_at=now(), outcome=outcome, detail=detail[:500]).where(
        (PhaseRun.deployment == deployment_id) & PhaseRun.finished_at.is_null()).execute()


def enqueue_cleanup(deployment_id: str, reason: str, delay: float = 0.0) -> CleanupTask:
    """Create (or re-arm) the deployment's cleanup task; call inside a write transaction."""
    t = now()
    task = CleanupTask.get_or_none((CleanupTask.deployment == deployment_id) & (CleanupTask.state.in_(OPEN_TASK)))
    if task is not None:
        if task.state == "kept" and reason != "retention":
            return task
        move_task("pending" if task.state == "kept" else task.state, CleanupTask.id == task.id, reason=reason,
                  due_at=min(task.due_at, t + delay), updated_at=t)
        return CleanupTask.get_by_id(task.id)
    return CleanupTask.create(deployment=deployment_id, reason=reason, due_at=t + delay, created_at=t, updated_at=t)


def move_task(to: str, where, **fields) -> int:
    """Move the cleanup tasks matching `where` to state `to`, only from a state that may move there (TASK_MOVES);
    the number moved. Call inside a write transaction."""
    sources = [state for state, moves in TASK_MOVES.items() if to in moves]
    if not sources:
        raise ValueError(f"no cleanup task moves to {to!r}")
    return CleanupTask.update(state=to, **fields).where(where & CleanupTask.state.in_(sources)).execute()


def as_dict(dep: Deployment, service_name: str | None = None) -> dict:
    return {"id": dep.id, "service": service_name or dep.service.name, "status": dep.status, "phase": dep.phase,
            "host": dep.host, "error": dep.error, "created_at": dep.created_at, "updated_at": dep.updated_at,
            "finished_at": dep.finished_at, "attempts": dep.attempts, "heartbeat_at": dep.heartbeat_at,
            "owner": dep.owner, "image": dep.image, "wait_reason": dep.wait_reason}
