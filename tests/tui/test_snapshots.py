"""Snapshots of the console at 160x45 from a seeded store with a frozen clock (no runtime, no deployments run).
Update after an intended change with: .venv/bin/pytest tests/tui/test_snapshots.py --snapshot-update"""
from tests.tui.conftest import SIZE, first_render, wait_until


async def settle(pilot):
    await first_render(pilot)


def test_main_screen_lists_deployments_status_bar_and_events(seeded, snap_compare):
    assert snap_compare(seeded(), terminal_size=SIZE, run_before=settle)


def test_cancel_modal_names_the_deployment_and_what_is_removed(seeded, snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("down")          # the deploying one (a queued one is newest)
        await pilot.press("c")
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen", what="the modal")
    assert snap_compare(seeded(), terminal_size=SIZE, run_before=before)


def test_resume_modal_preselects_the_recorded_phase(seeded, snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("down", "down")  # the failed one (HEALTH_CHECK)
        await pilot.press("r")
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "ResumeScreen", what="the modal")
    assert snap_compare(seeded(), terminal_size=SIZE, run_before=before)


def test_details_screen_shows_timeline_cleanup_and_events(seeded, snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("down", "down")
        await pilot.press("d")
        await wait_until(pilot, lambda: getattr(pilot.app.screen, "loaded", False), what="the details")
        await pilot.pause(0.2)
    assert snap_compare(seeded(), terminal_size=SIZE, run_before=before)


def test_details_at_80x24_show_the_failed_health_check_and_the_whole_error(seeded, snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("down", "down")  # the failed one (HEALTH_CHECK)
        await pilot.press("d")
        await wait_until(pilot, lambda: getattr(pilot.app.screen, "loaded", False), what="the details")
    assert snap_compare(seeded(), terminal_size=(80, 24), run_before=before)


def test_help_lists_every_key(seeded, snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "HelpScreen", what="help")
    assert snap_compare(seeded(), terminal_size=SIZE, run_before=before)


def test_help_shows_keys_rebound_from_the_config(seeded, snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "HelpScreen", what="help")
    assert snap_compare(seeded(keys={"cancel": "w", "rollback": "ctrl+b"}), terminal_size=SIZE, run_before=before)


def test_read_only_mode_offers_no_mutating_key_and_says_so_in_one_line(seeded, snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("down", "c")
        await wait_until(pilot, lambda: pilot.app.notices, what="the notice")
        await pilot.pause(0.3)
    assert snap_compare(seeded(read_only=True), terminal_size=SIZE, run_before=before)


def test_main_screen_fits_80x24(seeded, snap_compare):
    assert snap_compare(seeded(), terminal_size=(80, 24), run_before=settle)


async def failed_selected_all_containers(pilot):
    await settle(pilot)
    await wait_until(pilot, lambda: pilot.app.main.polls >= 2 and pilot.app.main.containers, what="containers")
    await pilot.press("down", "down", "a")   # the failed one; every managed container
    await wait_until(pilot, lambda: pilot.app.main.query_one("#failure").display, what="the failure line")
    if pilot.app.size.width >= 120:          # at 80 columns the CPU column is out of the pane's view
        await wait_until(pilot, lambda: pilot.app.main.query_one("#containers").series, what="the live stats")
    await pilot.pause(0.2)


def test_hosted_leader_containers_with_an_orphan_and_a_failure_reason_160x45(seeded, snap_compare):
    assert snap_compare(seeded(live=True), terminal_size=SIZE, run_before=failed_selected_all_containers)


def test_hosted_leader_containers_with_an_orphan_and_a_failure_reason_80x24(seeded, snap_compare):
    assert snap_compare(seeded(live=True), terminal_size=(80, 24), run_before=failed_selected_all_containers)


def test_help_fits_and_scrolls_at_80x24(seeded, snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "HelpScreen", what="help")
    assert snap_compare(seeded(), terminal_size=(80, 24), run_before=before)


def test_event_log_scoped_to_one_deployment_drops_the_id_and_wraps_at_80x24(seeded, snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("down", "down", "f", "tab", "tab", "z")   # the failed one, its events, zoomed
        await wait_until(pilot, lambda: pilot.app.main.maximized is not None, what="the zoom")
        await pilot.pause(0.2)
    assert snap_compare(seeded(), terminal_size=(80, 24), run_before=before)


async def three_marked(pilot):
    """The queued, the deploying and the successful one marked (the cursor stays on the last)."""
    await settle(pilot)
    await pilot.press("space", "down", "space", "down", "down", "space")
    await wait_until(pilot, lambda: len(pilot.app.main.query_one("#deployments").marked) == 3, what="three marks")


def test_marked_rows_are_reversed_and_the_title_says_what_acts_on_them(seeded, snap_compare):
    assert snap_compare(seeded(), terminal_size=SIZE, run_before=three_marked)


def test_bulk_cancel_confirmation_lists_the_marked_and_names_the_skipped_at_80x24(seeded, snap_compare):
    async def before(pilot):
        await three_marked(pilot)
        await pilot.press("c")
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen", what="the modal")
    assert snap_compare(seeded(), terminal_size=(80, 24), run_before=before)


async def serving_api_details(pilot):
    """The details of api's serving deployment, whose container runs: the stats line (fixed samples) and trends."""
    await settle(pilot)
    await pilot.press("down", "down", "down")
    await pilot.press("d")
    await wait_until(pilot, lambda: getattr(pilot.app.screen, "loaded", False), what="the details")
    await wait_until(pilot, lambda: pilot.app.screen.query_one("#stats-cpu-spark").data, what="the live stats line")
    await pilot.pause(0.2)


def test_details_with_live_stats_160x45(seeded, snap_compare):
    assert snap_compare(seeded(live=True), terminal_size=SIZE, run_before=serving_api_details)


def test_details_with_live_stats_80x24(seeded, snap_compare):
    assert snap_compare(seeded(live=True), terminal_size=(80, 24), run_before=serving_api_details)
