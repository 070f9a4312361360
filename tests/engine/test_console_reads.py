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
