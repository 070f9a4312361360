"""What serves a service: its `current` and `previous` links (services/<service>/current -> ../../releases/<id>) and
its route (through the router `[routes] provider` names, see routes.py). Every move of either goes through here:
the pipeline, rollback, reconcile and cancel share one restore rule.

`ctx` is the engine's Context (context.py): `paths`, `router`, `hosts`, `store_id`.
"""
from console.engine import deployments as D
from console.engine.paths import atomic_symlink, link_target
from console.engine.routes import route_for
from storage.models import Deployment, Service


def container_name(service: str, deployment_id: str) -> str:
    return f"deployer-{service}-{deployment_id}"


# ---- links
def current(paths, service: str) -> str | None:
    return link_target(paths.current(service))


def previous(paths, service: str) -> str | None:
    return link_target(paths.previous(service))


def _point(link, deployment_id: str) -> None:
    atomic_symlink(link, f"../../releases/{deployment_id}")


def make_current(paths, service: str, deployment_id: str, previous_id: str | None = None) -> None:
    """`current` -> deployment_id, and `previous` -> previous_id when given (and not the same release)."""
    paths.ensure(paths.service(service))
    if previous_id and previous_id != deployment_id:
        _point(paths.previous(service), previous_id)
    _point(paths.current(service), deployment_id)


def set_previous(paths, service: str, deployment_id: str) -> None:
    paths.ensure(paths.service(service))
    _point(paths.previous(service), deployment_id)


# ---- routes
def route(ctx, svc: Service, deployment_id: str, gw=None, info=None) -> str:
    """Point the service's route at this deployment's container (looked up with its ownership checked: a route never
    leads to a stranger's port). Returns what was done, in words."""
    gw = gw or ctx.hosts.gateway(Deployment.get_by_id(deployment_id).host)
    info = info or gw.find_ours(container_name(svc.name, deployment_id), ctx.store_id, deployment_id)
    return ctx.router.apply(route_for(gw, svc, deployment_id, info))


def unroute(ctx, service: str) -> None:
    ctx.router.remove(service)


# ---- the restore rule
def restore(ctx, dep: Deployment, current_before: str | None = None) -> None:
    """A failed or cancelled deployment must not stay `current` nor routed: point the route and `current` back at
    what was serving before (`current_before` when the caller knows it, else the `previous` link). The route moves
    first, so a request never follows `current` to a release that is not routed."""
    svc = dep.service
    paths = ctx.paths
    if current(paths, svc.name) != dep.id and not _routed_to(ctx, svc.name, dep.id):
        return
    back = current_before if current_before and current_before != dep.id else previous(paths, svc.name)
    if back and back != dep.id and paths.release(back).exists():
        try:
            route(ctx, svc, back)
        except Exception as e:  # noqa: BLE001 - the event says what is left; reconcile re-applies routes
            D.event(dep.id, f"Could not restore the route of {back}: {e}", level="warning")
        _point(paths.current(svc.name), back)
        D.event(dep.id, f"current -> {back} restored", host=dep.host)
    else:
        unroute(ctx, svc.name)
        paths.current(svc.name).unlink(missing_ok=True)


def _routed_to(ctx, service: str, deployment_id: str) -> bool:
    """Whether the live route serves this deployment (the two move one after the other: a process that dies between
    them, or a route moved by hand, can leave the route behind alone)."""
    try:
        return ctx.router.routed([service]).get(service) == deployment_id
    except Exception:  # noqa: BLE001 - an unreachable proxy: nothing to restore there now; reconcile re-applies it
        return False
