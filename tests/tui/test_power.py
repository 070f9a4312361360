"""Operator power tools in the console (Textual Pilot): marks and bulk cancel / clean now, copy with OSC 52, the shell
key's refusals, and read-only mode refusing all of them but copy."""
import base64

from rich.text import Text

from console.tui.widgets.eventlog import EventLog, event_line
from storage.models import CleanupTask, Deployment
from tests.tui.conftest import SIZE, first_render, run, wait_for_workers, wait_until
from tests.tui.test_pilot import screen_name, select

DEPLOYING, QUEUED, FAILED_PENDING, SUCCESS = "a1b2c3d4e5f6", "b2c3d4e5f6a1", "c3d4e5f6a1b2", "d4e5f6a1b2c3"
CANCELLED_DONE, FAILED_KEPT = "f6a1b2c3d4e5", "3d4e5f0a1b2c"


def osc52_writes(app) -> list[str]:
    """Record what the app writes to its terminal (the driver's own write, called through): the OSC 52 sequences."""
    written: list[str] = []
    real = app._driver.write

    def write(data: str) -> None:
        written.append(data)
        real(data)
    app._driver.write = write
    return written


def copied(written: list[str]) -> list[str]:
    out = []
    for data in written:
        start = data.find("\x1b]52;c;")
        while start != -1:
            end = data.index("\a", start)
            out.append(base64.b64decode(data[start + len("\x1b]52;c;"):end]).decode())
            start = data.find("\x1b]52;c;", end)
    return out


def notices(app) -> list[str]:
    return [m for _, m in app.notices]


async def mark(pilot, *dep_ids: str) -> None:
    for dep_id in dep_ids:
        await select(pilot, dep_id)
        await pilot.press("space")


async def ask(pilot, key: str) -> str:
    """Press `key` and return the text of the confirmation it opens."""
    await pilot.press(key)
    await wait_until(pilot, lambda: screen_name(pilot.app) == "ConfirmScreen", what="the confirmation")
    return pilot.app.confirm_dialog.body.plain


def marked_style(table, dep_id: str) -> bool:
    cell = table.get_row(dep_id)[0]
    return isinstance(cell, Text) and any("reverse" in str(span.style) for span in cell.spans)


def test_space_marks_rows_visibly_space_again_unmarks_and_ctrl_space_clears_every_mark(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            table = app.main.query_one("#deployments")
            await mark(pilot, DEPLOYING, QUEUED, SUCCESS)
            assert table.marked == {DEPLOYING, QUEUED, SUCCESS}
            assert all(marked_style(table, d) for d in (DEPLOYING, QUEUED, SUCCESS))
            assert not marked_style(table, FAILED_PENDING)
            assert "3 marked" in str(app.main.query_one("#deployments-pane").border_title)
            await pilot.press("space")              # the cursor is still on SUCCESS: unmarked
            assert table.marked == {DEPLOYING, QUEUED} and not marked_style(table, SUCCESS)
            await pilot.press("ctrl+space")
            assert table.marked == set() and not marked_style(table, DEPLOYING)
            assert "marked" not in str(app.main.query_one("#deployments-pane").border_title)
            assert notices(app)[-1] == "2 marks cleared"
            await mark(pilot, QUEUED)
            await pilot.press("ctrl+@")              # what a terminal sends for ctrl+space
            assert table.marked == set()
    run(scenario())


def test_c_with_marks_cancels_every_marked_active_deployment_after_one_confirmation_and_names_the_skipped(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await mark(pilot, DEPLOYING, QUEUED, SUCCESS)
            body = await ask(pilot, "c")
            assert DEPLOYING in body and QUEUED in body
            assert f"{SUCCESS} api: success: only queued or deploying can be cancelled" in body
            await pilot.press("y")
            await wait_until(pilot, lambda: any("cancelled" in m and "of 3" in m for m in notices(app)),
                             what="the summary notice")
            summary = next(m for m in notices(app) if "of 3" in m)
            assert summary.startswith("2 of 3 cancelled: ")
            assert DEPLOYING in summary and QUEUED in summary and f"skipped {SUCCESS} (success)" in summary
            assert app.main.query_one("#deployments").marked == set()
    run(scenario())
    assert {d: Deployment.get_by_id(d).status for d in (DEPLOYING, QUEUED, SUCCESS)} == {
        DEPLOYING: "cancelled", QUEUED: "cancelled", SUCCESS: "success"}


def test_C_with_marks_cleans_the_pending_failed_one_now_and_skips_the_done_and_kept_ones_by_name(seeded):
    app = seeded()
    assert CleanupTask.get(CleanupTask.deployment == FAILED_PENDING).state == "pending"

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await mark(pilot, FAILED_PENDING, CANCELLED_DONE, FAILED_KEPT)
            body = await ask(pilot, "C")
            assert "1 deployment will be cleaned up now" in body and FAILED_PENDING in body
            assert f"{CANCELLED_DONE} slow: cleanup done: nothing to run" in body
            assert f"{FAILED_KEPT} broken: cleanup kept: nothing to run" in body
            await pilot.press("y")
            await wait_until(pilot, lambda: any("of 3 cleaned up" in m for m in notices(app)), timeout=60,
                             what="the summary notice")
            summary = next(m for m in notices(app) if "of 3 cleaned up" in m)
            assert summary == (f"1 of 3 cleaned up: {FAILED_PENDING}; skipped {CANCELLED_DONE} (cleanup done), "
                               f"{FAILED_KEPT} (cleanup kept)")
    run(scenario())
    assert CleanupTask.get(CleanupTask.deployment == FAILED_PENDING).state == "done"
    assert CleanupTask.get(CleanupTask.deployment == FAILED_KEPT).state == "kept"


def test_C_without_marks_on_a_deployment_with_nothing_to_clean_says_why_and_asks_nothing(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await select(pilot, SUCCESS)
            await pilot.press("C")
            await wait_until(pilot, lambda: any("nothing to clean up now" in m for m in notices(app)),
                             what="the notice")
            assert screen_name(app) == "MainScreen"
            assert notices(app)[-1] == (f"nothing to clean up now: {SUCCESS} success: only failed or cancelled "
                                        f"deployments are cleaned up")
    run(scenario())


def test_y_copies_the_selected_id_and_the_event_line_with_osc_52_and_says_what(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            written = osc52_writes(app)
            await select(pilot, FAILED_PENDING)
            await pilot.press("y")
            assert copied(written) == [FAILED_PENDING]
            assert written[0] == "\x1b]52;c;" + base64.b64encode(FAILED_PENDING.encode()).decode() + "\a"
            assert notices(app)[-1] == f"copied deployment id {FAILED_PENDING}"
            log = app.main.query_one(EventLog)
            log.focus()
            await pilot.pause()
            await pilot.press("y")
            newest = [e for e in log.buffer if log.wanted(e)][-1]
            assert copied(written)[-1] == event_line(newest)
            assert notices(app)[-1].startswith("copied event line ")
    run(scenario())


def test_x_on_a_deployment_without_a_container_is_refused_by_the_engine_and_audited(seeded):
    app = seeded()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            await select(pilot, DEPLOYING)
            await pilot.press("x")
            await wait_until(pilot, lambda: any(m.startswith("shell failed") for m in notices(app)),
                             what="the refusal")
            assert notices(app)[-1] == (f"shell failed: deployment {DEPLOYING} has no container on host local "
                                        f"(it is deploying)")
            assert screen_name(app) == "MainScreen"
    run(scenario())
    audit = [r for r in app.engine.audit() if r["action"] == "exec"]
    assert [(r["target"], r["outcome"]) for r in audit] == [(DEPLOYING, "refused")]


def test_read_only_refuses_shell_marks_and_clean_now_and_still_copies(seeded):
    app = seeded(read_only=True)
    before = {d.id: d.status for d in Deployment.select()}
    tasks = {t.id: t.state for t in CleanupTask.select()}

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await first_render(pilot)
            offered = {b.binding.action for b in app.main.active_bindings.values()}
            assert not offered & {"shell", "clean", "mark", "unmark"}, offered
            written = osc52_writes(app)
            await select(pilot, FAILED_PENDING)
            for key in ("space", "x", "C", "ctrl+space"):
                await pilot.press(key)
                await wait_for_workers(pilot, "action")   # nothing may have started; whatever did has ended
                assert screen_name(app) == "MainScreen"
            assert app.main.query_one("#deployments").marked == set()
            for action in ("shell", "clean", "mark", "unmark"):
                app._palette(action)
                await wait_until(pilot, lambda action=action: any(f"read-only mode: {action} refused" in m
                                                                  for m in notices(app)),
                                 what=f"the refusal of {action}")
                assert screen_name(app) == "MainScreen"
            for action in ("shell", "clean", "mark", "unmark"):
                assert sum(f"read-only mode: {action} refused" in m for m in notices(app)) == 1, notices(app)
            await pilot.press("y")
            assert copied(written) == [FAILED_PENDING]
    run(scenario())
    assert {d.id: d.status for d in Deployment.select()} == before
    assert {t.id: t.state for t in CleanupTask.select()} == tasks
