"""Live stats, headless, against the real engine: CPU % computed the way `docker stats` does, only our containers
streamed, a stream closed once nobody watches it."""
import threading

from console.engine import labels as L
from console.engine.stats import cpu_percent, memory_used
from tests.conftest import wait_for


def test_cpu_percent_is_computed_as_docker_stats_does():
    sample = {"cpu_stats": {"cpu_usage": {"total_usage": 3_000_000}, "system_cpu_usage": 20_000_000,
                            "online_cpus": 2},
              "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 10_000_000}}
    assert cpu_percent(sample) == 40.0     # 2e6 / 1e7 * 2 CPUs * 100
    sample["cpu_stats"]["online_cpus"] = 0  # an old engine: the per-CPU list says how many
    sample["cpu_stats"]["cpu_usage"]["percpu_usage"] = [1, 1, 1, 1]
    assert cpu_percent(sample) == 80.0
    assert cpu_percent({"cpu_stats": {}, "precpu_stats": {}}) == 0.0   # the first sample has no previous one


def test_memory_is_usage_without_the_inactive_page_cache():
    assert memory_used({"memory_stats": {"usage": 100, "limit": 1000, "stats": {"inactive_file": 30}}}) == (70, 1000)
    assert memory_used({"memory_stats": {"usage": 100, "limit": 1000,
                                         "stats": {"total_inactive_file": 40}}}) == (60, 1000)
    assert memory_used({}) == (0, 0)


def run_sleeper(client, labels, name):
    return client.containers.run("deployer/base:busybox", ["sleep", "600"], detach=True, name=name, labels=labels)


def test_a_watched_container_of_ours_is_streamed_and_its_stream_ends_when_unwatched(engine, docker_client):
    labels = L.deployment_labels(engine.store_id, "0123456789ab", "svc", 1)
    c = run_sleeper(docker_client, labels, f"deployer-svc-0123456789ab-stats-{engine.store_id[:6]}")
    hub = engine.stats
    key = ("local", c.id[:12])
    hub.watch([key])
    wait_for(lambda: len(hub.series().get(key).cpu) >= 2, what="two samples")
    s = hub.series()[key]
    assert s.mem[-1] > 0 and s.limit > 0 and s.error is None
    assert hub.live() == {key}
    hub.watch([])
    wait_for(lambda: not hub.live(), what="the stream's thread to end")
    assert hub.started == hub.closed == 1


def test_a_container_that_is_not_ours_is_never_streamed(engine, docker_client):
    # same labels but another store's id: a look-alike (or another install's) container
    labels = L.deployment_labels("another-store", "0123456789ab", "svc", 1)
    c = run_sleeper(docker_client, labels, f"deployer-svc-0123456789ab-foreign-{engine.store_id[:6]}")
    try:
        hub = engine.stats
        key = ("local", c.id[:12])
        hub.watch([key])
        wait_for(lambda: hub.started == hub.closed == 1, what="the refused stream to end")
        s = hub.series()[key]
        assert not s.cpu and s.error == "not a running container of ours"
    finally:
        c.remove(force=True)


def test_close_ends_every_stream(engine, docker_client):
    labels = L.deployment_labels(engine.store_id, "0123456789ab", "svc", 1)
    cs = [run_sleeper(docker_client, labels, f"deployer-svc-0123456789ab-close{i}-{engine.store_id[:6]}")
          for i in range(2)]
    hub = engine.stats
    hub.watch([("local", c.id[:12]) for c in cs])
    wait_for(lambda: all(len(s.cpu) for s in hub.series().values()) and len(hub.series()) == 2, what="samples")
    hub.close()
    assert not hub.live()
    assert not [t for t in threading.enumerate() if t.name.startswith("stats-local-")
                and any(t.name.endswith(c.id[:12]) for c in cs)]


def test_stats_stream_refuses_a_handle_whose_ownership_was_not_checked(engine, docker_client):
    from console.engine.docker_gateway import ContainerInfo
    from console.engine.errors import ForeignContainer
    gw = engine.hosts.gateway()
    info = ContainerInfo(id="0" * 64, name="stranger", state="running", status="", image="", created=0)
    try:
        gw.stats_stream(info)
    except ForeignContainer as e:
        assert "ownership was not checked" in str(e)
    else:
        raise AssertionError("a stream was opened on an unchecked handle")

