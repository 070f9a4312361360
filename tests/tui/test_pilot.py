"""The console driven by keys against the real engine and a real Docker engine (Textual Pilot)."""
import threading

import pytest
from textual import events

from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.tui.app import DeployerConsole
from storage.clock import now
from storage.models import Deployment, Rollback
from tests.conftest import make_service_dir, wait_for
from tests.tui.conftest import SIZE, first_render, run, wait_for_workers, wait_until


def screen_name(app) -> str:
    return type(app.screen).__name__


async def select(pilot, deployment_id: str):
    table = pilot.app.main.query_one("#deployments")
    await wait_until(pilot, lambda: deployment_id in getattr(table, "rows_by_id", {}), what=f"row {deployment_id}")
    table.move_cursor(row=table.get_row_index(deployment_id))
    await wait_until(pilot, lambda: table.selected_key() == deployment_id and cursor_in_view(table),
                     what=f"the cursor on {deployment_id}, in view")
    assert table.selected()["id"] == deployment_id


def cursor_in_view(table) -> bool:
    """The cursor's row is inside the table's viewport (move_cursor scrolls to it after a refresh)."""
    top = table.scroll_y
    return top <= table.cursor_row < top + table.scrollable_content_region.height - table.header_height


def test_c_y_on_a_deploying_deployment_cancels_it_and_its_containers_go(engine, tmp_path, docker_client):
    engine.settings.pipeline.health_timeout = 120          # it waits with a running container that never answers
    src = make_service_dir(tmp_path / "hang")      # httpd answers 404 on /never: UPDATING_ROUTES keeps waiting
    engine.add_service("hang", str(src), health_path="/never")
    dep = engine.create_deployment("hang")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("status", engine.pipeline.run(dep.id)), daemon=True)
    worker.start()
    # the route moves only to a container that answers, so this one waits in UPDATING_ROUTES, started
    wait_for(lambda: Deployment.get_by_id(dep.id).phase == "UPDATING_ROUTES" and docker_client.api.containers(
        filters={"label": f"{L.DEPLOYMENT}={dep.id}"}), timeout=90, what="the pipeline to start its container")

    async def scenario():
        app = DeployerConsole(engine, host_runtime=False)
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await select(pilot, dep.id)
            await pilot.press("c")
            await wait_until(pilot, lambda: screen_name(app) == "ConfirmScreen", what="the confirmation")
            await pilot.press("y")
            await wait_until(pilot, lambda: Deployment.get_by_id(dep.id).status == "cancelled", what="cancelled")
            table = app.main.query_one("#deployments")
            await wait_until(pilot, lambda: table.rows_by_id[dep.id]["status"] == "cancelled", what="row updated")
    run(scenario())
    worker.join(15)
    assert result["status"] == "cancelled"
    Cleaner(engine.ctx).run_due()
    assert docker_client.api.containers(all=True, filters={"label": f"{L.DEPLOYMENT}={dep.id}"}) == []


def test_r_with_building_chosen_on_a_failed_deployment_brings_it_to_success(engine, tmp_path):
    engine.settings.cleanup.cleanup_delay = 600           # the failed release stays while the operator fixes it
    src = make_service_dir(tmp_path / "fix", extra="RUN test -f /www/fixed")
    engine.add_service("fix", str(src))
    dep = engine.deploy("fix")
    assert dep.status == "failed" and dep.phase == "BUILDING"
    # the operator fixes the release's source, then resumes from BUILDING
    source = engine.paths.release(dep.id) / "source" / "Dockerfile"
    source.write_text(source.read_text().replace("RUN test -f /www/fixed", "RUN touch /www/fixed"))

    async def scenario():
        app = DeployerConsole(engine, host_runtime=True)   # the console hosts the engine that runs the resume
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await select(pilot, dep.id)
            await pilot.press("r")
            await wait_until(pilot, lambda: screen_name(app) == "ResumeScreen", what="the phase picker")
            phases = app.screen.query_one("#phases")
            assert phases.get_option_at_index(phases.highlighted).id == "BUILDING"   # the recorded phase
            await pilot.press("enter")
            try:
                await wait_until(pilot, lambda: Deployment.get_by_id(dep.id).status == "success", timeout=120,
                                 what="the resumed deployment to succeed")
            except AssertionError:
                print([e["message"] for e in engine.events(deployment_id=dep.id) if e["kind"] != "build"])
                raise
    run(scenario())
    assert Deployment.get_by_id(dep.id).attempts == 1


def test_b_y_rolls_the_service_back_to_the_release_its_confirmation_names(engine, service_dir):
    engine.add_service("web", str(service_dir))
    first = engine.deploy("web")
    second = engine.deploy("web")
    assert (first.status, second.status) == ("success", "success")

    async def scenario():
        app = DeployerConsole(engine, host_runtime=False)
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            # a filter that leaves the target out of the table: the confirmation still names it (the engine's pick)
            await pilot.press("slash", *second.id, "enter")
            table = app.main.query_one("#deployments")
            await wait_until(pilot, lambda: set(table.rows_by_id) == {second.id}, what="the filtered table")
            await select(pilot, second.id)
            await pilot.press("b")
            await wait_until(pilot, lambda: screen_name(app) == "ConfirmScreen", what="the confirmation")
            assert f"roll back to: {first.id}" in str(app.screen.body)
            await pilot.press("y")
            await wait_until(pilot, lambda: Deployment.get_by_id(first.id).status == "success", timeout=90,
                             what="the rollback")
    run(scenario())
    assert Deployment.get_by_id(second.id).status == "superseded"
    assert Rollback.get(Rollback.to_deployment == first.id).state == "completed"


def test_read_only_hides_cancel_resume_and_rollback_and_the_palette_refuses_them(seeded):
    app = seeded(read_only=True)
    before = {d.id: d.status for d in Deployment.select()}

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            offered = {b.binding.action for b in app.main.active_bindings.values()}
            assert not offered & {"cancel", "resume", "rollback"}, "the footer offers no refused action"
            for dep_id, key in (("a1b2c3d4e5f6", "c"), ("c3d4e5f6a1b2", "r"), ("d4e5f6a1b2c3", "b")):
                await select(pilot, dep_id)
                await pilot.press(key)             # the key is not bound in read-only: nothing is started
                assert not [w for w in app.workers if w.group == "action"]
                await pilot.pause()                # whatever it posted is processed
                assert screen_name(app) == "MainScreen"
            for action in ("cancel", "resume", "rollback"):
                app._palette(action)               # refused at once, said on the notice line
                await wait_until(pilot, lambda: any(f"{action} refused" in m for _, m in app.notices),
                                 what=f"the {action} refusal")
                assert screen_name(app) == "MainScreen"
            messages = [m for _, m in app.notices]
            for action in ("cancel", "resume", "rollback"):
                assert sum(f"read-only mode: {action} refused" in m for m in messages) == 1, messages
            assert not app._notifications, "notices use the notice line, not toasts"
            assert "READ-ONLY" in str(app.main.query_one("#status").render())
    run(scenario())
    assert {d.id: d.status for d in Deployment.select()} == before


def test_cursor_and_viewport_stay_on_the_same_deployment_while_rows_update(seeded):
    app = seeded(extra=300)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            table = app.main.query_one("#deployments")
            target = "900000000064"                       # far down: the table is scrolled
            await select(pilot, target)           # waits for the cursor row to be scrolled into view
            row, scroll = table.cursor_row, table.scroll_y
            assert scroll > 0
            polls = app.main.polls
            from storage.models import Service
            web = Service.get(Service.name == "web")
            with app.engine.store.write():
                for i in range(3):                        # three new deployments arrive on top
                    Deployment.create(id=f"ff000000000{i}", service=web, status="queued", host="local",
                                      created_at=now() + i)
                Deployment.update(status="failed").where(Deployment.id == "900000000063").execute()
                Deployment.delete().where(Deployment.id == "900000000000").execute()   # one above it goes
            await wait_until(pilot, lambda: app.main.polls >= polls + 2 and "ff0000000002" in table.rows_by_id,
                             what="the new rows")
            # the viewport follows the cursor after the refresh that drew the new rows (KeyedTable._settle)
            await wait_until(pilot, lambda: table.scroll_y == scroll + 2,
                             what=lambda: f"scroll_y {scroll} + 2, it is {table.scroll_y}")
            assert table.selected()["id"] == target
            assert table.cursor_row == row + 2            # +3 new above, -1 removed above
            assert table.scroll_y == scroll + 2           # the same rows stay on screen
            assert table.rows_by_id["900000000063"]["status"] == "failed"
    run(scenario())


def pane_title(app) -> str:
    return str(app.main.query_one("#deployments-pane").border_title)


def test_filter_as_you_type_matches_substrings_says_n_of_total_and_escape_clears(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            table = app.main.query_one("#deployments")
            # keys typed right after `/` arrive together (as from a terminal): none is dropped or taken as a command
            for key, char in (("slash", "/"), ("e", "e"), ("b", "b")):
                app.post_message(events.Key(key, char))
            await wait_until(pilot, lambda: app.main.query_one("#prompt").value == "eb", what="the typed text")
            web = {"a1b2c3d4e5f6", "c3d4e5f6a1b2", "0a1b2c3d4e5f", "1b2c3d4e5f0a", "5f0a1b2c3d4e"}
            await wait_until(pilot, lambda: set(table.rows_by_id) == web, what="the rows of web (a substring)")
            assert pane_title(app).startswith("Deployments 5 of 12")
            await pilot.press("backspace", "backspace", *"timed out")          # words of an error message
            await wait_until(pilot, lambda: set(table.rows_by_id) == {"c3d4e5f6a1b2"}, what="the error match")
            await pilot.press("ctrl+u", *"zzz")
            await wait_until(pilot, lambda: table.row_count == 0, what="no match")
            assert pane_title(app).startswith("Deployments 0 of 12")
            await pilot.press("ctrl+u", *"status:failed", "enter")            # enter keeps the filter
            await wait_until(pilot, lambda: set(table.rows_by_id) == {"c3d4e5f6a1b2", "3d4e5f0a1b2c"},
                             what="only failed rows")
            assert app.main.focused is table
            await pilot.press("escape")                                        # escape clears it
            await wait_until(pilot, lambda: len(table.rows_by_id) == 12, what="all rows again")
            assert pane_title(app) == "Deployments 12"
            await pilot.press("s")
            await wait_until(pilot, lambda: table.selected_key() is not None and
                             table.coordinate_to_cell_key((0, 0)).row_key.value == "a1b2c3d4e5f6",
                             what="status sort: deploying first")
    run(scenario())


def test_a_key_typed_right_after_enter_in_the_filter_acts_on_the_table(seeded):
    """Enter and the next key arrive together, as from a terminal: the prompt is closed before that key is read, so
    `s` sorts instead of landing in the filter (it read `/webs` in tmux)."""
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            table = app.main.query_one("#deployments")
            for key, char in (("slash", "/"), ("w", "w"), ("e", "e"), ("b", "b"), ("enter", "\r"), ("s", "s")):
                app.post_message(events.Key(key, char))
            prompt = app.main.query_one("#prompt")
            await wait_until(pilot, lambda: app.main.sort != "newest",
                             what=lambda: f"the sort key to reach the table (prompt {prompt.value!r}, focus "
                                          f"{app.main.focused}, sort {app.main.sort})")
            assert app.main.filter.text() == "web" and app.main.focused is table
            assert not app.main.query_one("#prompt").display
    run(scenario())


def test_a_resumed_deployment_stays_in_view_under_status_failed_while_it_runs(seeded):
    app = seeded()
    dep_id = "c3d4e5f6a1b2"

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            table = app.main.query_one("#deployments")
            await pilot.press("slash", *"status:failed", "enter")
            await wait_until(pilot, lambda: set(table.rows_by_id) == {dep_id, "3d4e5f0a1b2c"}, what="failed rows")
            await select(pilot, dep_id)
            await pilot.press("r")
            await wait_until(pilot, lambda: screen_name(app) == "ResumeScreen", what="the phase picker")
            await pilot.press("enter")
            await wait_until(pilot, lambda: Deployment.get_by_id(dep_id).resume_from == "HEALTH_CHECK",
                             what="the resume request")
            with app.engine.store.write():       # the leader picks it up
                Deployment.update(status="deploying").where(Deployment.id == dep_id).execute()
            polls = app.main.polls
            await wait_until(pilot, lambda: app.main.polls >= polls + 2, what="two polls")
            assert table.rows_by_id[dep_id]["status"] == "deploying", "it stays in view while it runs"
            with app.engine.store.write():       # it finished: the filter decides again
                Deployment.update(status="success").where(Deployment.id == dep_id).execute()
            await wait_until(pilot, lambda: dep_id not in table.rows_by_id, what="the finished one to go")
    run(scenario())


def test_event_log_follows_pauses_on_scroll_up_keeps_receiving_and_follows_again_after_resize(seeded):
    app = seeded()

    def add_events(n: int, tag: str) -> None:
        from console.engine import deployments as D
        with app.engine.store.write():
            for i in range(n):
                D.event("c3d4e5f6a1b2", f"{tag} event {i} with a message long enough to wrap at eighty columns "
                                        f"of terminal width", level="error" if i % 5 == 0 else "info")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            log = app.main.query_one("#events")
            add_events(40, "first")
            await wait_until(pilot, lambda: "first event 39" in log.buffer[-1]["message"], what="the events")
            await wait_until(pilot, lambda: log.max_scroll_y > 0 and log.is_vertical_scroll_end, what="the tail")
            assert log.following and "following" in str(log.border_title)
            log.focus()
            await pilot.press("up", "up")
            assert not log.following
            assert "paused — End to follow" in str(log.border_title)
            y = log.scroll_y
            add_events(5, "second")
            await wait_until(pilot, lambda: "second event 4" in log.buffer[-1]["message"], what="events while paused")
            polls = app.main.polls
            await wait_until(pilot, lambda: app.main.polls > polls, what="the next render")
            assert log.scroll_y == y, "paused: the view stays where the operator put it"
            await pilot.press("end")
            assert log.following and "following" in str(log.border_title)
            await pilot.resize_terminal(80, 24)
            await wait_until(pilot, lambda: log.size.width < 60, what="the resize")
            add_events(5, "third")
            await wait_until(pilot, lambda: "third event 4" in log.buffer[-1]["message"], what="events after resize")
            await wait_until(pilot, lambda: "third event 4" in "".join(s.text for s in log.lines[-4:]),
                             what="the new events written")
            await wait_until(pilot, lambda: log.is_vertical_scroll_end, what="the tail in view after the resize")
            assert log.following
    run(scenario())


def test_z_zooms_the_focused_pane_and_restores_it(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await first_render(pilot)
            await pilot.press("z")
            assert app.main.maximized is app.main.query_one("#deployments-pane")
            await pilot.press("z")
            assert app.main.maximized is None
            app.main.query_one("#events").focus()
            await pilot.press("z")
            assert app.main.maximized is app.main.query_one("#events")
            await pilot.press("escape")
            assert app.main.maximized is None
    run(scenario())


def test_j_k_g_G_home_end_and_n_move_between_rows_and_colon_opens_views(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await first_render(pilot)
            table = app.main.query_one("#deployments")
            await pilot.press("j", "j", "k")
            assert table.cursor_row == 1
            await pilot.press("G")
            assert table.cursor_row == 11
            await pilot.press("g")
            assert table.cursor_row == 0
            await pilot.press("end")
            assert table.cursor_row == 11 and table.scroll_x == 0
            await pilot.press("home")
            assert table.cursor_row == 0
            await pilot.press("s", "G", "n")     # status sort: the newest is not the first row; n finds it
            await wait_until(pilot, lambda: table.coordinate_to_cell_key((0, 0)).row_key.value == "a1b2c3d4e5f6",
                             what="status sort")
            await pilot.press("G", "n")
            assert table.selected()["id"] == "b2c3d4e5f6a1"
            # 80 columns: ID through CLEANUP fit (one host: no HOST column)
            labels = [str(c.label) for c in table.columns.values()]
            assert labels == ["ID", "SERVICE", "STATUS", "PHASE", "AGE", "DURATION", "CLEANUP"]
            width = sum(c.get_render_width(table) for c in table.columns.values())
            assert width <= table.scrollable_content_region.width, "no sideways scrolling at 80 columns"
            await pilot.press("colon", *"ev", "enter")
            assert app.main.focused is app.main.query_one("#events")
            await pilot.press("colon", *"hosts", "enter")
            await wait_until(pilot, lambda: screen_name(app) == "HostsScreen", what="the hosts view")
            assert "local" in str(app.screen.hosts[0]["name"])
    run(scenario())


def test_a_key_collision_in_the_config_is_reported_and_both_actions_keep_a_key(seeded):
    app = seeded(keys={"cancel": "s", "details": "D"})

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await wait_until(pilot, lambda: app.notices, what="the start notice")
            assert 'cancel = "s" collides with sort' in app.notices[0][1]
            table = app.main.query_one("#deployments")
            await pilot.press("s")
            await wait_until(pilot, lambda: app.main.sort == "status", what="s still sorts")
            await select(pilot, "a1b2c3d4e5f6")
            await pilot.press("c")
            await wait_until(pilot, lambda: screen_name(app) == "ConfirmScreen", what="c still cancels")
            await pilot.press("n")
            await pilot.press("D")                                          # a rebinding that fits is applied
            await wait_until(pilot, lambda: screen_name(app) == "DetailsScreen", what="details on D")
            assert table.selected()["id"] == "a1b2c3d4e5f6"
    run(scenario())


def test_palette_lists_each_action_once_with_its_key(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            titles = [c.title for c in app.get_system_commands(app.main)]
            assert "Cancel  (c)" in titles and "Filter  (/)" in titles and "Help  (?)" in titles
            assert not [t for t in titles if t.count(":") > 1 or "Details: Details" in t]
    run(scenario())


def test_b_on_a_service_with_nothing_to_roll_back_to_says_why_and_asks_nothing(engine, service_dir):
    from console.engine import deployments as D
    engine.add_service("web", str(service_dir))
    failed = engine.create_deployment("web")
    D.move(engine.store, failed.id, "failed", error="BUILDING: boom")

    async def scenario():
        app = DeployerConsole(engine, host_runtime=False)
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await select(pilot, failed.id)
            await pilot.press("b")
            await wait_until(pilot, lambda: any("no previous successful release" in m for _, m in app.notices),
                             what="the engine's refusal")
            await wait_for_workers(pilot, "action")      # the worker that asked the engine is done
            assert screen_name(app) == "MainScreen", "no confirmation for a rollback the engine refuses"
    run(scenario())
    assert not Rollback.select().exists()


def test_the_current_mark_on_a_deploying_release_keeps_its_status_whole_at_80_and_160_columns(seeded):
    import os
    app = seeded()
    link = app.engine.paths.current("web")            # CREATING_SYMLINKS done: current points at the deploying one
    link.unlink()
    os.symlink(str(app.engine.paths.release("a1b2c3d4e5f6")), link)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await first_render(pilot)
            table = app.main.query_one("#deployments")
            for size in ((80, 24), SIZE):
                await pilot.resize_terminal(*size)
                await wait_until(pilot, lambda: table.short == (size[0] < 120), what=f"the layout at {size}")
                await wait_until(pilot, lambda: "a1b2c3d4e5f6" in table.rows_by_id, what="the deploying row")
                cell = table.get_cell("a1b2c3d4e5f6", "status")
                assert cell.plain == "●deploying", "the mark's space goes, not the status's last letter"
                width = table.columns["status"].get_render_width(table) - 2 * table.cell_padding
                assert len(cell.plain) <= width
                assert table.get_cell("d4e5f6a1b2c3", "status").plain.startswith("● "), "a status that fits keeps it"
    run(scenario())


@pytest.mark.sqlite_only   # a PostgreSQL store has no file mode to tighten
def test_a_store_file_whose_mode_was_tightened_is_said_on_the_notice_line(engine):
    """The engine tightens a store file that group or others could read (storage/sqlite_file.py); the console's
    screen is where its operator looks, so the warning is said there (and logged), not printed under the TUI."""
    import os

    from console.engine.core import Engine
    os.chmod(engine.settings.data_dir / "deployer.db", 0o644)
    opened = Engine(engine.settings)
    try:
        assert opened.warnings and "tightened to 0600" in opened.warnings[0]
        app = DeployerConsole(opened, host_runtime=False)

        async def scenario():
            async with app.run_test(size=SIZE) as pilot:
                await first_render(pilot)
                await wait_until(pilot, lambda: app.notices, what="the start notice")
                assert "tightened to 0600" in app.notices[0][1] and app.notices[0][0] == "warning"
        run(scenario())
    finally:
        opened.close()


def test_a_container_killed_behind_our_back_shows_exited_without_waiting_for_the_periodic_read(
        engine, running_web, docker_client, monkeypatch):
    """Docker's event stream makes the containers pane read again at once: with the periodic read pushed out to an
    hour, only the event of the kill can bring the pane its new state."""
    from console.engine.pipeline import container_name
    from console.tui import data
    monkeypatch.setattr(data, "CONTAINERS_EVERY_S", 3600.0)
    app = DeployerConsole(engine, host_runtime=False)
    name = container_name("web", running_web.id)

    def state(table):
        return next((r["state"] for r in table.rows_by_id.values() if r["name"] == name), None)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            table = app.main.query_one("#containers")
            await wait_until(pilot, lambda: state(table) == "running", what="the running container in the pane")
            await wait_until(pilot, lambda: "local" in engine._container_watch._streams, what="the event stream")
            docker_client.containers.get(name).kill()
            await wait_until(pilot, lambda: state(table) == "exited", what="the kill to show in the pane")
    run(scenario())
