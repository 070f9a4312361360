"""Several `deployer-console engine` processes on one store: exactly one runs the jobs (counted from the job-run
records); SIGKILL of the holder → another takes over within the lease time; SIGTERM stops an engine within 5 s with
no job run half-written and hands its running deployment to the next engine, which resumes it (issue 4)."""
import signal
import time

from storage.clock import now
from storage.models import Deployment, JobRun, Lease
from tests.conftest import wait_for
from tests.reliability import fast_env, spawn, stop_all, wait_for_fault_pause

JOBS = {"dispatch", "cleanup", "reconcile"}


def _holders_since(t: float) -> set[str]:
    return {r.holder for r in JobRun.select(JobRun.holder).where(JobRun.started_at >= t)}


def _leader_pid() -> int | None:
    row = Lease.get_or_none(Lease.name == "engine")
    return row.holder_pid if row is not None and row.expires_at and row.expires_at > now() else None


def _sigterm(proc) -> float:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    return time.monotonic() - t0


def test_three_engines_one_runs_jobs_and_a_follower_takes_over_after_sigkill(engine, tmp_path):
    env = fast_env(engine.settings)
    procs = [spawn(["engine"], env, tmp_path / f"engine{i}.log") for i in range(3)]
    try:
        by_pid = {p.pid: p for p in procs}
        wait_for(lambda: _leader_pid() in by_pid, timeout=20, what="an engine to take the lease")
        time.sleep(2.0)  # every engine is up and retrying the lease by now
        window = now()
        # idle runs of a job share one row (engine/jobruns.py): a run of each job, not a number of rows
        wait_for(lambda: {r.job for r in JobRun.select(JobRun.job).where(JobRun.started_at >= window)} >= JOBS,
                 timeout=10, what="a run of each job")
        holders = _holders_since(window)
        assert len(holders) == 1, f"more than one engine ran jobs: {holders}"
        holder = holders.pop()
        first = by_pid[_leader_pid()]
        assert holder.split(":")[1] == str(first.pid)
        assert all(p.poll() is None for p in procs), "the followers keep running"

        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = now()
        wait_for(lambda: _leader_pid() in by_pid and _leader_pid() != first.pid, timeout=15,
                 what="a follower to take over")
        wait_for(lambda: _holders_since(killed_at) - {holder}, timeout=15, what="the new leader's job runs")
        took = min(r.started_at for r in JobRun.select().where((JobRun.started_at >= killed_at) &
                                                               (JobRun.holder != holder))) - killed_at
        assert took < 15.0
        window = now()
        time.sleep(2.0)
        assert len(_holders_since(window)) == 1, "after the takeover, still exactly one engine runs jobs"
        for p in procs:
            if p.poll() is None:
                assert _sigterm(p) < 5.0 and p.returncode == 0
        assert JobRun.select().where(JobRun.finished_at.is_null(False) & (JobRun.holder != holder)).count() > 0
        unfinished = JobRun.select().where(JobRun.finished_at.is_null() & (JobRun.holder != holder)).count()
        assert unfinished == 0, "SIGTERM left a job run half-written"
    finally:
        stop_all(procs)


def test_sigterm_stops_an_engine_within_5s_and_the_next_one_resumes_its_deployment(engine, service_dir, tmp_path):
    engine.add_service("web", str(service_dir))
    # engine A pauses every pipeline it runs in HEALTH_CHECK; engine B does not
    a = spawn(["engine"], fast_env(engine.settings, fault="HEALTH_CHECK:60"), tmp_path / "engine-a.log")
    procs = [a]
    try:
        wait_for(lambda: _leader_pid() == a.pid, timeout=20, what="engine A to take the lease")
        b = spawn(["engine"], fast_env(engine.settings), tmp_path / "engine-b.log")
        procs.append(b)
        dep = engine.deploy("web", detach=True)
        assert wait_for_fault_pause("HEALTH_CHECK").id == dep.id
        assert Deployment.get_by_id(dep.id).owner_pid == a.pid
        elapsed = _sigterm(a)
        assert elapsed < 5.0 and a.returncode == 0, f"SIGTERM took {elapsed:.1f} s, exit {a.returncode}"
        a_holder = JobRun.select().where(JobRun.holder.contains(f":{a.pid}:")).first().holder
        assert JobRun.select().where((JobRun.holder == a_holder) & JobRun.finished_at.is_null()).count() == 0
        wait_for(lambda: Deployment.get_by_id(dep.id).status == "success", timeout=40,
                 what="engine B to resume the handed-over deployment")
        row = Deployment.get_by_id(dep.id)
        assert row.owner_pid == b.pid and row.attempts == 1
        assert _sigterm(b) < 5.0 and b.returncode == 0
    finally:
        stop_all(procs)
