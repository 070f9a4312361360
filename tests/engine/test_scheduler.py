"""The runtime: the lease (one active runner), the scheduler's jobs and their records, a stop within 5 s (issue 4)."""
import itertools
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from console.engine import deployments as D
from console.engine.lease import LeaseKeeper
from storage.clock import now
from storage.models import Deployment, DeploymentEvent, JobRun, Lease, PhaseRun
from tests.conftest import make_service_dir, wait_for


def _keeper(engine, **timing):
    settings = engine.settings
    for key, value in timing.items():
        setattr(settings.scheduler, key, value)
    return LeaseKeeper(engine.store, settings)


def test_one_holder_at_a_time_and_takeover_only_after_expiry(engine):
    a = _keeper(engine, lease_duration=2.0, lease_renew_deadline=1.2)
    b = LeaseKeeper(engine.store, engine.settings)
    assert a.step() is True
    assert b.step() is False and not b.is_leader
    assert a.step() is True  # renew
    assert Lease.get_by_id("engine").holder == a.holder
    # a stops renewing: it stops counting itself leader at its renew deadline, before the lease expires
    wait_for(lambda: not a.is_leader, timeout=3, interval=0.05, what="a's renew deadline")
    assert Lease.get_by_id("engine").expires_at > now(), "a stopped acting before its lease expired"
    assert b.step() is False
    wait_for(lambda: b.step(), timeout=4, interval=0.1, what="b to take the expired lease")
    assert Lease.get_by_id("engine").holder == b.holder
    assert a.step() is False  # the old holder follows now
    assert DeploymentEvent.select().where(DeploymentEvent.message.contains(f"{b.holder} took over the lease")).exists()


def test_a_dead_holder_on_this_machine_is_replaced_at_once(engine):
    # a real process takes the lease (60 s) and dies without releasing it
    script = ("import sys; from console.config import load; from storage.db import open_store; "
              "from console.engine.lease import LeaseKeeper; s = load(data_dir=sys.argv[1], lease_duration=60.0); "
              "st = open_store(s.db_url); k = LeaseKeeper(st, s); assert k.step(); print(k.holder)")
    out = subprocess.run([sys.executable, "-c", script, str(engine.settings.data_dir)], capture_output=True,
                         text=True, timeout=60, check=True)
    row = Lease.get_by_id("engine")
    assert row.holder == out.stdout.strip() and row.expires_at > now() + 30
    me = _keeper(engine, lease_duration=60.0)
    assert me.step() is True, "the holder's pid is provably gone: no need to wait 60 s"
    assert Lease.get_by_id("engine").holder == me.holder


@pytest.mark.sqlite_only  # holds SQLite's write lock with a sqlite3 connection
def test_a_holder_that_cannot_renew_stops_acting_before_the_lease_expires(engine):
    keeper = _keeper(engine, lease_duration=4.0, lease_renew_deadline=1.5)
    assert keeper.step()
    expires = Lease.get_by_id("engine").expires_at
    # another connection holds the store's write lock: the renew blocks inside the store (busy timeout)
    blocker = sqlite3.connect(str(engine.settings.data_dir / "deployer.db"), timeout=1)
    blocker.execute("BEGIN IMMEDIATE")
    renew = threading.Thread(target=keeper.step)
    try:
        renew.start()
        wait_for(lambda: not keeper.is_leader, timeout=3, interval=0.05, what="the renew deadline")
        assert now() < expires, "it stopped acting while its lease was still valid for everybody else"
    finally:
        blocker.rollback()
        blocker.close()
    renew.join(10)
    assert keeper.is_leader, "once the store answers again, the renew goes through"


def test_runtime_dispatches_queued_deployments_and_records_every_job_run(engine, service_dir):
    engine.add_service("web", str(service_dir))
    runtime = engine.start_runtime()
    wait_for(lambda: runtime.is_leader, timeout=5, what="the lease")
    dep = engine.deploy("web", detach=True)
    wait_for(lambda: Deployment.get_by_id(dep.id).status == "success", timeout=60, what="the dispatched deployment")
    wait_for(lambda: {r.job for r in JobRun.select().where(JobRun.finished_at.is_null(False))} >=
             {"dispatch", "cleanup", "reconcile", "retention"}, timeout=10, what="a run of every job")
    status = engine.status()
    assert status["role"] == "leader" and status["me"] == runtime.holder
    assert status["leader"]["holder"] == runtime.holder and status["leader"]["pid"] > 0
    jobs = {j["name"]: j for j in status["jobs"]}
    assert jobs["reconcile"]["outcome"] == "ok" and jobs["reconcile"]["counts"]["docker_calls"] == 2
    assert status["last_reconcile_at"] and status["next_reconcile_at"] >= status["last_reconcile_at"]
    assert status["hosts"][0]["reachable"] is True and status["cleanup_queue"] == 0
    dispatched = sum((r.counts or {}).get("started", 0) for r in JobRun.select().where(JobRun.job == "dispatch"))
    assert dispatched == 1
    runtime.stop()
    runs = list(JobRun.select().order_by(JobRun.started_at))
    assert runs and all(r.finished_at is not None and r.holder == runtime.holder for r in runs)
    for job in {r.job for r in runs}:  # max_instances=1: no run of a job overlaps another run of the same job
        mine = [r for r in runs if r.job == job]
        assert all(b.started_at >= a.finished_at for a, b in itertools.pairwise(mine)), job


def test_runtime_runs_an_operator_resume_request(engine, tmp_path):
    engine.settings.pipeline.health_timeout = 2
    engine.settings.cleanup.cleanup_delay = 3600  # keep its resources: the operator fixes the config and resumes
    engine.add_service("web", str(make_service_dir(tmp_path / "src")), health_path="/missing")
    dep = engine.deploy("web")
    assert dep.status == "failed" and "UPDATING_ROUTES" in dep.error  # never routed to
    engine.add_service("web", str(tmp_path / "src"), health_path="/", replace=True)
    engine.resume(dep.id, from_phase="HEALTH_CHECK", detach=True)
    assert Deployment.get_by_id(dep.id).resume_from == "HEALTH_CHECK"
    engine.start_runtime()
    wait_for(lambda: Deployment.get_by_id(dep.id).status == "success", timeout=30, what="the resumed deployment")
    done = Deployment.get_by_id(dep.id)
    assert done.attempts == 1 and done.resume_from is None


def test_stop_within_5s_hands_a_running_deployment_over_and_leaves_no_job_half_written(engine, tmp_path):
    engine.add_service("slow", str(make_service_dir(tmp_path / "slow", extra="RUN sleep 30")))
    runtime = engine.start_runtime()
    wait_for(lambda: runtime.is_leader, timeout=5, what="the lease")
    dep = engine.deploy("slow", detach=True)
    wait_for(lambda: DeploymentEvent.select().where((DeploymentEvent.deployment == dep.id) &
                                                    (DeploymentEvent.message.contains("sleep 30"))).exists(),
             timeout=60, what="the build to reach RUN sleep 30")
    t0 = time.monotonic()
    runtime.stop()
    assert time.monotonic() - t0 < 5.0
    assert not runtime.running_ids()
    row = Deployment.get_by_id(dep.id)
    assert row.status == "deploying" and row.heartbeat_at is None and row.owner.startswith("released-by:")
    assert JobRun.select().where(JobRun.finished_at.is_null()).count() == 0
    assert Lease.get_by_id("engine").expires_at <= now()
    # the build cut by the hand-over did not fail: its phase row says so, and the next engine resumes it
    building = PhaseRun.get((PhaseRun.deployment == dep.id) & (PhaseRun.phase == "BUILDING"))
    assert building.outcome == "interrupted", (building.outcome, building.detail)
    D.move(engine.store, dep.id, "cancelled")


def test_retention_prunes_old_job_runs_idle_ones_sooner_and_keeps_the_newest_of_each_job(engine):
    from console.engine.jobruns import prune as prune_job_runs
    t = now()
    with engine.store.write():
        def add(job, age, counts):
            return JobRun.insert(job=job, holder="h", started_at=t - age, finished_at=t - age + 0.1, outcome="ok",
                                 counts=counts).execute()
        old_idle = add("dispatch", 7200, {})
        old_work = add("dispatch", 7200, {"started": 1})
        ancient_work = add("dispatch", 2 * 86400, {"started": 1})
        recent_idle = add("dispatch", 60, {})
        lonely = add("retention", 3 * 86400, {})  # the newest (and only) run of its job stays
    assert prune_job_runs(engine.store) == 2
    left = {r.id for r in JobRun.select()}
    assert left == {old_work, recent_idle, lonely} and not {old_idle, ancient_work} & left


def test_an_idle_leader_adds_no_job_run_rows_and_leaves_the_change_counter_still(engine):
    # dispatch and cleanup run five times a second here and find nothing to do: they used to add a row each run
    # (~7,200 an hour at the default second); now each keeps one row that says its last run
    from console.engine.status import JOBS
    from storage.migrations import CHANGES_KEY
    from storage.models import Meta
    s = engine.settings.scheduler
    s.dispatch_interval = s.cleanup_interval = 0.2
    s.reconcile_interval = 0.5   # a pass that acts on nothing is idle too, whatever Docker calls it made
    s.retention_interval = 3600   # runs once, on taking the lease
    runtime = engine.start_runtime()
    wait_for(lambda: runtime.is_leader, timeout=5, what="the lease")
    wait_for(lambda: {r.job for r in JobRun.select().where(JobRun.finished_at.is_null(False))} >= set(JOBS),
             timeout=30, what="a run of every job")

    def counter():
        return Meta.get(Meta.key == CHANGES_KEY).value
    rows, changes, t0 = JobRun.select().count(), counter(), now()
    seen = {"dispatch": [], "cleanup": [], "reconcile": []}

    def runs_seen() -> bool:
        jobs = {j["name"]: j for j in engine.status()["jobs"]}
        for name, starts in seen.items():
            if jobs[name]["last_run_at"] > t0 and jobs[name]["last_run_at"] not in starts:
                starts.append(jobs[name]["last_run_at"])
                assert jobs[name]["next_run_at"] > jobs[name]["last_run_at"] and jobs[name]["holder"] == runtime.holder
        return all(len(starts) >= (4 if name == "reconcile" else 10) for name, starts in seen.items())
    wait_for(runs_seen, timeout=120, interval=0.05,
             what="ten idle runs of dispatch and of cleanup, four of reconcile, shown by status")
    for starts in seen.values():
        assert starts == sorted(starts), "status shows each job's last run, newer each time"
    assert JobRun.select().count() == rows, "idle runs added job-run rows"
    assert JobRun.select().where(JobRun.job == "dispatch").count() == 1
    assert JobRun.select().where(JobRun.job == "reconcile").count() == 1
    reconcile = next(j for j in engine.status()["jobs"] if j["name"] == "reconcile")
    assert reconcile["counts"]["docker_calls"] >= 1, "an idle pass still says what it looked at"
    assert counter() == changes, "an idle leader moved the change counter: the console never skips a poll"
    runtime.stop()
    assert JobRun.select().where(JobRun.finished_at.is_null()).count() == 0
