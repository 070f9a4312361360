"""A deployment's phases and statuses and a cleanup task's states: their legal moves and the sets the code asks
about, named here once. Standard library only (the CLI's quick path reads with them); console/engine/deployments.py
makes the moves."""

# the six phases of a deployment, in order, and every status it can have
PHASES = ["PULLING_SOURCE", "BUILDING", "COPYING_FILES", "CREATING_SYMLINKS", "UPDATING_ROUTES", "HEALTH_CHECK"]
STATUSES = ["queued", "deploying", "success", "failed", "cancelled", "superseded", "degraded"]

LEGAL_MOVES: dict[str, set[str]] = {
    "queued": {"deploying", "cancelled", "failed"},
    "deploying": {"deploying", "success", "failed", "cancelled"},   # deploying -> deploying: a zombie resumed
    "success": {"superseded", "degraded"},
    "degraded": {"success", "superseded", "failed"},
    "failed": {"deploying"},                                           # resume
    "cancelled": set(),
    "superseded": {"success"},                                         # a rollback brings it back
}
# the status sets, named here once
TERMINAL = frozenset({"failed", "cancelled", "superseded"})
ACTIVE = frozenset({"queued", "deploying"})               # holds its service: one deployment at a time
SERVING = frozenset({"success", "degraded"})              # its container is the service's current one
RESUMABLE = frozenset({"failed", "deploying"})            # `resume` may run it again from a phase
CLEANUP_ON = frozenset({"failed", "cancelled"})           # a move here writes the cleanup task (and its leftovers
RUN_ENDS = frozenset({"success", "failed", "cancelled"})  # are orphans for reconcile)
ENDED = TERMINAL | SERVING                                # left the queue and the pipeline
COMPLETED = ENDED - {"cancelled"}                         # ran to an outcome: what run times and failure rates count
# a cleanup task's states and their legal moves, as LEGAL_MOVES is for deployments: done and abandoned are final
TASK_MOVES: dict[str, frozenset[str]] = {
    # re-armed, claimed; done/kept too: a run whose claim was handed back at shutdown may still finish it
    "pending": frozenset({"pending", "running", "done", "kept", "abandoned"}),
    "running": frozenset({"pending", "running", "done", "kept", "abandoned"}),   # retry/wait, stale reclaim, ends
    "kept": frozenset({"pending", "abandoned"}),    # kept for inspection until retention (or a new failure) re-arms it
    "done": frozenset(),
    "abandoned": frozenset(),                       # its host was removed with --force
}
OPEN_TASK = frozenset({"pending", "running", "kept"})   # the deployment may still have something to remove
QUEUED_TASK = frozenset({"pending", "running"})         # the cleanup queue
