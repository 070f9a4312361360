"""Quitting, the details screen and the container log viewer, driven by keys (Textual Pilot) against the real engine.

Waits are on conditions the app reaches (a worker's result shown, a screen pushed, a row written), never on fixed
sleeps."""
from console.engine import labels as L
from console.engine.core import Engine
from console.engine.validate import PHASES
from console.tui.app import DeployerConsole
from console.tui.screens.logs import FollowLog
from storage.clock import now
from storage.models import Deployment, DeploymentEvent, PhaseRun
from tests.conftest import make_service_dir, wait_for
from tests.tui.conftest import SIZE, first_render, run, wait_until

FAILED = "c3d4e5f6a1b2"   # the seeded deployment that failed its HEALTH_CHECK


def screen_name(app) -> str:
    return type(app.screen).__name__


def screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def timeline_row(app, phase: str) -> str:
    return next(line for line in screen_text(app).splitlines() if line.startswith(f"│ {phase}"))


async def open_details(pilot, deployment_id: str):
    app = pilot.app
    table = app.main.query_one("#deployments")
    await wait_until(pilot, lambda: deployment_id in table.rows_by_id, what=f"row {deployment_id}")
    table.move_cursor(row=table.get_row_index(deployment_id))
    await pilot.press("d")
    await wait_until(pilot, lambda: getattr(app.screen, "loaded", False), what="the details")
    return app.screen


# ---- quitting
def test_q_on_a_leader_with_a_deployment_in_flight_asks_then_hands_it_over_for_resume(engine, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setenv("DEPLOYER_FAULT_PAUSE", "COPYING_FILES:120")   # the pipeline waits mid-phase
    engine.add_service("web", str(make_service_dir(tmp_path / "src")))
    holder = {}

    async def scenario():
        app = DeployerConsole(engine, host_runtime=True)
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await wait_until(pilot, lambda: engine.runtime is not None and engine.runtime.is_leader,
                             what="the console to lead")
            dep = holder["dep"] = engine.create_deployment("web")
            await wait_until(pilot, lambda: Deployment.get_by_id(dep.id).phase == "COPYING_FILES" and
                             engine.in_flight(), timeout=90, what="the pipeline to run COPYING_FILES")
            await pilot.press("q")
            await wait_until(pilot, lambda: app.screen is app.confirm_dialog, what="the quit question")
            assert "Quit and hand over 1 deployment?" in screen_text(app)
            assert f"{dep.id} web in COPYING_FILES" in screen_text(app)
            await pilot.press("n")                       # no: nothing stops
            await wait_until(pilot, lambda: app.screen is app.main, what="back on the main screen")
            assert engine.runtime.running_ids() == {dep.id}
            await pilot.press("ctrl+c")                  # ctrl+c asks the same
            await wait_until(pilot, lambda: app.screen is app.confirm_dialog, what="the quit question again")
            await pilot.press("y")
            await wait_until(pilot, lambda: app.return_code is not None, timeout=10,
                             what="the console to stop its runtime and exit")
            assert app.quitting
    run(scenario())
    dep = holder["dep"]
    assert engine.runtime.running_ids() == set()          # stopped, not killed later
    row = Deployment.get_by_id(dep.id)
    assert row.status == "deploying" and row.resume_from == "COPYING_FILES"
    assert row.heartbeat_at is None and row.owner.startswith("released-by:")
    assert DeploymentEvent.select().where((DeploymentEvent.deployment == dep.id) &
                                          DeploymentEvent.message.contains("handed over")).exists()

    # the next engine to lead resumes it as requested work (not as a zombie) and it finishes
    monkeypatch.delenv("DEPLOYER_FAULT_PAUSE")
    successor = Engine(engine.settings)
    try:
        successor.start_runtime()
        wait_for(lambda: Deployment.get_by_id(dep.id).status == "success", timeout=90,
                 what="the successor to finish the handed-over deployment")
    finally:
        successor.close()
    done = Deployment.get_by_id(dep.id)
    assert done.attempts == 1 and done.resume_from is None
    messages = [e.message for e in DeploymentEvent.select().where(DeploymentEvent.deployment == dep.id)]
    assert any("Resuming deployment" in m and "from COPYING_FILES" in m for m in messages), messages
    assert not any("zombie" in m for m in messages), messages


def test_q_without_deployments_in_flight_quits_at_once(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await pilot.press("q")
            await wait_until(pilot, lambda: app.return_code is not None, what="the console to exit")
            assert app.confirm_dialog not in app.screen_stack    # no question: nothing runs here
    run(scenario())
    assert app.return_code == 0


def test_q_and_escape_go_back_from_details_and_logs(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            for key in ("q", "escape", "ctrl+c"):
                await open_details(pilot, FAILED)
                await pilot.press(key)
                await wait_until(pilot, lambda: app.screen is app.main, what=f"{key} back from details")
            from console.tui.screens.logs import LogsScreen
            for key in ("q", "escape"):
                await app.push_screen(LogsScreen({"name": "gone", "id": "0123456789ab", "host": "local",
                                                  "state": "exited"}))
                await wait_until(pilot, lambda: screen_name(app) == "LogsScreen", what="the log viewer")
                await pilot.press(key)
                await wait_until(pilot, lambda: app.screen is app.main, what=f"{key} back from logs")
            assert app.is_running
    run(scenario())


# ---- details
def test_details_at_80x24_show_all_six_phases_and_the_whole_error(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await first_render(pilot)
            screen = await open_details(pilot, FAILED)
            await wait_until(pilot, lambda: "6/6 HEALTH_CHECK" in screen_text(app), what="the timeline drawn")
            text = screen_text(app)
            for i, phase in enumerate(PHASES):
                assert f"{i + 1}/6 {phase}" in text, text
            assert "failed" in timeline_row(app, "6/6 HEALTH_CHECK")
            # the error wraps instead of stopping at the edge
            assert "error: HEALTH_CHECK: health check timed out" in text
            assert "HTTP/1.1 404 Not Found)" in text, text
            phases = screen.query_one("#phases")
            assert phases.region.bottom <= screen.size.height - 1   # above the footer
    run(scenario())


def test_details_follow_a_resumed_attempt_live_and_keep_earlier_attempts_below(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            screen = await open_details(pilot, FAILED)
            assert screen.attempt == 0 and not screen.query_one("#detail-earlier").display
            t = now()
            with app.engine.store.write():      # the engine resumes it from HEALTH_CHECK (attempt 1)
                Deployment.update(status="deploying", phase="HEALTH_CHECK", attempts=1, error=None,
                                  finished_at=None, heartbeat_at=t).where(Deployment.id == FAILED).execute()
                PhaseRun.create(deployment=FAILED, phase="HEALTH_CHECK", attempt=1, started_at=t)
                DeploymentEvent.create(deployment=FAILED, time=t, level="info", kind="deployment",
                                       message=f"Resuming deployment {FAILED} from HEALTH_CHECK (attempt 1)")
            await wait_until(pilot, lambda: screen.attempt == 1, what="details to follow the new attempt")
            await wait_until(pilot, lambda: "attempt 1 (running)" in screen_text(app), what="attempt 1 drawn")
            text = screen_text(app)
            assert "Phase timeline · attempt 1 (running)" in text
            health = timeline_row(app, "6/6 HEALTH_CHECK")
            assert "running" in health and " 1 " in health
            building = timeline_row(app, "2/6 BUILDING")
            assert "done" in building and " 0 " in building     # what attempt 1 builds on
            earlier = screen.query_one("#detail-earlier")
            assert earlier.display and "attempt 0 ended in HEALTH_CHECK: failed" in earlier.title
            log = screen.query_one("#detail-events", FollowLog)
            assert any("Resuming deployment" in line for line in log.lines)
    run(scenario())


# ---- the container log viewer
def test_log_viewer_follows_pauses_on_scroll_up_keeps_receiving_and_keeps_the_tail_on_resize(engine, docker_client):
    from console.tui.screens.logs import LogsScreen
    name = f"deployer-logs-{engine.store_id[:6]}"
    c = docker_client.containers.run(
        "deployer/base:busybox", ["sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.02; done"],
        name=name, detach=True, labels=L.deployment_labels(engine.store_id, "0" * 12, "logs", 1))
    container = {"name": name, "id": c.id[:12], "host": "local", "state": "running"}

    async def scenario():
        app = DeployerConsole(engine, host_runtime=False)
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            screen = LogsScreen(container)
            await app.push_screen(screen)
            log = screen.query_one(FollowLog)
            await wait_until(pilot, lambda: log.line_count > log.size.height + 20, what="a screenful of lines")
            assert log.following and str(screen.query_one("#logs-head").render()).startswith("following ·")
            await wait_until(pilot, lambda: log.scroll_y == log.max_scroll_y, what="the tail")

            await pilot.press("up")                       # scrolling up pauses
            assert not log.following
            assert str(screen.query_one("#logs-head").render()).startswith("paused — End to follow ·")
            assert log.border_subtitle == "paused — End to follow"
            kept, lines = log.scroll_y, log.line_count
            await wait_until(pilot, lambda: log.line_count > lines + 20, what="lines while paused")
            assert log.scroll_y == kept                   # still receiving, the view stays put

            await pilot.press("end")                      # End follows again
            assert log.following and log.scroll_y == log.max_scroll_y
            for size in ((80, 24), (160, 45)):           # a resize keeps the tail while following
                await pilot.resize_terminal(*size)
                lines = log.line_count
                await wait_until(pilot, lambda: log.line_count > lines + 5 and log.scroll_y == log.max_scroll_y,
                                 what=f"the tail at {size}")
            await pilot.press("q")
            await wait_until(pilot, lambda: app.screen is app.main, what="back")
            assert screen.closed.is_set()
    try:
        run(scenario())
    finally:
        c.remove(force=True)


# ---- dialogs built once
def test_dialogs_are_built_after_start_and_reused_without_losing_the_main_screens_focus(seeded):
    app = seeded(prewarm=True)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)            # waits for the dialogs to be built, too
            assert app.confirm_dialog.is_mounted and app.resume_dialog.is_mounted
            assert app.screen is app.main and app.focused is app.main.query_one("#deployments")
            table = app.main.query_one("#deployments")
            table.move_cursor(row=table.get_row_index("a1b2c3d4e5f6"))     # deploying: c asks
            for _ in range(2):
                await pilot.press("c")
                await wait_until(pilot, lambda: app.screen is app.confirm_dialog, what="the confirmation")
                assert "Cancel a1b2c3d4e5f6?" in screen_text(app)
                assert app.focused is app.confirm_dialog.query_one("#no")  # enter is safe
                await pilot.press("n")
                await wait_until(pilot, lambda: app.screen is app.main, what="back")
            await pilot.press("down")                 # keys still reach the table
            assert table.cursor_row == table.get_row_index("a1b2c3d4e5f6") + 1
    run(scenario())


# ---- the status bar
def test_status_bar_is_one_line_at_80_columns_and_says_everything_when_wider(seeded):
    # it wrapped to two lines at 80 columns; now it leaves out the least important first and keeps the role, every
    # host that is down and the cleanup queue
    app = seeded(live=True)            # a leader with two hosts, h2 down, one cleanup queued

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await first_render(pilot)
            bar = app.main.query_one("#status")

            def shown() -> str:
                return bar.render().plain
            await wait_until(pilot, lambda: "leader" in shown(), what="the status drawn")
            assert bar.region.height == 1, shown()
            for part in ("● leader", "h2 ▼", "cleanup queue 1"):
                assert part in shown(), shown()
            await pilot.resize_terminal(160, 45)
            await wait_until(pilot, lambda: "this console: ops-1:4242:7" in shown(), what=lambda: shown())
            assert "reconcile 6.0s ago, next in 9.0s" in shown() and bar.region.height == 1
            await pilot.resize_terminal(80, 24)
            await wait_until(pilot, lambda: "this console" not in shown(), what=lambda: shown())
            assert bar.region.height == 1
    run(scenario())


def test_status_bar_at_78_cells_keeps_the_role_the_hosts_down_and_the_cleanup_queue():
    from console.tui.widgets.statusbar import status_text
    t = now()
    hosts = [{"name": "local", "reachable": True}, {"name": "edge-2", "reachable": True},
             {"name": "h2", "reachable": False}, {"name": "h3", "reachable": None}]
    statuses = [
        {"role": "leader", "me": "ops-1:4242:7", "hosts": hosts, "cleanup_queue": 12, "last_reconcile_at": t - 6,
         "next_reconcile_at": t + 9},
        {"role": "follower", "leader": {"holder": "ops-1:4242:7"}, "hosts": hosts, "cleanup_queue": 3,
         "last_reconcile_at": t - 600, "next_reconcile_at": t + 9},
        {"role": "none", "leader": {"holder": "ops-1:4242:7"}, "hosts": hosts[:1], "cleanup_queue": 0,
         "last_reconcile_at": t - 6, "next_reconcile_at": t},
    ]
    for status in statuses:
        for read_only in (False, True):
            full, narrow = status_text(status, read_only).plain, status_text(status, read_only, 78)
            assert narrow.cell_len <= 78, narrow.plain
            said = narrow.plain
            assert ("READ-ONLY" in said) == read_only
            assert {"leader": "● leader", "follower": "○ follower ", "none": "not hosted · leader "}[status["role"]] \
                in said and ("ops-1:4242:7" in said or status["role"] == "leader"), said
            for h in status["hosts"]:
                if not h["reachable"]:
                    assert f"{h['name']} {'▼' if h['reachable'] is False else '?'}" in said, said
            assert f"cleanup {status['cleanup_queue']}" in said or f"cleanup queue {status['cleanup_queue']}" in said
            assert len(full) > len(said)


def test_status_bar_worst_case_read_only_follower_with_hosts_down_stays_one_line():
    """The case the 80-column bar still wrapped in: a read-only follower, four hosts with long names, two down,
    one unknown. The down hosts are counted; a leader's name as long as the screen is cut, never wrapped."""
    from console.tui.widgets.statusbar import status_text
    t = now()
    hosts = [{"name": "build-eu-west-1", "reachable": True}, {"name": "edge-frankfurt-2", "reachable": False},
             {"name": "edge-amsterdam-3", "reachable": False}, {"name": "batch-stockholm", "reachable": None}]
    status = {"role": "follower", "leader": {"holder": "ops-console-primary:4242:7"}, "hosts": hosts,
              "cleanup_queue": 17, "last_reconcile_at": t - 600, "next_reconcile_at": t + 9}
    said = status_text(status, True, 78)
    assert said.cell_len <= 78, said.plain
    assert said.plain.startswith(" READ-ONLY  ○ follower of ops-console-pri…"), said.plain
    assert "2 ▼ 1 ? 1 up ▲" in said.plain and said.plain.endswith("cleanup 17"), said.plain
    long = status_text({**status, "leader": {"holder": "x" * 120}}, True, 78)
    assert long.cell_len <= 78 and "x… │ hosts 2 ▼" in long.plain and long.plain.endswith("cleanup 17"), long.plain


def test_the_hosts_view_says_where_a_host_on_another_machine_publishes_its_containers():
    """`:hosts`: a host with an address shows it beside its URL; one on this machine's loopback shows nothing more."""
    from textual.app import App

    from console.tui.screens.modals import HostsScreen
    rows = [{"name": "local", "url": "", "default": True, "address": "127.0.0.1", "reachable": True,
             "last_seen_at": now()},
            {"name": "edge", "url": "ssh://deploy@edge.example.net", "default": False, "address": "10.0.0.12",
             "reachable": False, "last_error": "ssh to edge.example.net got no answer"}]

    class Hosts(App):
        def on_mount(self) -> None:
            self.push_screen(HostsScreen(rows))

    async def scenario():
        app = Hosts()
        async with app.run_test(size=(120, 24)) as pilot:
            await wait_until(pilot, lambda: screen_name(app) == "HostsScreen", what="the hosts view")
            await pilot.pause()
            text = screen_text(app)
            assert "ssh://deploy@edge.example.net · publish 10.0.0.12" in text, text
            assert "publish 127.0.0.1" not in text
    run(scenario())
