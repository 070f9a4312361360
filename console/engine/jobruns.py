"""Job runs: one JobRun row per run of a scheduled job (scheduler.py) or of a manual `reconcile`, written when it
starts and when it ends, so `status` shows each job's last run; retention prunes the old ones.

Runs that find nothing to do (dispatch and cleanup of an idle leader every second, a reconcile that acts on nothing
every 15 s) share one row: while a job's
newest row is an idle run of this holder, the next run reopens it and, if idle too, ends in it; a run that does
something or fails gets a row of its own. So an idle leader adds no rows (it used to add ~7,400 an hour), and `status`
still reads each job's last run from its newest row. Job-run writes do not bump the store's change counter
(storage/migrations.py), so an idle leader leaves it still and a polling console skips its re-read."""
from storage.clock import now
from storage.models import JobRun

JOBRUN_KEEP_S = 86400.0      # job-run records older than a day are pruned by retention (the newest per job stays)
IDLE_KEEP_S = 3600.0         # a row of idle runs (nothing done, counts {}) is pruned an hour after its last run


# counts that say what a run looked at, not what it did: a reconcile pass that acted on nothing is idle whatever
# Docker calls it made, deployments it saw in their grace period or hosts it found down (those are events of their own)
OBSERVATIONS = frozenset({"docker_calls", "in_grace", "hosts_down"})


def idle(outcome: str | None, counts: dict | None, error: str | None) -> bool:
    return outcome == "ok" and error is None and not any(v for k, v in (counts or {}).items() if k not in OBSERVATIONS)


def is_idle(run) -> bool:
    """A run that found nothing to do: consecutive ones of a holder share one row (retention keeps one without even
    observations, counts {}, only IDLE_KEEP_S)."""
    return idle(run.outcome, run.counts, run.error)


def open_run(store, job: str, holder: str, started: float | None = None,
             share_idle: bool = False) -> tuple[int, tuple[float, float] | None]:
    """The run's row, written as it starts: with share_idle, the job's idle row when its newest row is one of this
    holder's (reopened in place), else a new row. Returns its id, and a reopened row's (started_at, finished_at) to
    put back if this run does something."""
    started = now() if started is None else started
    with store.write():
        if share_idle:
            last = JobRun.select().where(JobRun.job == job).order_by(JobRun.id.desc()).first()
            if last is not None and is_idle(last) and last.holder == holder and last.finished_at is not None:
                JobRun.update(started_at=started, finished_at=None, outcome=None).where(JobRun.id == last.id).execute()
                return last.id, (last.started_at, last.finished_at)
        return JobRun.insert(job=job, holder=holder, started_at=started, counts={}).execute(), None


def close_run(store, run_id: int, outcome: str, counts: dict, error: str | None,
              reopened: tuple[float, float] | None = None, job: str = "", holder: str = "",
              started: float | None = None) -> None:
    """The run's end: outcome (ok, skipped, error), what it did, and why it failed. An idle run ends in its row (a
    reopened idle row now says this run's start and end); a run that did something or failed on a reopened idle row
    gets a row of its own (job, holder, started) and the idle row its last idle run back."""
    with store.write():
        if reopened is None or idle(outcome, counts, error):
            JobRun.update(finished_at=now(), outcome=outcome, counts=counts, error=error).where(
                JobRun.id == run_id).execute()
            return
        JobRun.update(started_at=reopened[0], finished_at=reopened[1], outcome="ok").where(
            JobRun.id == run_id).execute()
        JobRun.insert(job=job, holder=holder, started_at=started, finished_at=now(), outcome=outcome,
                      counts=counts, error=error).execute()


def prune(store, keep_s: float = JOBRUN_KEEP_S, idle_keep_s: float = IDLE_KEEP_S) -> int:
    """Delete the finished runs older than keep_s (idle ones older than idle_keep_s), keeping each job's newest."""
    from peewee import fn
    newest = JobRun.select(fn.MAX(JobRun.id)).group_by(JobRun.job)
    t = now()
    with store.write():
        return JobRun.delete().where(
            JobRun.finished_at.is_null(False) & JobRun.id.not_in(newest) & (
                (JobRun.started_at < t - keep_s) |
                ((JobRun.started_at < t - idle_keep_s) & (JobRun.outcome == "ok") & (JobRun.counts == {})))
        ).execute()
