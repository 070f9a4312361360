"""The runtime embedded in every process that hosts the engine (the console, `deployer-console engine`): the lease and
an APScheduler BackgroundScheduler whose jobs only the lease holder runs.

Jobs (each `max_instances=1`, `coalesce=True`: a run never overlaps itself, missed runs collapse into one):
- dispatch  (`dispatch_interval`)   queued deployments and operator resume requests → a bounded pipeline pool
                                    (`workers` threads);
- cleanup   (`cleanup_interval`)    due cleanup tasks (`Cleaner.run_due`);
- reconcile (`reconcile_interval`)  one observe → diff → act pass (reconcile.py), also at once on taking the lease;
- retention (`retention_interval`)  keep-last-N re-arming, archive pruning, old job-run records.
Every run is a JobRun row (job, holder, start, end, outcome, counts), written when it starts and when it ends
(jobruns.py, which a manual `reconcile` uses too); idle runs of a job share one row, so an idle leader adds none.

Followers keep the scheduler paused and only retry the lease; a holder past its renew deadline pauses it again and
every job re-checks `may_act()` before each step, so a holder that lost its lease stops acting before anyone else
may start (see lease.py).

Stopping (SIGTERM, console exit) takes under 5 s: no new runs; the pipelines this runtime runs are handed over
(their owner is released, their heartbeat cleared and a resume request for their recorded phase written, so their
own RunControl stops them within 0.2 s and the next leader's dispatcher resumes them at once); in-flight job runs
get until the deadline and any still open are closed as `interrupted`, cleanup tasks they had claimed go back to
`pending`; then the lease is released.

The store going away (a PostgreSQL restart: `StoreUnavailable`) ends what was writing at that moment without
deciding anything: a pipeline stops where it is (its deployment stays `deploying`, not failed), a job run ends as an
error. At the first lease attempt the store answers again, this runtime repairs what the outage cut: its stopped
pipelines get a resume request for their recorded phase (the dispatcher resumes them at once), cleanup tasks claimed
by a cut cleanup run go back to `pending`, and job runs left open are closed as `interrupted`.
"""
import contextlib
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler

from console.config import listen_address
from console.engine import deployments as D
from console.engine import jobruns, notify, reconcile
from console.engine.cleanup import Cleaner
from console.engine.errors import InputError, one_line
from console.engine.lease import LeaseKeeper
from console.engine.liveness import is_stuck
from console.engine.metrics import MetricsServer
from console.engine.pipeline import ServiceBusy
from console.engine.status import JOBS
from console.engine.validate import PHASES
from storage.clock import now
from storage.db import BUSY_TIMEOUT_S, StoreUnavailable
from storage.models import CleanupTask, Deployment, JobRun

log = logging.getLogger(__name__)
STOP_BUDGET_S = 4.5          # Engine.close() must return within 5 s
DISPATCH_GRACE_S = 1.0       # a foreground `deploy` claims its own row within milliseconds; never race it
QUEUED_LOOKAHEAD = 50       # queued deployments a dispatch looks past the ones waiting for their service
CLEANUP_BATCH = 50           # tasks per cleanup run, so one run stays short and a stop finds it between batches


class Runtime:
    """Given the Context and the pipeline it runs deployments with (never the Engine)."""

    def __init__(self, ctx, pipeline, run_jobs: bool = True):
        self.ctx = ctx
        self.store = ctx.store
        self.pipeline = pipeline
        self.settings = ctx.settings
        self.run_jobs = run_jobs
        self.lease = LeaseKeeper(ctx.store, ctx.settings)
        self.holder = self.lease.holder
        self._stop = threading.Event()
        self._stopped = False
        self._lease_thread: threading.Thread | None = None
        self._was_leader = False
        self._role_lock = threading.Lock()
        self.workers = max(1, int(self.settings.scheduler.workers))
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pipeline")
        self._running: dict[str, Future] = {}
        self._running_lock = threading.Lock()
        self._in_flight: dict[str, tuple[int, float]] = {}   # job -> (JobRun id, started_at)
        self._jobs_cv = threading.Condition()
        self._cut: list[tuple] = []   # what a store outage cut: (kind, job or deployment id, started, cut at)
        self._cut_lock = threading.Lock()
        if logging.getLogger("apscheduler").level == logging.NOTSET:
            # "skipped: maximum number of running instances reached" is the no-overlap rule working, not news
            logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self.scheduler = BackgroundScheduler(
            executors={"default": JobExecutor(len(JOBS) + 1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC)
        s = self.settings.scheduler
        self.intervals = {"dispatch": float(s.dispatch_interval), "cleanup": float(s.cleanup_interval),
                          "reconcile": float(s.reconcile_interval), "retention": float(s.retention_interval)}
        self._functions = {"dispatch": self.dispatch, "cleanup": self.cleanup, "reconcile": self.reconcile,
                           "retention": self.retention}
        # every runtime serves its own view (deployer_leader says whether it is the lease holder) and sends its own
        # notifications; both run in threads of their own, off the jobs' path
        self.metrics = MetricsServer(ctx.store, lambda: self.is_leader, ctx.hosts.reachability)
        self.notifier = notify.Notifier(ctx.store, self.settings)

    # ---- lifecycle
    def start(self) -> "Runtime":
        for name in JOBS:
            self.scheduler.add_job(self._job, "interval", seconds=self.intervals[name], args=(name,), id=name,
                                   name=name)
        self.scheduler.start(paused=True)
        self.metrics.start(listen_address(self.settings.metrics.listen))
        notify.install(self.notifier.start())
        if self.run_jobs:
            self._elect()  # the first attempt right away, so status is right from the start
            self._lease_thread = threading.Thread(target=self._lease_loop, name="lease", daemon=True)
            self._lease_thread.start()
        return self

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def is_leader(self) -> bool:
        return self.run_jobs and not self._stop.is_set() and self.lease.is_leader

    def may_act(self) -> bool:
        return self.is_leader

    def running_ids(self) -> set[str]:
        with self._running_lock:
            return {k for k, f in self._running.items() if not f.done()}

    def stop(self, budget: float = STOP_BUDGET_S) -> None:
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + budget
        self._stop.set()
        try:
            self.scheduler.shutdown(wait=False)
        except SchedulerNotRunningError:
            pass
        metrics_closing = self.metrics.stop()
        with short_busy_timeout(self.store, deadline):
            self._stop_with_budget(deadline)
        notify.uninstall(self.notifier)
        self.notifier.stop(max(0.0, min(0.5, deadline - time.monotonic())))
        if metrics_closing is not None:
            metrics_closing.join(max(0.0, deadline - time.monotonic()))
        log.info("runtime %s stopped in %.2f s", self.holder, budget - (deadline - time.monotonic()))

    def _stop_with_budget(self, deadline: float) -> None:
        self._hand_off()
        # in-flight jobs and pipelines get what is left of the budget (keep 0.7 s for the closing writes)
        with self._jobs_cv:
            while self._in_flight and time.monotonic() < deadline - 0.7:
                self._jobs_cv.wait(0.05)
        while self.running_ids() and time.monotonic() < deadline - 0.7:
            time.sleep(0.05)
        self._close_open_runs()
        if self._lease_thread is not None:
            self._lease_thread.join(max(0.0, min(0.3, deadline - time.monotonic())))
        if self.run_jobs:
            self.lease.release()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- the lease
    def _lease_loop(self) -> None:
        while not self._stop.wait(float(self.settings.scheduler.lease_retry)):
            self._elect()

    def _elect(self) -> None:
        leader = self.lease.step()
        if self.lease.last_error is None and self._cut:
            self._repair_cut()
        with self._role_lock:
            if self._stop.is_set():
                return
            if leader and not self._was_leader:
                self._was_leader = True
                log.info("lease taken by %s: leader, running jobs", self.holder)
                at = datetime.now(UTC)
                for name in JOBS:  # reconcile (and the rest) at once on taking the lease
                    self.scheduler.modify_job(name, next_run_time=at)
                self.scheduler.resume()
            elif not leader and self._was_leader:
                self._was_leader = False
                log.warning("lease lost by %s: jobs paused (%s)", self.holder,
                            self.lease.last_error or "another holder")
                self.scheduler.pause()

    # ---- job runs
    def _job(self, name: str) -> None:
        if not self.may_act():
            return
        started = now()
        try:
            run_id, reopened = jobruns.open_run(self.store, name, self.holder, started, share_idle=True)
        except Exception as e:  # noqa: BLE001 - the store is not writable now: nothing was started, nothing to record
            log.warning("job %s not started: %s", name, e)
            return
        with self._jobs_cv:
            self._in_flight[name] = (run_id, started)
        outcome, counts, error = "ok", {}, None
        try:
            counts = self._functions[name]() or {}
            if counts.pop("_skipped", False):
                outcome = "skipped"
            if counts.get("errors"):
                outcome, error = "error", counts.pop("_error", None)
            counts.pop("_error", None)
            if not any(counts.values()):
                counts = {}  # an idle run: nothing to say, and retention prunes idle records sooner
        except StoreUnavailable as e:  # the store went away mid-run: repaired when it answers (_repair_cut)
            log.warning("job %s cut: %s", name, e)
            outcome, error = "error", one_line(e)
            self._note_cut(name, started)
        except Exception as e:  # recorded on the run; the next run tries again
            log.exception("job %s failed", name)
            outcome, error = "error", one_line(e)
        finally:
            try:
                jobruns.close_run(self.store, run_id, outcome, counts, error, reopened, name, self.holder, started)
            except StoreUnavailable as e:
                log.warning("job %s: could not record its end: %s", name, e)
                self._note_cut(name, started)
            except Exception:
                log.exception("job %s: could not record its end", name)
            with self._jobs_cv:
                self._in_flight.pop(name, None)
                self._jobs_cv.notify_all()
        # one line per run that did something (idle runs, every second, only at debug)
        log.log(logging.WARNING if outcome == "error" else logging.INFO if counts or outcome != "ok" else logging.DEBUG,
                "job %s %s in %.2f s: %s%s", name, outcome, now() - started,
                " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing to do",
                f" ({error})" if error else "")

    def _note_cut(self, name: str, started: float) -> None:
        with self._cut_lock:
            self._cut.append(("job", name, started, now()))

    def _repair_cut(self) -> None:
        """The store answers again after an outage: resume the pipelines it stopped, put back the cleanup tasks a
        cut run had claimed, close the job runs it left open. A repair that fails is tried at the next attempt."""
        with self._cut_lock:
            cut, self._cut = self._cut, []
        busy = self.running_ids()
        try:
            with self.store.write():
                for kind, what, started, at in cut:
                    if kind == "pipeline" and what not in busy:
                        dep = Deployment.get_or_none(Deployment.id == what)
                        if dep is None or dep.status != "deploying" or dep.owner_pid != os.getpid():
                            continue
                        self._release(dep, f"Engine {self.holder}: the store was unreachable and stopped the "
                                           f"pipeline of {dep.id}")
                    elif kind == "job" and what == "cleanup":
                        # claimed by the cut run (a later run claims with a later time); removal is idempotent
                        D.move_task("pending", (CleanupTask.state == "running") & (CleanupTask.updated_at >= started) &
                                    (CleanupTask.updated_at <= at), updated_at=now())
                with self._jobs_cv:
                    open_ids = [run_id for run_id, _ in self._in_flight.values()]
                JobRun.update(finished_at=now(), outcome="interrupted", error="the store was unreachable").where(
                    (JobRun.holder == self.holder) & JobRun.finished_at.is_null() & JobRun.id.not_in(open_ids or [0])
                ).execute()
            log.info("store answers again: repaired what the outage cut (%d item(s))", len(cut))
        except Exception as e:  # noqa: BLE001 - still unreachable: the next lease attempt repairs
            log.warning("repairing after the store outage: %s", one_line(e))
            with self._cut_lock:
                self._cut = cut + self._cut

    def _close_open_runs(self) -> None:
        """No job run of this holder stays half-written: what did not end in time is closed as interrupted."""
        try:
            with self.store.write():
                JobRun.update(finished_at=now(), outcome="interrupted",
                              error="the engine stopped before the run ended").where(
                    (JobRun.holder == self.holder) & JobRun.finished_at.is_null()).execute()
                cleanup = self._in_flight.get("cleanup")
                if cleanup is not None and self.lease.is_leader:
                    # tasks claimed by the unfinished cleanup run go back to the queue at once instead of waiting
                    # for the stale-claim timeout; removal is idempotent if that run still finishes one
                    D.move_task("pending", (CleanupTask.state == "running") & (CleanupTask.updated_at >= cleanup[1]),
                                updated_at=now())
        except Exception:
            log.exception("closing open job runs of %s", self.holder)

    # ---- pipelines
    def start_pipeline(self, deployment_id: str, from_phase: str | None = None, resume: bool = False,
                       verify=None, note: str | None = None) -> bool:
        """Claim a deployment (in one write, after `verify(row)` still holds) and run it in the worker pool."""
        if not self.may_act():
            return False
        with self._running_lock:
            busy = {k for k, f in self._running.items() if not f.done()}
            if deployment_id in busy or len(busy) >= self.workers:
                return False
        try:
            with self.store.write():
                if verify is not None:
                    row = Deployment.get_or_none(Deployment.id == deployment_id)
                    if row is None or not verify(row):
                        return False
                try:
                    dep, phase = self.pipeline.claim(deployment_id, from_phase, None, resume)
                except ServiceBusy as e:  # inside the write, which then commits the wait reason it recorded
                    log.info("not starting %s: %s", deployment_id, e)
                    return False
                if note:
                    D.event(dep.id, f"Engine {self.holder} resumes {dep.id} from {phase} ({note})",
                            kind="reconcile", level="warning", host=dep.host)
        except InputError as e:  # it moved meanwhile (cancelled, claimed by a foreground deploy): not ours
            log.info("not starting %s: %s", deployment_id, e)
            return False
        with self._running_lock:
            self._running[dep.id] = self._pool.submit(self._run_pipeline, dep, phase)
        return True

    def _run_pipeline(self, dep, phase) -> str | None:
        try:
            status = self.pipeline.run_claimed(dep, phase)
            error = Deployment.select(Deployment.error).where(Deployment.id == dep.id).scalar()
            log.log(logging.WARNING if status == "failed" else logging.INFO, "deployment %s (run from %s): %s%s",
                    dep.id, phase, status, f": {error}" if error and status == "failed" else "")
            return status
        except StoreUnavailable as e:  # stopped where it was, still `deploying`: resumed once the store answers
            log.warning("deployment %s: pipeline stopped, %s; it resumes once the store answers", dep.id, e)
            with self._cut_lock:
                self._cut.append(("pipeline", dep.id, 0.0, now()))
            return None
        except Exception:
            log.exception("pipeline of %s", dep.id)
            return None

    def _hand_off(self) -> None:
        """Release the deployments this runtime is running so their pipelines stop and the next leader resumes
        them; they stay `deploying` (same id, same attempt counter) with a resume request for their recorded phase,
        so the next leader's dispatcher resumes them as requested work, not as zombies found by reconciliation."""
        ids = sorted(self.running_ids())
        if not ids:
            return
        try:
            with self.store.write():
                mine = list(Deployment.select(Deployment.id, Deployment.phase).where(
                    Deployment.id.in_(ids) & (Deployment.status == "deploying") &
                    (Deployment.owner_machine == D.MACHINE)))
                for dep in mine:
                    self._release(dep, f"Engine {self.holder} stopping: deployment {dep.id} handed over to the next "
                                       f"engine")
            log.info("handed over %d running deployment(s)", len(mine))
        except Exception:
            log.exception("handing over running deployments")

    def _release(self, dep, why: str) -> None:
        """Let go of a deployment this runtime ran: no owner, no heartbeat, and a resume request for its recorded
        phase (the next dispatcher runs it), with a `reconcile` event saying why. Call inside a write transaction."""
        phase = dep.phase or PHASES[0]
        Deployment.update(owner=f"released-by:{self.holder}", heartbeat_at=None, resume_from=phase,
                          updated_at=now()).where(Deployment.id == dep.id).execute()
        D.event(dep.id, f"{why}; it resumes from {phase}", kind="reconcile", level="warning")

    # ---- the jobs
    def dispatch(self) -> dict:
        counts = {"started": 0, "resumed": 0, "running": len(self.running_ids())}
        free = self.workers - counts["running"]
        if free <= 0:
            return counts
        busy = self.running_ids()
        requests = list(Deployment.select().where(Deployment.resume_from.is_null(False) &
                                                  Deployment.status.in_(D.RESUMABLE))
                        .order_by(Deployment.updated_at).limit(free + len(busy)))
        for dep in requests:
            if dep.id in busy or not self.may_act():
                continue
            if dep.status == "deploying" and not is_stuck(dep, self.settings.scheduler.zombie_after):
                with self.store.write():
                    Deployment.update(resume_from=None).where(Deployment.id == dep.id).execute()
                    D.event(dep.id, f"Resume request of {dep.id} dropped: its pipeline is alive", kind="reconcile")
                continue
            phase = dep.resume_from

            def still_requested(row, phase=phase):
                return row.resume_from == phase and (row.status == "failed" or
                                                     is_stuck(row, self.settings.scheduler.zombie_after))
            if self.start_pipeline(dep.id, from_phase=phase, resume=True, verify=still_requested):
                counts["resumed"] += 1
        free = self.workers - len(self.running_ids())
        if free > 0 and self.may_act():
            # oldest first; one whose service is busy stays queued (with its reason) and the next one is tried
            queued = (Deployment.select(Deployment.id).where(
                (Deployment.status == "queued") & (Deployment.created_at <= now() - DISPATCH_GRACE_S))
                .order_by(Deployment.created_at, Deployment.id).limit(free + QUEUED_LOOKAHEAD))
            for dep in queued:
                if len(self.running_ids()) >= self.workers or not self.may_act():
                    break
                if self.start_pipeline(dep.id, verify=lambda row: row.status == "queued"):
                    counts["started"] += 1
        counts["running"] = len(self.running_ids())
        return counts

    def cleanup(self) -> dict:
        # a stop abandons a volume backup in progress (its part is removed, the task goes back to the queue)
        counts = Cleaner(self.ctx, should_stop=self._stop.is_set).run_due(limit=CLEANUP_BATCH)
        return dict(counts)

    def reconcile(self) -> dict:
        result = reconcile.run(self.ctx, self.pipeline, runtime=self, scheduled=True)
        counts = dict(result["counts"])
        if result["errors"]:
            counts["_error"] = "; ".join(result["errors"])[:500]
        return counts

    def retention(self) -> dict:
        counts = dict(Cleaner(self.ctx).retention())
        counts["job_runs_pruned"] = jobruns.prune(self.store)
        return counts

    # ---- for the status
    def next_run_at(self, job: str) -> float | None:
        if not self.is_leader:
            return None
        try:
            j = self.scheduler.get_job(job)
        except Exception:  # noqa: BLE001 - a scheduler shutting down has no answer
            return None
        return j.next_run_time.timestamp() if j is not None and j.next_run_time else None


@contextlib.contextmanager
def short_busy_timeout(store, deadline: float):
    """While stopping, this thread's SQLite writes wait for a busy store at most a second each, not the usual 30 s:
    a store locked by another process must not hold SIGTERM far past its 5 s."""
    if not store.is_sqlite:
        yield
        return
    ms = max(100, min(1000, int((deadline - time.monotonic() - 0.5) * 1000 / 3)))  # three closing writes
    try:
        store.db.execute_sql(f"PRAGMA busy_timeout = {ms}")
    except Exception:  # noqa: BLE001 - then the usual timeout applies
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            store.db.execute_sql(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
