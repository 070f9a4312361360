"""Snapshots of the console at 160x45 from a seeded store with a frozen clock (no runtime, no deployments run).
Update after an intended change with: .venv/bin/pytest tests/tui/test_snapshots.py --snapshot-update

Each run_before waits for the state its picture shows (a screen pushed, a worker's result drawn, a log wrapped at its
width); snap_compare then lets pending messages and animations finish before it takes the picture. No fixed sleeps."""
from tests.fixtures.seed import showcase_containers
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


async def details_drawn(pilot):
    """The details' first fetch shown, and its events wrapped at the width they are shown at, at their tail."""
    await wait_until(pilot, lambda: getattr(pilot.app.screen, "loaded", False), what="the details")
    log = pilot.app.screen.query_one("#detail-events")
    await wait_until(pilot, lambda: log._wrapped_at == log.scrollable_content_region.width and
                     log.scroll_y == log.max_scroll_y, what="the events wrapped at their width, at the tail")


def test_details_screen_shows_timeline_cleanup_and_events(seeded, snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("down", "down")
        await pilot.press("d")
        await details_drawn(pilot)
    assert snap_compare(seeded(), terminal_size=SIZE, run_before=before)


def test_details_at_80x24_show_the_failed_health_check_and_the_whole_error(seeded, snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("down", "down")  # the failed one (HEALTH_CHECK)
        await pilot.press("d")
        await details_drawn(pilot)
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
        notice = pilot.app.main.query_one("#notice")
        await wait_until(pilot, lambda: notice.display and "are refused" in str(notice.message),
                         what="the start-up notice")
        notice._timer.pause()     # it is short-lived (4 s): held, so a slow machine still pictures it
        await settle(pilot)
        await pilot.press("down", "c")     # c is not bound in read-only: nothing happens
        await wait_until(pilot, lambda: pilot.app.main.query_one("#deployments").cursor_row == 1,
                         what="the cursor on the deploying row")
    assert snap_compare(seeded(read_only=True), terminal_size=SIZE, run_before=before)


def test_main_screen_fits_80x24(seeded, snap_compare):
    assert snap_compare(seeded(), terminal_size=(80, 24), run_before=settle)


async def failed_selected_all_containers(pilot):
    await settle(pilot)
    await wait_until(pilot, lambda: pilot.app.main.polls >= 2 and pilot.app.main.containers, what="containers")
    await pilot.press("down", "down", "a")   # the failed one; every managed container
    await wait_until(pilot, lambda: pilot.app.main.query_one("#failure").display, what="the failure line")
    containers = pilot.app.main.query_one("#containers")
    await wait_until(pilot, lambda: str(containers.border_title).startswith("All containers") and
                     containers.row_count == len(showcase_containers()), what="every managed container listed")
    # the stats columns join the pane at the feed's first tick (once a second): wait for it at every width
    await wait_until(pilot, lambda: pilot.app.stats_feed.ticks >= 1, what="the stats feed's first tick")
    if pilot.app.size.width >= 120:          # at 80 columns the CPU column is out of the pane's view
        await wait_until(pilot, lambda: containers.series, what="the live stats")
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


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
        log = pilot.app.main.query_one("#events")
        rebuilt = []                         # the widths the log re-wrapped its lines at
        rebuild = log.rebuild
        log.rebuild = lambda: (rebuild(), rebuilt.append(log.scrollable_content_region.width))
        await pilot.press("down", "down", "f", "tab", "tab")        # the failed one, its events
        await wait_until(pilot, lambda: log.deployment_id == "c3d4e5f6a1b2" and pilot.app.main.focused is log,
                         what="the event log scoped to the failed deployment, focused")
        before = log.size
        await pilot.press("z")                                      # zoomed
        await wait_until(pilot, lambda: pilot.app.main.maximized is log and log.size != before, what="the zoom")
        # a resize re-wraps the lines after a refresh when the width changed; the tail stays in view
        await wait_until(pilot, lambda: (log.size.width == before.width or
                                         rebuilt[-1:] == [log.scrollable_content_region.width])
                         and log.is_vertical_scroll_end, what="the event log re-wrapped at its width, at its tail")
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
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def test_details_with_live_stats_160x45(seeded, snap_compare):
    assert snap_compare(seeded(live=True), terminal_size=SIZE, run_before=serving_api_details)


def test_details_with_live_stats_80x24(seeded, snap_compare):
    assert snap_compare(seeded(live=True), terminal_size=(80, 24), run_before=serving_api_details)
