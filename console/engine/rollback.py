"""Rollback, for real: a Rollback row records it while it runs, so cleanup skips every deployment it involves.

Rolling a service back points `current` at the previous successful release, starts and routes its container,
health-checks it, then makes it the service's success (the one it replaces becomes superseded and is stopped). A
failed rollback is recorded and reported, and the service keeps whatever was serving: current, route and container
of the deployment it started from are put back.
"""
from console.engine import deployments as D
from console.engine.errors import DeployerError, InputError
from console.engine.paths import atomic_symlink, link_target
from console.engine.pipeline import container_name, wait_healthy
from storage.clock import now
from storage.models import Deployment, Rollback, Service


class RollbackFailed(DeployerError):
    pass


def pick_target(svc: Service, to: str | None, paths) -> tuple[Deployment | None, Deployment]:
    serving = (Deployment.select().where((Deployment.service == svc.id) &
                                         (Deployment.status.in_(["success", "degraded"])))
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


def rollback(engine, service_name: str, to: str | None = None, actor_name: str | None = None) -> Rollback:
    svc = engine.service(service_name)
    serving, target = pick_target(svc, to, engine.paths)
    with engine.store.write():
        if Rollback.select().where((Rollback.service == svc.id) & (Rollback.state == "active")).exists():
            raise InputError(f"a rollback of {svc.name} is already in progress")
        rb = Rollback.create(service=svc, from_deployment=serving, to_deployment=target, actor=actor_name)
        D.event(target.id, f"Rollback of {svc.name} from {serving.id if serving else '-'} to {target.id} started "
                           f"by {actor_name}", kind="rollback", actor_name=actor_name, host=target.host)
    current = engine.paths.current(svc.name)
    before = link_target(current)
    gw = engine.hosts.gateway(target.host)
    name = container_name(svc.name, target.id)
    started_here, info = False, None
    try:
        info = gw.find_ours(name, engine.store_id, target.id)
        if info is None:
            raise RollbackFailed(f"the container {name} of {target.id} is gone; deploy again instead")
        engine.paths.ensure(engine.paths.service(svc.name))
        atomic_symlink(current, f"../../releases/{target.id}")
        if before and before != target.id:
            atomic_symlink(engine.paths.previous(svc.name), f"../../releases/{before}")
        if not info.running:
            gw.start(info)
            started_here = True
        engine.pipeline.write_route(svc, target.id, gw)
        detail = wait_healthy(gw, info, svc.port, svc.health_path, engine.settings.health_timeout)
    except Exception as e:  # any failure: record it, put back what was serving
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        _restore(engine, svc, serving, before, gw, info if started_here else None)
        with engine.store.write():
            Rollback.update(state="failed", error=reason, finished_at=now()).where(Rollback.id == rb.id).execute()
            D.event(target.id, f"Rollback of {svc.name} to {target.id} failed: {reason}; "
                               f"{svc.name} keeps {serving.id if serving else 'nothing'} serving",
                    kind="rollback", level="error", actor_name=actor_name, host=target.host)
        raise RollbackFailed(f"rollback of {svc.name} to {target.id} failed: {reason}") from e
    with engine.store.write():
        D.move(engine.store, target.id, "success", message=f"Deployment {target.id} serving again after rollback "
                                                         f"({detail})", actor_name=actor_name)
        if serving is not None:
            D.move(engine.store, serving.id, "superseded", actor_name=actor_name,
                   message=f"Deployment {serving.id} superseded by rollback to {target.id}")
        Rollback.update(state="completed", finished_at=now()).where(Rollback.id == rb.id).execute()
        D.event(target.id, f"Rollback of {svc.name} to {target.id} completed", kind="rollback",
                actor_name=actor_name, host=target.host)
    if serving is not None:
        engine.pipeline.stop_service_container(svc, serving.id, serving.host)
    return Rollback.get_by_id(rb.id)


def _restore(engine, svc, serving, before, gw, started):
    current = engine.paths.current(svc.name)
    try:
        if before:
            atomic_symlink(current, f"../../releases/{before}")
        if serving is not None:
            engine.pipeline.write_route(svc, serving.id, engine.hosts.gateway(serving.host))
        if started is not None:
            gw.stop(started)
    except Exception as e:  # restoring is best effort; the event says what is left to fix
        D.event(serving.id if serving else None, f"Restoring {svc.name} after a failed rollback: {e}",
                kind="rollback", level="error")
