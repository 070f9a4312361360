"""Trends: the details screen shows each phase's duration over the service's last deployments as a sparkline and the
failure rate; the main table marks a run over twice its service's median. Seeded deployments with known durations
(tests/fixtures/seed.py TIMED), a frozen clock."""
import pytest

from storage.clock import freeze
from tests.conftest import make_settings
from tests.fixtures.seed import FROZEN_AT, TIMED, seed_timed
from tests.tui.conftest import SIZE, first_render, run, wait_until

BARS = "▁▂▃▄▅▆▇"   # a sparkline's bars below full (the timeline's own bar is only █)


@pytest.fixture
def timed(tmp_path, utc):
    from console.engine.core import Engine
    from console.tui.app import DeployerConsole
    engine = Engine(make_settings(tmp_path / "data"))
    freeze(FROZEN_AT)
    seed_timed(engine.store)
    yield lambda: DeployerConsole(engine, host_runtime=False, prewarm=False)
    freeze(None)
    engine.close()


def screen_lines(app) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


async def open_details(pilot, dep_id: str):
    await first_render(pilot)
    table = pilot.app.main.query_one("#deployments")
    table.move_cursor(row=table.get_row_index(dep_id))
    await pilot.press("d")
    await wait_until(pilot, lambda: getattr(pilot.app.screen, "loaded", False), what="the details")
    await pilot.pause()


def test_details_show_each_phase_as_a_sparkline_of_the_last_deployments_and_the_failure_rate(timed):
    async def go():
        app = timed()
        async with app.run_test(size=SIZE) as pilot:
            await open_details(pilot, TIMED[-1][0])
            trends = app.screen.trends
            assert trends["ids"] == [d for d, _, _ in TIMED]
            assert trends["phases"]["BUILDING"] == [5, 7, 6, 5, 5, 35]
            assert trends["phases"]["HEALTH_CHECK"] == [1] * 6
            assert (trends["failed"], trends["ended"]) == (2, 6)
            assert trends["median_run"] == 10.5
            phases = app.screen.query_one("#phases")
            assert phases.border_subtitle == "last 6 of timed: 2 of 6 failed (33%) · median run 10s"
            lines = screen_lines(app)
            assert any("LAST 6" in line for line in lines)
            building = next(line for line in lines if "2/6 BUILDING" in line)
            # six bars, one per deployment: five short builds, the 35 s one full
            assert any(c in building for c in BARS), building
            assert "▁▁▁▁▁█" in building, building
    run(go())


def test_details_at_80_columns_keep_the_trend_and_the_failure_rate(timed):
    async def go():
        app = timed()
        async with app.run_test(size=(80, 24)) as pilot:
            await open_details(pilot, TIMED[-1][0])
            lines = screen_lines(app)
            assert all(len(line) == 80 for line in lines)
            building = next(line for line in lines if "2/6 BUILDING" in line)
            assert any(c in building for c in BARS), building
            assert any("2 of 6 failed (33%)" in line for line in lines)
    run(go())


def test_main_table_marks_only_the_run_over_twice_the_service_median(timed):
    async def go():
        app = timed()
        async with app.run_test(size=(80, 24)) as pilot:
            await first_render(pilot)
            table = app.main.query_one("#deployments")
            durations = {k: table._cells[k][5] for k in table._order}
            assert durations[TIMED[-1][0]] == "40s ▲"
            assert [k for k, v in durations.items() if "▲" in v] == [TIMED[-1][0]]
            assert any("40s ▲" in line for line in screen_lines(app))
    run(go())
