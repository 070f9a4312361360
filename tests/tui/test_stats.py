"""Live stats in the console, on real containers of the real engine: streams start for the running containers on
screen and stop when the view changes (another screen, a dialog, a zoom that hides the pane). Waits on conditions
only."""
import pytest

from console.engine import labels as L
from tests.conftest import make_settings, purge_store_resources
from tests.fixtures.seed import link_current, seed
from tests.tui.conftest import SIZE, first_render, run, wait_until

RUNNING = [("d4e5f6a1b2c3", "api"), ("0a1b2c3d4e5f", "web")]   # showcase deployments that serve


@pytest.fixture
def live_console(tmp_path, docker_client, base_image):
    """A console over a seeded store whose two serving deployments have a real running container each (our labels),
    plus a stopped one of a superseded deployment (never streamed: it does not run)."""
    from console.engine.core import Engine
    from console.tui.app import DeployerConsole
    engine = Engine(make_settings(tmp_path / "data"))
    seed(engine.store)
    link_current(engine.paths)
    ids = {}
    for dep_id, service in RUNNING + [("1b2c3d4e5f0a", "web")]:
        c = docker_client.containers.run(base_image, ["sleep", "600"], detach=True,
                                         name=f"deployer-{service}-{dep_id}-{engine.store_id[:8]}",
                                         labels=L.deployment_labels(engine.store_id, dep_id, service, 1))
        ids[dep_id] = c.id[:12]
        if dep_id == "1b2c3d4e5f0a":
            c.stop(timeout=0)
    yield engine, ids, lambda: DeployerConsole(engine, host_runtime=False, prewarm=False)
    engine.close()
    purge_store_resources(docker_client, engine.store_id)


async def streaming_all_containers(pilot, hub, running: set):
    """Open the all-containers view and wait until each running container has its stream."""
    await first_render(pilot)
    main = pilot.app.main
    await wait_until(pilot, lambda: len(main.containers) == 3, what="the three containers")
    await pilot.press("a")
    await wait_until(pilot, lambda: hub.live() == running, what="a stream per running container")


def running_keys(ids: dict) -> set:
    return {("local", ids[d]) for d, _ in RUNNING}


def test_streams_start_for_visible_running_containers_and_stop_when_the_view_changes(live_console):
    engine, ids, make = live_console
    hub, running = engine.stats, running_keys(ids)

    async def go():
        app = make()
        async with app.run_test(size=SIZE) as pilot:
            await streaming_all_containers(pilot, hub, running)
            table = app.main.query_one("#containers")
            await wait_until(pilot, lambda: all(table._cells[i][3].endswith("%") for _, i in running),
                             what="CPU % in the pane")
            assert table._cells[ids["1b2c3d4e5f0a"]][3:6] == ("", "", ())   # the stopped one: no stats
            assert "cpu" not in table.hidden

            await pilot.press("question_mark")          # help: another view, nothing is shown live
            await wait_until(pilot, lambda: type(app.screen).__name__ == "HelpScreen", what="help")
            await wait_until(pilot, lambda: not hub.live(), what="every stream to stop")
            assert hub.started == hub.closed

            await pilot.press("escape")                 # back: they start again
            await wait_until(pilot, lambda: hub.live() == running, what="the streams again")

            await pilot.press("l")                      # the logs screen of the selected container
            await wait_until(pilot, lambda: type(app.screen).__name__ == "LogsScreen", what="logs")
            await wait_until(pilot, lambda: not hub.live(), what="every stream to stop in the logs view")
    run(go())


def test_a_zoom_that_hides_the_containers_pane_stops_its_streams(live_console):
    engine, ids, make = live_console
    hub = engine.stats

    async def go():
        app = make()
        async with app.run_test(size=SIZE) as pilot:
            await streaming_all_containers(pilot, hub, running_keys(ids))
            app.main.query_one("#deployments").focus()
            await pilot.press("z")                      # the deployments pane fills the screen
            await wait_until(pilot, lambda: app.main.maximized is not None, what="the zoom")
            await wait_until(pilot, lambda: not hub.live(), what="the hidden pane's streams to stop")
    run(go())


def test_details_follow_the_deployment_s_running_container_only(live_console):
    engine, ids, make = live_console

    async def go():
        app = make()
        async with app.run_test(size=(80, 24)) as pilot:
            await first_render(pilot)
            hub = engine.stats
            table = app.main.query_one("#deployments")
            table.move_cursor(row=table.get_row_index("d4e5f6a1b2c3"))
            await pilot.press("d")
            await wait_until(pilot, lambda: getattr(app.screen, "loaded", False), what="the details")
            line = app.screen.query_one("#detail-stats")
            await wait_until(pilot, lambda: hub.live() == {("local", ids["d4e5f6a1b2c3"])}, what="its stream")
            await wait_until(pilot, lambda: line.display and line.query_one("#stats-mem-spark").data,
                             what="the stats line")
            await pilot.press("escape")                 # back to the main screen at 80 columns: the CPU column
            await wait_until(pilot, lambda: app.screen is app.main, what="the main screen")
            await wait_until(pilot, lambda: not hub.live(), what="the stream to stop (column out of view)")
    run(go())


def test_stats_off_in_the_config_opens_no_stream_and_shows_no_stats_column(live_console):
    engine, ids, make = live_console
    engine.settings.console.stats = False           # [console] stats = false

    async def go():
        app = make()
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await wait_until(pilot, lambda: len(app.main.containers) == 3, what="the three containers")
            await pilot.press("a")
            table = app.main.query_one("#containers")
            await wait_until(pilot, lambda: table.row_count == 3, what="the rows")
            assert "cpu" in table.hidden and not app.stats_feed.on
            assert "stats" not in engine.__dict__     # the hub was never made: nothing streamed
    run(go())
