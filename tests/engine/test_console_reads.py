"""The engine's reads the console polls: substring match, counts, what serves, hosts summary."""
from tests.fixtures.seed import link_current, seed


def test_deployments_match_each_word_as_a_substring_of_id_service_status_host_or_error(engine):
    seed(engine.store)
    ids = lambda **kw: {r["id"] for r in engine.deployments(**kw)}   # noqa: E731
    assert ids(match=["eb"]) == {"a1b2c3d4e5f6", "c3d4e5f6a1b2", "0a1b2c3d4e5f", "1b2c3d4e5f0a", "5f0a1b2c3d4e"}
    assert ids(match=["Timed", "OUT"]) == {"c3d4e5f6a1b2"}                   # error words, any case
    assert ids(match=["status:fail"]) == {"c3d4e5f6a1b2", "3d4e5f0a1b2c"}    # one field
    assert ids(match=["web", "cancel"]) == {"5f0a1b2c3d4e"}                  # every word must match
    assert ids(match=["zzz"]) == set()
    assert ids(ids=["d4e5f6a1b2c3", "nope"]) == {"d4e5f6a1b2c3"}
    assert engine.deployment_count() == 12
    assert engine.deployment_count(["eb"]) == 5


def test_current_releases_and_hosts_summary(engine):
    seed(engine.store)
    assert engine.current_releases() == {}
    link_current(engine.paths)
    assert engine.current_releases() == {"api": "d4e5f6a1b2c3", "worker": "e5f6a1b2c3d4", "web": "0a1b2c3d4e5f"}
    [local] = engine.hosts_summary()
    assert local["name"] == "local" and local["reachable"] is True and local["last_error"] is None
    assert local["deployments"]["failed"] == 2 and sum(local["deployments"].values()) == 12


def test_a_poll_that_finds_nothing_new_skips_the_read_and_another_process_write_shows_at_the_next(engine):
    """The console's change check: an unchanged store costs no full read; a write by another process (a CLI cancel,
    here through its own sqlite3 connection or its own PostgreSQL connection) is read at the very next poll, and so
    is a `current` link that moved without any store write."""
    from console.tui.data import Filter, Poller
    from storage.db import open_store
    seed(engine.store)
    poller = Poller(engine)
    first = poller.poll(Filter(), "newest", 0, containers=False)
    assert not first.unchanged and len(first.rows) == 12
    poller.poll(Filter(), "newest", 0, containers=False)       # the first status notes the hosts (in the mark)
    idle = poller.poll(Filter(), "newest", 0, containers=False)
    assert idle.unchanged and idle.rows is None
    other = open_store(engine.settings.db_url, migrate=False)
    try:
        # another process's write, as the CLI's cancel makes it: only the status, on its own connection
        other.db.execute_sql(f"UPDATE deployment SET status = 'cancelled' WHERE id = {other.db.param}",
                             ("a1b2c3d4e5f6",))
    finally:
        other.close()
        from storage.models import database
        database.initialize(engine.store.db)   # the models follow the last store opened; point them back
    after = poller.poll(Filter(), "newest", 0, containers=False)
    assert not after.unchanged
    assert {r["id"]: r["status"] for r in after.rows}["a1b2c3d4e5f6"] == "cancelled"
    assert poller.poll(Filter(), "newest", 0, containers=False).unchanged
    link_current(engine.paths)                                   # no store write: the link alone moved
    moved = poller.poll(Filter(), "newest", 0, containers=False)
    assert not moved.unchanged and {r["id"] for r in moved.rows if r["current"]} == {
        "d4e5f6a1b2c3", "e5f6a1b2c3d4", "0a1b2c3d4e5f"}
