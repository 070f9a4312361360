"""Rollback, for real: a Rollback row records it while it runs, so cleanup skips every deployment it involves.

Rolling a service back starts the previous successful release's container, waits until it answers its health path,
only then points `current` and the route at it (releases.py), checks it end to end (through the proxy when the router
runs one), then makes it the service's success (the one it replaces becomes superseded and is stopped after
`drain_seconds`). A
failed rollback is recorded and reported, and the service keeps whatever was serving: current, route and container
of the deployment it started from are put back. Ctrl-C and SIGTERM (the CLI turns it into KeyboardInterrupt) undo it
the same way before the process ends.

A rollback has an owner (machine:pid:thread) and a heartbeat like a deployment. One whose process died (SIGKILL, a
crash) is recovered by reconcile (`orphaned` + `recover`): finished when the target's container runs and answers
its health check, undone otherwise, with an event saying which; store, `current`, route and container then agree.
"""
import logging
import os
import threading
import time

from console.engine import deployments as D
from console.engine import notify, releases
from console.engine.cleanup import queue_release_retention
from console.engine.errors import DeployerError, ForeignContainer, InputError, one_line
from console.engine.liveness import Heartbeat, pid_gone
from console.engine.paths import link_target
from console.engine.pipeline import container_name, wait_healthy
from console.engine.routes import route_for, wait_through_proxy
from storage.clock import now
from storage.models import Deployment, Rollback, Service

log = logging.getLogger(__name__)


class RollbackFailed(DeployerError):
    pass


def pick_target(svc: Service, to: str | None, paths) -> tuple[Deployment | None, Deployment]:
    serving = (Deployment.select().where((Deployment.service == svc.id) &
                                         (Deployment.status.in_(D.SERVING)))
               .order_by(Deployment.finished_at.desc()).first())
    if to:
        target = D.resolve(None, to)
        if target.service_id != svc.id:
            raise InputError(f"deployment {target.id} is not a deployment of {svc.name}")
        if target.status != "superseded":
            raise InputError(f"deployment {target.id} is {target.status}; roll back to a superseded (previously "
                             f"successful) deployment")
    else:
        # the one superseded last (only its move to `superseded` touched updated_at), not the newest run
        candidates = (Deployment.select().where((Deployment.service == svc.id) & (Deployment.status == "superseded"))
                      .order_by(Deployment.updated_at.desc()))
        target = next((d for d in candidates if paths.release(d.id).exists()), None)
        if target is None:
            raise InputError(f"service {svc.name} has no previous successful release to roll back to")
    if not paths.release(target.id).exists():
        raise InputError(f"the release directory of {target.id} is gone; deploy again instead")
    return serving, target


def new_owner() -> dict:
    return {"owner": f"{D.MACHINE}:{os.getpid()}:{threading.get_ident() % 100000}", "owner_machine": D.MACHINE,
            "owner_pid": os.getpid(), "heartbeat_at": now()}


def _fault_point(target_id: str) -> None:
    """Test hook: DEPLOYER_FAULT_PAUSE=ROLLBACK:SECONDS pauses a rollback after its route is written, before the
    health check, so a fault test can kill the process there."""
    name, _, seconds = os.environ.get("DEPLOYER_FAULT_PAUSE", "").partition(":")
    if name == "ROLLBACK" and seconds:
        D.event(target_id, f"fault pause in ROLLBACK ({seconds} s)", kind="rollback", level="debug")
        time.sleep(float(seconds))


def _container(gw, name: str, store_id: str, deployment_id: str):
    """The deployment's container (ownership checked, see Gateway.find_ours), or None when it is gone; one that is
    not ours is an error naming it, and it is never touched."""
    try:
        return gw.find_ours(name, store_id, deployment_id)
    except ForeignContainer as e:
        raise RollbackFailed(str(e)) from e


def rollback_heartbeat(ctx, rollback_id: int, owner: str) -> Heartbeat:
    """Keeps the rollback's heartbeat fresh while its owner lives, so reconcile never recovers a live rollback."""
    def beat():
        Rollback.update(heartbeat_at=now()).where((Rollback.id == rollback_id) & (Rollback.owner == owner) &
                                                  (Rollback.state == "active")).execute()
    return Heartbeat(ctx.store, f"rollback-{rollback_id}", beat, ctx.settings.pipeline.heartbeat_interval)


def rollback(ctx, pipeline, svc: Service, to: str | None = None, actor_name: str | None = None) -> Rollback:
    serving, target = pick_target(svc, to, ctx.paths)
    owner = new_owner()
    with ctx.store.write():
        running = Rollback.get_or_none((Rollback.service == svc.id) & (Rollback.state == "active"))
        if running is not None:
            gone = owner_gone(running, float(ctx.settings.scheduler.zombie_after))
            raise InputError(f"a rollback of {svc.name} is already in progress" + (
                f" (its process is gone: {gone}; `deployer-console reconcile` finishes or undoes it)" if gone else ""))
        rb = Rollback.create(service=svc, from_deployment=serving, to_deployment=target, actor=actor_name, **owner)
        D.event(target.id, f"Rollback of {svc.name} from {serving.id if serving else '-'} to {target.id} started "
                           f"by {actor_name}", kind="rollback", actor_name=actor_name, host=target.host)
    beat = rollback_heartbeat(ctx, rb.id, owner["owner"]).start()
    try:
        return _run(ctx, pipeline, rb, svc, serving, target, actor_name)
    finally:
        beat.close()


def _run(ctx, pipeline, rb: Rollback, svc: Service, serving, target: Deployment, actor_name) -> Rollback:
    before = link_target(ctx.paths.current(svc.name))
    previous_before = link_target(ctx.paths.previous(svc.name))
    gw = ctx.hosts.gateway(target.host)
    name = container_name(svc.name, target.id)
    started_here, info = False, None
    try:
        info = _container(gw, name, ctx.store_id, target.id)
        if info is None:
            raise RollbackFailed(f"the container {name} of {target.id} is gone; deploy again instead")
        if not info.running:
            gw.start(info)
            started_here = True
        # the route moves only to a container that answers; then the check end to end, through the proxy
        detail = wait_healthy(gw, info, svc.port, svc.health_path, ctx.settings.pipeline.health_timeout)
        releases.make_current(ctx.paths, svc.name, target.id, previous_id=before)
        releases.route(ctx, svc, target.id, gw, info)
        _fault_point(target.id)
        if ctx.router.proxy_check is not None:
            detail = wait_through_proxy(ctx.router, route_for(gw, svc, target.id, info), svc.health_path,
                                        ctx.settings.pipeline.health_timeout)
        else:
            detail = wait_healthy(gw, info, svc.port, svc.health_path, ctx.settings.pipeline.health_timeout)
    except BaseException as e:  # any failure, Ctrl-C and SIGTERM too: record it, put back what was serving
        interrupted = not isinstance(e, Exception)
        reason = "interrupted (Ctrl-C or SIGTERM)" if interrupted else one_line(e)
        _undo(ctx, rb, svc, serving, target, before, previous_before, stop_target=started_here)
        _end(ctx, rb, "failed", error=reason, level="error", actor_name=actor_name, host=target.host,
             message=f"Rollback of {svc.name} to {target.id} failed: {reason}; "
                     f"{svc.name} keeps {serving.id if serving else 'nothing'} serving")
        notify.rollback_failed(svc.name, target.id, reason)
        if interrupted:
            raise
        raise RollbackFailed(f"rollback of {svc.name} to {target.id} failed: {reason}") from e
    if not _complete(ctx, pipeline, rb, svc, serving, target, detail, actor_name,
                     message=f"Rollback of {svc.name} to {target.id} completed"):
        raise RollbackFailed(f"rollback of {svc.name} to {target.id} was ended by another process "
                             f"(its heartbeat was lost); see its events")
    return Rollback.get_by_id(rb.id)


def _complete(ctx, pipeline, rb: Rollback, svc: Service, serving, target: Deployment, detail: str, actor_name,
              message: str) -> bool:
    """The target becomes the service's success, the one it replaces superseded and stopped. False when the row is
    no longer this owner's active rollback (reconcile recovered it meanwhile): nothing is changed then."""
    with ctx.store.write():
        if not _still_mine(rb):
            return False
        D.move(ctx.store, target.id, "success", message=f"Deployment {target.id} serving again after rollback "
                                                           f"({detail})", actor_name=actor_name)
        if serving is not None and Deployment.get_by_id(serving.id).status in D.SERVING:
            D.move(ctx.store, serving.id, "superseded", actor_name=actor_name,
                   message=f"Deployment {serving.id} superseded by rollback to {target.id}")
        Rollback.update(state="completed", finished_at=now(), heartbeat_at=None).where(Rollback.id == rb.id).execute()
        D.event(target.id, message, kind="rollback", actor_name=actor_name, host=target.host)
    if serving is not None:  # requests in flight to the replaced container finish first
        time.sleep(float(ctx.settings.routes.drain_seconds))
        pipeline.stop_service_container(svc, serving.id, serving.host)
    queue_release_retention(ctx, svc)
    return True


def _still_mine(rb: Rollback) -> bool:
    return Rollback.select().where((Rollback.id == rb.id) & (Rollback.state == "active") &
                                   (Rollback.owner == rb.owner)).exists()


def _end(ctx, rb: Rollback, state: str, error: str, message: str, level: str, actor_name=None, host=None) -> None:
    with ctx.store.write():
        if not _still_mine(rb):
            return
        Rollback.update(state=state, error=error, finished_at=now(), heartbeat_at=None).where(
            Rollback.id == rb.id).execute()
        D.event(rb.to_deployment_id, message, kind="rollback", level=level, actor_name=actor_name, host=host)


def _undo(ctx, rb, svc, serving, target, before, previous_before, stop_target: bool) -> None:
    """Put back what served before the rollback: current, previous, route, and the target's container stopped."""
    current, previous = ctx.paths.current(svc.name), ctx.paths.previous(svc.name)
    try:
        # the route first: a request never follows it to the target once `current` says it no longer serves
        if serving is not None:
            releases.route(ctx, svc, serving.id, ctx.hosts.gateway(serving.host))
        elif before is None:
            releases.unroute(ctx, svc.name)
        if before and ctx.paths.release(before).exists():
            releases.make_current(ctx.paths, svc.name, before)
        elif link_target(current) == target.id:
            current.unlink(missing_ok=True)
        if previous_before and previous_before != link_target(previous) and \
                ctx.paths.release(previous_before).exists():
            releases.set_previous(ctx.paths, svc.name, previous_before)
        if stop_target:
            gw = ctx.hosts.gateway(target.host)
            info = _container(gw, container_name(svc.name, target.id), ctx.store_id, target.id)
            if info is not None and info.running:
                gw.stop(info)
    except Exception as e:  # restoring is best effort; the event says what is left to fix
        D.event(serving.id if serving else target.id, f"Restoring {svc.name} after rollback {rb.id}: {e}",
                kind="rollback", level="error")


# ---- recovery of a rollback whose process is gone (reconcile)
def owner_gone(rb: Rollback, zombie_after: float, at: float | None = None) -> str | None:
    """Why an active rollback's owner is gone (the same proofs as a zombie deployment), or None while it lives."""
    at = now() if at is None else at
    if rb.state != "active":
        return None
    if rb.heartbeat_at is None:
        return "no heartbeat ever"
    if at - rb.heartbeat_at > zombie_after:
        return f"no heartbeat for {at - rb.heartbeat_at:.0f} s"
    if pid_gone(rb.owner_machine, rb.owner_pid):
        return f"owner pid {rb.owner_pid} is gone on {rb.owner_machine}"
    return None


def orphaned(zombie_after: float) -> list[dict]:
    """Active rollbacks whose owner is gone (one query, and one per rollback found)."""
    t = now()
    out = []
    for rb in (Rollback.select(Rollback, Service.name).join(Service)
               .where(Rollback.state == "active").order_by(Rollback.id)):
        why = owner_gone(rb, zombie_after, t)
        if why:
            out.append({"rollback_id": rb.id, "service": rb.service.name, "from": rb.from_deployment_id,
                        "deployment_id": rb.to_deployment_id, "host": rb.to_deployment.host, "owner": rb.owner,
                        "reason": why,
                        "action": "finish if the target answers its health check, else undo"})
    return out


def recover(ctx, pipeline, rollback_id: int) -> str:
    """Finish or undo a rollback whose owner is gone. The pass first takes the row over (compare-and-set on its
    owner), so two passes never both act; a pass that dies half-way leaves a row the next pass takes over again."""
    settings = ctx.settings
    with ctx.store.write():
        rb = Rollback.get_or_none(Rollback.id == rollback_id)
        if rb is None or owner_gone(rb, float(settings.scheduler.zombie_after)) is None:
            return "no longer orphaned"
        why = owner_gone(rb, float(settings.scheduler.zombie_after))
        mine = new_owner()
        if Rollback.update(**mine).where((Rollback.id == rb.id) & (Rollback.state == "active") &
                                         (Rollback.owner == rb.owner)).execute() != 1:
            return "taken over elsewhere"
    rb = Rollback.get_by_id(rollback_id)
    svc, target, serving = rb.service, rb.to_deployment, rb.from_deployment
    beat = Heartbeat(ctx.store, rb.id, rb.owner, float(settings.pipeline.heartbeat_interval)).start()
    try:
        gw = ctx.hosts.gateway(target.host)
        name = container_name(svc.name, target.id)
        healthy, detail = _answers(ctx, gw, name, target.id, svc)
        gone = f"its process is gone ({why})"
        if healthy:
            releases.route(ctx, svc, target.id, gw)
            if releases.current(ctx.paths, svc.name) != target.id:
                releases.make_current(ctx.paths, svc.name, target.id)
            if serving is not None and releases.previous(ctx.paths, svc.name) != serving.id and \
                    ctx.paths.release(serving.id).exists():
                releases.set_previous(ctx.paths, svc.name, serving.id)
            _complete(ctx, pipeline, rb, svc, serving, target, detail, None,
                      message=f"Reconcile: rollback of {svc.name} to {target.id} finished: {gone}, and "
                              f"{target.id} answers its health check ({detail})")
            return "finished"
        # undone: what served before comes back; the target keeps its stopped container as a rollback target
        before = serving.id if serving is not None else None
        _undo(ctx, rb, svc, serving, target, before, target.id, stop_target=True)
        _end(ctx, rb, "failed", error=f"interrupted: {gone}; undone by reconcile", level="warning",
             host=target.host, message=f"Reconcile: rollback of {svc.name} to {target.id} undone: {gone}, and "
                                       f"{target.id} does not answer its health check ({detail}); {svc.name} keeps "
                                       f"{before or 'nothing'} serving")
        return "undone"
    finally:
        beat.close()


def _answers(ctx, gw, name: str, deployment_id: str, svc: Service) -> tuple[bool, str]:
    """One look (no waiting): does the target's container run and answer its health check?"""
    try:
        info = _container(gw, name, ctx.store_id, deployment_id)
    except RollbackFailed as e:
        return False, str(e)
    if info is None:
        return False, f"container {name} is gone"
    if not info.running:
        return False, f"container {name} is {info.state}"
    details = gw.inspect(info.id) or {}
    health = ((details.get("State") or {}).get("Health") or {}).get("Status")
    if health == "healthy":
        return True, "container reports healthy"
    if health is not None:
        return False, f"container reports {health}"
    ok, last = gw.http_check(info, svc.port, svc.health_path)
    return (True, f"HTTP {svc.health_path} answered 2xx/3xx") if ok else (False, last)
