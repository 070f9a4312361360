"""Docker's event streams of our containers (engine/container_watch.py): the mark a face watches moves when one of
ours dies, stops or goes behind our back, not for another store's container; a host whose engine is down is retried
and watched again once it answers. Real engines, real containers, real kills."""
import docker
import pytest

from console.engine import labels as L
from console.engine.container_watch import ContainerWatch
from console.engine.pipeline import container_name
from tests.conftest import wait_for


def test_the_mark_moves_when_one_of_ours_dies_behind_our_back_and_not_for_anothers(engine, running_web,
                                                                                   docker_client, base_image):
    first = engine.container_changes()
    wait_for(lambda: "local" in engine._container_watch._streams, what="the local event stream to open")
    # another store's container, labelled like ours but with its own store id: not ours, no move
    foreign = docker_client.containers.run(base_image, ["sleep", "60"], detach=True,
                                           labels={L.MANAGED: "true", L.STORE: "0123456789ab"})
    try:
        foreign.kill()
        ours = docker_client.containers.get(container_name("web", running_web.id))
        assert engine.container_changes() == first
        ours.kill()                                      # behind the engine's back: `docker kill`
        wait_for(lambda: engine.container_changes() > first, timeout=30, what="the kill of ours to move the mark")
    finally:
        foreign.remove(force=True)


@pytest.mark.slow
def test_a_host_whose_engine_is_down_is_watched_again_once_it_answers(engine, h2, docker_client, base_image):
    watch = ContainerWatch(engine.hosts.gateway, engine.store_id, read_s=2.0, retry_s=0.5)
    try:
        h2.stop()
        watch.watch(["h2"])
        wait_for(lambda: "h2" in watch.errors, timeout=30, what="the down host's stream to fail and say why")
        h2.start()
        wait_for(lambda: "h2" in watch._streams, timeout=60, what="the stream to open again")
        client = docker.DockerClient(base_url=h2.URL, timeout=60)
        try:
            before = watch.mark()
            c = client.containers.run(base_image, ["sleep", "60"], detach=True,
                                      labels={L.MANAGED: "true", L.STORE: engine.store_id})
            c.remove(force=True)
            wait_for(lambda: watch.mark() > before, timeout=30, what="h2's events after its restart")
        finally:
            client.close()
    finally:
        watch.close()


def test_close_ends_an_idle_stream_at_once(engine):
    """An event stream with nothing to say blocks its thread in a read; close() must not wait for that read (the
    console's exit, every test's teardown): the stream's socket is shut down and its thread ends."""
    import threading
    engine.container_changes()
    wait_for(lambda: "local" in engine._container_watch._streams, what="the local event stream to open")
    engine._container_watch.close()
    wait_for(lambda: not any(t.name == "events-local" and t.is_alive() for t in threading.enumerate()), timeout=10,
             what="the stream's thread to end after close()")
