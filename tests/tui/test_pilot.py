"""The console driven by keys against the real engine and a real Docker engine (Textual Pilot)."""
import threading

from console.engine import labels as L
from console.engine.cleanup import Cleaner
from console.tui.app import DeployerConsole
from storage.clock import now
from storage.models import Deployment, Rollback
from tests.conftest import make_service_dir, wait_for
from tests.tui.conftest import SIZE, first_render, run, wait_until


def screen_name(app) -> str:
    return type(app.screen).__name__


async def select(pilot, deployment_id: str):
    table = pilot.app.main.query_one("#deployments")
    await wait_until(pilot, lambda: deployment_id in getattr(table, "rows_by_id", {}), what=f"row {deployment_id}")
    table.move_cursor(row=table.get_row_index(deployment_id))
    await pilot.pause(0.05)
    assert table.selected()["id"] == deployment_id


def test_c_y_on_a_deploying_deployment_cancels_it_and_its_containers_go(engine, tmp_path, docker_client):
    engine.settings.health_timeout = 120          # it waits in HEALTH_CHECK with a running container
    src = make_service_dir(tmp_path / "hang")      # httpd answers 404 on /never: the health check keeps waiting
    engine.add_service("hang", str(src), health_path="/never")
    dep = engine.create_deployment("hang")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("status", engine.pipeline.run(dep.id)), daemon=True)
    worker.start()
    wait_for(lambda: Deployment.get_by_id(dep.id).phase == "HEALTH_CHECK", timeout=90,
             what="the pipeline to create its container")
    assert docker_client.api.containers(all=True, filters={"label": f"{L.DEPLOYMENT}={dep.id}"})

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
    Cleaner(engine).run_due()
    assert docker_client.api.containers(all=True, filters={"label": f"{L.DEPLOYMENT}={dep.id}"}) == []


def test_r_with_building_chosen_on_a_failed_deployment_brings_it_to_success(engine, tmp_path):
    engine.settings.cleanup_delay = 600           # the failed release stays while the operator fixes it
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


def test_b_y_rolls_the_service_back(engine, service_dir):
    engine.add_service("web", str(service_dir))
    first = engine.deploy("web")
    second = engine.deploy("web")
    assert (first.status, second.status) == ("success", "success")

    async def scenario():
        app = DeployerConsole(engine, host_runtime=False)
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await select(pilot, second.id)
            await pilot.press("b")
            await wait_until(pilot, lambda: screen_name(app) == "ConfirmScreen", what="the confirmation")
            await pilot.press("y")
            await wait_until(pilot, lambda: Deployment.get_by_id(first.id).status == "success", timeout=90,
                             what="the rollback")
    run(scenario())
    assert Deployment.get_by_id(second.id).status == "superseded"
    assert Rollback.get(Rollback.to_deployment == first.id).state == "completed"


def test_read_only_refuses_cancel_resume_and_rollback_by_key_and_palette(seeded):
    app = seeded(read_only=True)
    before = {d.id: d.status for d in Deployment.select()}

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            for dep_id, key in (("a1b2c3d4e5f6", "c"), ("c3d4e5f6a1b2", "r"), ("d4e5f6a1b2c3", "b")):
                await select(pilot, dep_id)
                await pilot.press(key)
                await pilot.pause(0.2)
                assert screen_name(app) == "MainScreen"
            for action in ("cancel", "resume", "rollback"):
                app._palette(action)
                await pilot.pause(0.1)
                assert screen_name(app) == "MainScreen"
            messages = [n.message for n in app._notifications]
            for action in ("cancel", "resume", "rollback"):
                assert sum(f"read-only mode: {action} refused" in m for m in messages) == 2, messages
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
            await select(pilot, target)
            await pilot.pause(0.2)
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
            await pilot.pause(0.2)
            assert table.selected()["id"] == target
            assert table.cursor_row == row + 2            # +3 new above, -1 removed above
            assert table.scroll_y == scroll + 2           # the same rows stay on screen
            assert table.rows_by_id["900000000063"]["status"] == "failed"
    run(scenario())


def test_filter_by_status_and_cycle_sort(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await pilot.press("slash")
            await wait_until(pilot, lambda: screen_name(app) == "FilterScreen", what="the filter prompt")
            await pilot.press(*"failed", "enter")
            table = app.main.query_one("#deployments")
            await wait_until(pilot, lambda: set(table.rows_by_id) == {"c3d4e5f6a1b2", "3d4e5f0a1b2c"},
                             what="only failed rows")
            await pilot.press("slash")
            await wait_until(pilot, lambda: screen_name(app) == "FilterScreen", what="the filter prompt")
            await pilot.press("ctrl+u", "enter")   # empty clears (Input: ctrl+u deletes to start)
            await wait_until(pilot, lambda: len(table.rows_by_id) == 12, what="all rows again")
            await pilot.press("s")
            await wait_until(pilot, lambda: table.selected_key() is not None and
                             table.coordinate_to_cell_key((0, 0)).row_key.value == "a1b2c3d4e5f6",
                             what="status sort: deploying first")
    run(scenario())
