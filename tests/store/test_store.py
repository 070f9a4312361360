"""The store behaves the same on SQLite (`make test`) and PostgreSQL (`make test-pg`): write transactions serialize,
timestamps and JSON round-trip, migrations are idempotent, and the compare-and-sets the engine relies on (lease,
cleanup claim, status moves) have exactly one winner. Tests that only make sense on one backend are marked."""
import json
import os
import stat
import threading
import uuid
from pathlib import Path

import peewee
import pytest

from console.engine import deployments as D
from console.engine.errors import InputError
from storage import migrations
from storage.clock import freeze, now
from storage.db import StoreError, open_store
from storage.models import CleanupTask, Deployment, Meta, Project, Service
from tests.cli import cli_env, run_cli


@pytest.fixture
def store(settings):
    st = open_store(settings.db_url)
    yield st
    freeze(None)
    st.close()


def in_threads(n, fn):
    """Run fn(i) in n threads started together; each thread uses (and then closes) its own connection."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def run(i):
        from storage.models import database
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as e:  # reported by the caller
            errors.append(e)
        finally:
            database.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def make_deployment(status="deploying", service="web"):
    proj, _ = Project.get_or_create(name="default")
    svc = Service.get_or_none(Service.name == service) or Service.create(name=service, project=proj, source="/src")
    return Deployment.create(id=uuid.uuid4().hex[:12], service=svc, status=status, host="local")


def test_backend_is_the_one_the_run_asked_for(store, settings):
    assert store.is_sqlite == (not os.environ.get("DEPLOYER_TEST_DB"))
    assert store.meta("store_id") and store.meta("schema_version") == str(migrations.LATEST)


def test_write_transactions_serialize_read_modify_write(store):
    with store.write():
        Meta.insert(key="counter", value="0").execute()

    def bump(i):
        for _ in range(20):
            with store.write():
                value = int(Meta.get_by_id("counter").value)
                Meta.update(value=str(value + 1)).where(Meta.key == "counter").execute()

    in_threads(8, bump)
    assert Meta.get_by_id("counter").value == str(8 * 20)


def test_a_failed_write_rolls_back_everything(store):
    with pytest.raises(RuntimeError):
        with store.write():
            Meta.insert(key="half", value="1").execute()
            raise RuntimeError("boom")
    assert Meta.get_or_none(Meta.key == "half") is None
    # nested writes (a move inside a phase's transaction) commit together
    with store.write():
        dep = make_deployment()
        D.move(store, dep.id, "failed", error="x")
    assert Deployment.get_by_id(dep.id).status == "failed"
    assert CleanupTask.get(CleanupTask.deployment == dep.id).reason == "failed"


def test_timestamps_and_json_round_trip_exactly(store):
    t = 1796000000.123456
    freeze(t)
    with store.write():
        dep = make_deployment()
        Service.update(env={"KEY": "välue ✓", "N": "1"}, volumes=[{"name": "data", "path": "/data"}]).execute()
    freeze(None)
    got = Deployment.get_by_id(dep.id)
    assert got.created_at == t and isinstance(got.created_at, float)
    t2 = now()
    with store.write():
        Deployment.update(heartbeat_at=t2).where(Deployment.id == dep.id).execute()
    assert Deployment.get_by_id(dep.id).heartbeat_at == t2
    svc = Service.get(Service.name == "web")
    assert svc.env == {"KEY": "välue ✓", "N": "1"} and svc.volumes == [{"name": "data", "path": "/data"}]
    # ordering and range queries on the float column
    assert Deployment.select().where(Deployment.heartbeat_at > t2 - 1).count() == 1


def test_migrations_are_idempotent_and_a_newer_store_is_refused(store, settings):
    assert migrations.migrate(store) == migrations.LATEST
    in_threads(4, lambda i: migrations.migrate(store))
    assert Meta.get_by_id("schema_version").value == str(migrations.LATEST)
    store_id = store.meta("store_id")
    with store.write():
        Meta.update(value=str(migrations.LATEST + 1)).where(Meta.key == "schema_version").execute()
    with pytest.raises(StoreError, match="newer"):
        open_store(settings.db_url)
    from storage.models import database
    database.initialize(store.db)  # the models follow the last store opened; point them back at ours
    with store.write():
        Meta.update(value=str(migrations.LATEST)).where(Meta.key == "schema_version").execute()
    again = open_store(settings.db_url)
    assert again.meta("store_id") == store_id


def test_lease_compare_and_set_has_one_holder_and_expiry_hands_it_over(store, settings):
    from console.engine.lease import LeaseKeeper
    keepers = [LeaseKeeper(store, settings, holder=f"k{i}") for i in range(6)]
    leaders = in_threads(6, lambda i: keepers[i].step())
    assert leaders.count(True) == 1
    winner = keepers[leaders.index(True)]
    assert winner.step() is True                       # renew
    others = [k for k in keepers if k is not winner]
    assert not any(k.step() for k in others)           # not expired: nobody takes it
    freeze(now() + settings.scheduler.lease_duration + 1)         # the holder stopped renewing; its lease expired
    leaders = in_threads(5, lambda i: others[i].step())
    assert leaders.count(True) == 1
    freeze(None)


def test_cleanup_claim_has_exactly_one_winner(store, settings):
    from console.engine.cleanup import Cleaner
    from console.engine.context import Context
    from console.engine.hosts import Hosts
    from console.engine.paths import Paths

    ctx = Context(store, settings, Hosts(settings), Paths(settings.data_dir), store.meta("store_id"))
    with store.write():
        dep = make_deployment()
        D.move(store, dep.id, "cancelled")
    task = CleanupTask.get(CleanupTask.deployment == dep.id)
    cleaner = Cleaner(ctx)
    wins = in_threads(8, lambda i: cleaner.claim(task.id))
    assert wins.count(True) == 1
    assert CleanupTask.get_by_id(task.id).state == "running"


def test_a_runs_claim_of_many_tasks_gives_each_task_to_one_run(store, settings):
    """Cleaner.claim_many (a run claims its due tasks in one write): runs racing for the same tasks split them."""
    from console.engine.cleanup import Cleaner
    from console.engine.paths import Paths

    class Ctx:
        pass
    ctx = Ctx()
    ctx.store, ctx.settings, ctx.paths = store, settings, Paths(settings.data_dir)
    ids = []
    for _ in range(20):
        with store.write():
            dep = make_deployment()
            D.move(store, dep.id, "cancelled")
        ids.append(CleanupTask.get(CleanupTask.deployment == dep.id).id)
    cleaner = Cleaner(ctx)
    claims = in_threads(6, lambda i: cleaner.claim_many(ids))
    assert sorted(i for c in claims for i in c) == sorted(ids)   # every task claimed, none twice
    assert {t.state for t in CleanupTask.select().where(CleanupTask.id.in_(ids))} == {"running"}
    assert cleaner.claim_many(ids) == []                        # running and fresh: nobody takes them again


def test_status_moves_are_a_compare_and_set(store):
    with store.write():
        dep = make_deployment()

    def race(i):
        try:
            D.move(store, dep.id, "cancelled" if i % 2 else "success", expect={"deploying"})
            return True
        except InputError:
            return False

    assert in_threads(6, race).count(True) == 1
    final = Deployment.get_by_id(dep.id).status
    assert final in ("cancelled", "success")
    assert (CleanupTask.select().where(CleanupTask.deployment == dep.id).count() == 1) == (final == "cancelled")
    with pytest.raises(InputError):
        D.move(store, dep.id, "deploying" if final == "cancelled" else "queued")


def test_cleanup_task_states_move_only_as_their_table_allows(store):
    """Issue 12 item 3: cleanup tasks have a legal-moves table like deployments; done and abandoned are final."""
    assert set(D.TASK_MOVES) == {"pending", "running", "done", "kept", "abandoned"}
    assert all(moves <= set(D.TASK_MOVES) for moves in D.TASK_MOVES.values())
    with store.write():
        dep = make_deployment()
        D.move(store, dep.id, "failed", expect={"deploying"})
        task = CleanupTask.get(CleanupTask.deployment == dep.id)
        assert task.state == "pending"
        assert D.move_task("running", CleanupTask.id == task.id) == 1
        assert D.move_task("kept", CleanupTask.id == task.id) == 1
        assert D.move_task("running", CleanupTask.id == task.id) == 0, "a kept task is re-armed (pending) first"
        assert D.move_task("pending", CleanupTask.id == task.id) == 1
        assert D.move_task("abandoned", CleanupTask.id == task.id) == 1
        for state in D.TASK_MOVES:
            assert D.move_task(state, CleanupTask.id == task.id) == 0, f"abandoned -> {state}"
    assert CleanupTask.get_by_id(task.id).state == "abandoned"
    with pytest.raises(ValueError):
        D.move_task("exploded", CleanupTask.id == task.id)


def test_the_cli_works_on_the_configured_store(settings, tmp_path):
    """Every command reaches the same store (SQLite file, or the PostgreSQL URL given by DEPLOYER_DB)."""
    env = cli_env(settings)
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text("FROM deployer/base:busybox\n")

    def run(*args):
        proc = run_cli(args, env)
        assert proc.returncode == 0, (args, proc.stderr)
        return json.loads(proc.stdout) if "--json" in args else proc.stdout

    run("service", "add", "web", "--source", str(src), "--env", "A=1")
    dep = run("deploy", "web", "--detach", "--json")
    assert dep["status"] == "queued"
    assert [r["id"] for r in run("ls", "--json")] == [dep["id"]]
    assert run("cancel", dep["id"], "--json")["status"] == "cancelled"
    shown = run("show", dep["id"], "--json")
    assert shown["cleanup"]["reason"] == "cancelled" and shown["events"]
    assert [s["name"] for s in run("service", "ls", "--json")] == ["web"]
    assert {h["name"] for h in run("host", "ls", "--no-probe", "--json")} == {"local"}


@pytest.mark.sqlite_only
def test_sqlite_file_is_private(settings):
    st = open_store(settings.db_url)
    try:
        path = Path(settings.db_url)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        st.close()


@pytest.mark.postgres_only
def test_postgres_write_takes_the_advisory_lock(store, settings):
    """While one process is inside store.write(), another connection's write waits for it (pg_locks shows it)."""
    import psycopg2
    entered, release = threading.Event(), threading.Event()

    def hold():
        from storage.models import database
        with store.write():
            entered.set()
            release.wait(10)
        database.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    conn = psycopg2.connect(settings.store.db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                        "database = (SELECT oid FROM pg_database WHERE datname = current_database())")
            assert cur.fetchone()[0] == 1
            cur.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg2.errors.LockNotAvailable):
                cur.execute("SELECT pg_advisory_xact_lock(7157)")
            conn.rollback()
    finally:
        release.set()
        holder.join(10)
        conn.close()


@pytest.mark.postgres_only
def test_postgres_store_is_shared_by_consoles_with_their_own_data_dirs(settings, tmp_path):
    """Two consoles (own data dirs) on one PostgreSQL URL: one store id, one truth."""
    from console import config
    from console.engine.core import Engine
    a = Engine(config.load(data_dir=str(tmp_path / "a"), db=settings.store.db))
    b = Engine(config.load(data_dir=str(tmp_path / "b"), db=settings.store.db))
    try:
        assert a.store_id == b.store_id
        src = tmp_path / "src"
        src.mkdir()
        (src / "Dockerfile").write_text("FROM deployer/base:busybox\n")
        a.add_service("web", str(src))
        dep = a.create_deployment("web")
        assert [r["id"] for r in b.deployments()] == [dep.id]
        b.cancel(dep.id)
        assert a.get(dep.id).status == "cancelled"
    finally:
        a.close()
        b.close()


@pytest.mark.postgres_only
def test_postgres_url_errors_are_one_line_and_hide_the_password(settings, tmp_path):
    from urllib.parse import urlparse
    u = urlparse(settings.store.db)
    bad = f"postgresql://{u.username}:wrong-secret@{u.hostname}:{u.port}{u.path}"
    with pytest.raises(StoreError) as e:
        open_store(bad)
    assert "wrong-secret" not in str(e.value) and "\n" not in str(e.value)
    proc = run_cli(["ls"], cli_env(tmp_path / "d", DEPLOYER_DB=bad), timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("error: cannot connect")
    assert "wrong-secret" not in proc.stderr and proc.stderr.count("\n") == 1
    with pytest.raises(StoreError):
        open_store(f"postgresql://{u.username}@127.0.0.1:1/nothing")


def test_unknown_scheme_is_refused(tmp_path):
    with pytest.raises((StoreError, peewee.DatabaseError, RuntimeError)):
        open_store("mysql+nope://u@h/db")


def test_a_version_1_store_gains_the_wait_reason_column_in_place(store, settings):
    """Schema step 2 (one deployment per service: why a queued deployment waits) keeps every row."""
    from tests.oldstore import downgrade_to_v1
    with store.write():
        dep = make_deployment(status="queued")
        downgrade_to_v1(store)
    store.close()
    again = open_store(settings.db_url)
    assert again.meta("schema_version") == str(migrations.LATEST)
    row = Deployment.get_by_id(dep.id)
    assert row.status == "queued" and row.wait_reason is None
    with again.write():
        Deployment.update(wait_reason="waits").where(Deployment.id == dep.id).execute()
    assert Deployment.get_by_id(dep.id).wait_reason == "waits"
    again.close()


def _every_row():
    from storage.models import MODELS
    return {m._meta.table_name: sorted(map(repr, m.select().tuples())) for m in MODELS if m is not Meta}


def test_an_old_store_gains_the_change_counter_and_keeps_every_row(store, settings):
    """Schema step 5 (the change counter a polling console reads first) keeps every row of every table, and from
    then on a write to a watched table moves the counter while a lease renewal does not."""
    from console.engine import deployments as D
    from storage.models import JobRun, Lease
    from tests.oldstore import downgrade_to_v1
    with store.write():
        deps = [make_deployment(status=s, service=f"s{i % 2}") for i, s in enumerate(("queued", "failed", "success"))]
        D.enqueue_cleanup(deps[1].id, "failed")
        D.event(deps[0].id, "queued by the test")
        JobRun.insert(job="reconcile", holder="h", started_at=now(), counts={"orphans": 1}).execute()
        Lease.insert(name="engine", holder="h", expires_at=now() + 15).execute()
    rows = _every_row()
    with store.write():
        downgrade_to_v1(store)
    assert store.meta(migrations.CHANGES_KEY) is None
    store.close()
    again = open_store(settings.db_url)
    assert again.meta("schema_version") == str(migrations.LATEST)
    kept = _every_row()
    # the downgrade dropped the later columns (their values are gone with them); every row is still there
    assert {t: len(r) for t, r in kept.items()} == {t: len(r) for t, r in rows.items()}
    assert [r.id for r in Deployment.select().order_by(Deployment.id)] == sorted(d.id for d in deps)
    before = int(again.meta(migrations.CHANGES_KEY))
    with again.write():
        Lease.update(expires_at=now() + 30).execute()            # a renewal: not a change the console shows
    assert int(again.meta(migrations.CHANGES_KEY)) == before
    with again.write():
        Deployment.update(status="cancelled").where(Deployment.id == deps[0].id).execute()
    assert int(again.meta(migrations.CHANGES_KEY)) > before
    again.close()
