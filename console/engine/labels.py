"""What counts as ours. One place decides it: the labels we put on everything we create, and the filters that find
exactly those things (Docker's label filter with `key=value` is an exact match, so `abc` never matches `abc-1`).

`deployer.store` carries the id of the store that created the resource, so two stores on one engine (two installs,
or the test suite's many temporary stores) never touch each other's resources.
"""
import re

MANAGED = "deployer.managed"
STORE = "deployer.store"
DEPLOYMENT = "deployer.deployment_id"
SERVICE = "deployer.service"
PROJECT = "deployer.project_id"
SCOPE = "deployer.scope"
ROLE = "deployer.role"
PREFIX = "deployer."
# what deployer/base:busybox carries, so every image built FROM it inherits these two (managed is then overridden)
BASE_IMAGE_LABELS = {MANAGED: "false", ROLE: "base"}
DEPLOYMENT_ID_RE = re.compile(r"[0-9a-f]{12}")   # the only deployment ids we create (uuid4 hex, 12 digits)


def deployment_labels(store_id: str, deployment_id: str, service: str, project_id: int) -> dict[str, str]:
    return {MANAGED: "true", STORE: store_id, DEPLOYMENT: deployment_id, SERVICE: service, PROJECT: str(project_id)}


def shared_volume_labels(store_id: str, project_id: int, service: str) -> dict[str, str]:
    """A project volume is shared by every deployment of the project: it carries no deployment id, ever."""
    return {MANAGED: "true", STORE: store_id, PROJECT: str(project_id), SCOPE: "project", SERVICE: service}


def managed_filter(store_id: str, deployment_id: str | None = None) -> dict[str, list[str]]:
    labels = [f"{MANAGED}=true", f"{STORE}={store_id}"]
    if deployment_id is not None:
        labels.append(f"{DEPLOYMENT}={deployment_id}")
    return {"label": labels}


def is_ours(labels: dict | None, store_id: str, deployment_id: str | None = None) -> bool:
    """Re-checks on our side what the filter asked the engine for: belt and braces before anything is removed."""
    labels = labels or {}
    if labels.get(MANAGED) != "true" or labels.get(STORE) != store_id:
        return False
    if labels.get(SCOPE) == "project":
        return False
    dep = labels.get(DEPLOYMENT)
    if dep is not None and not DEPLOYMENT_ID_RE.fullmatch(dep):
        return False  # a look-alike (`<id>-x`, `x<id>`, `<ID>`, a prefix): we only ever write 12 lowercase hex
    return deployment_id is None or dep == deployment_id


BACKUP_HELPER = "backup-helper"


def backup_helper_labels(volume_labels: dict) -> dict[str, str]:
    """The container that reads a deployment's volume for its backup carries that deployment's labels, so a helper
    left by a run that died mid-backup is found (and removed) by cleanup and reconcile, and role=backup-helper, so
    it is never taken for the deployment's own container (no log archived, not counted, not judged)."""
    keep = (MANAGED, STORE, DEPLOYMENT, SERVICE, PROJECT)
    return {k: volume_labels[k] for k in keep if k in volume_labels} | {ROLE: BACKUP_HELPER}


def is_backup_helper(labels: dict | None) -> bool:
    return (labels or {}).get(ROLE) == BACKUP_HELPER


def foreign_reserved(image_labels: dict | None, ours: dict[str, str]) -> list[str]:
    """`key=value` of every `deployer.*` label of a built image that we did not set: a Dockerfile's (or a parent
    image's) own. Image labels become container labels, so one of these could change what is ours (a
    `deployer.scope=project` hides the container from cleanup and reconcile); such an image is refused. The labels
    our base image passes down are ours too."""
    allowed = {**BASE_IMAGE_LABELS, **ours}
    return sorted(f"{k}={v}" for k, v in (image_labels or {}).items()
                  if k.startswith(PREFIX) and allowed.get(k) != v)
