"""The console with 10,000 deployments in the store: first paint, the UI-thread time of a refresh tick in which 100
rows changed, key-to-modal latency (c → the cancel confirmation on screen) and the process's memory.

The app runs headless (Textual's run_test) against a real SQLite store seeded with 10,000 deployments; no runtime is
hosted, so only the console's own work is measured. The tick is measured inside the UI callback that applies a poll
(the diff into the DataTable, status bar, containers pane, event log); the store query runs in a thread worker and is
reported separately. Targets (issue 5): first paint ≤ 1 s, tick ≤ 30 ms, key-to-modal ≤ 100 ms, RSS ≤ 200 MB.
"""
import asyncio
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

try:
    from bench import benchlib as B
except ModuleNotFoundError:  # run as `python bench/tui_bench.py`
    import benchlib as B

DEPLOYMENTS = 10_000
CHANGED = 100
ROUNDS = 5


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _measure(app) -> dict:
    from storage.clock import now
    from storage.models import Deployment
    out = {}
    t0, c0 = time.perf_counter(), time.thread_time()          # the app runs on this thread (run_test)
    async with app.run_test(size=(160, 45)) as pilot:
        while app.main is None or app.main.first_paint_at is None:
            await asyncio.sleep(0.002)
        out["first_paint_s"] = app.main.first_paint_at - t0     # the frame with the rows has been composed
        out["first_paint_cpu_s"] = app.main.first_paint_cpu - c0
        main = app.main
        table = main.query_one("#deployments")
        out["rows_shown"] = table.row_count

        # ticks in which 100 rows of the window changed (status, phase, duration: three cells each)
        ids = list(table.rows_by_id)[20:20 + CHANGED]
        ticks = []
        for i in range(ROUNDS):
            seen = len(main.render_log)
            with app.engine.store.write():
                Deployment.update(status="failed" if i % 2 == 0 else "superseded",
                                  phase="COPYING_FILES" if i % 2 == 0 else "HEALTH_CHECK",
                                  finished_at=now() - 100 * (i + 1)).where(Deployment.id.in_(ids)).execute()
            while not any(c.get("updated", 0) >= CHANGED for _, c, _ in main.render_log[seen:]):
                await asyncio.sleep(0.01)
            ticks += [(ms, cpu) for ms, c, cpu in main.render_log[seen:] if c.get("updated", 0) >= CHANGED]
        out["tick_ms"] = [w for w, _ in ticks]
        out["tick_cpu_ms"] = [c for _, c in ticks]

        # key to modal: c on a deploying row until the confirmation has been painted
        deploying = next(k for k, r in table.rows_by_id.items() if r["status"] == "deploying")
        table.move_cursor(row=table.get_row_index(deploying))
        await pilot.pause()
        latencies, cpu = [], []
        for _ in range(ROUNDS):
            t, c = time.perf_counter(), time.thread_time()
            await pilot.press("c")
            while getattr(app.screen, "painted_at", None) is None:
                await asyncio.sleep(0.001)
            latencies.append((app.screen.painted_at - t) * 1000)
            cpu.append((app.screen.painted_cpu - c) * 1000)
            await pilot.press("n")
            await pilot.pause()
        out["modal_ms"] = latencies
        out["modal_cpu_ms"] = cpu
        out["rss_mb"] = rss_mb()
    return out


def baseline_ms() -> tuple[float, float]:
    """A bare Textual app's first paint and a bare modal's paint on this machine right now, for scale."""
    from textual.app import App
    from textual.screen import ModalScreen
    from textual.widgets import Footer, Label, Static

    class Modal(ModalScreen):
        def compose(self):
            yield Label("?")

        def on_mount(self):
            self.call_after_refresh(lambda: setattr(self, "painted_at", time.perf_counter()))

    class Bare(App):
        def compose(self):
            yield Static("hello")
            yield Footer()

        def on_mount(self):
            self.call_after_refresh(lambda: setattr(self, "painted_at", time.perf_counter()))

    async def go():
        t0 = time.perf_counter()
        app = Bare()
        async with app.run_test(size=(160, 45)) as pilot:
            while getattr(app, "painted_at", None) is None:
                await asyncio.sleep(0.002)
            first = app.painted_at - t0
            t = time.perf_counter()
            app.push_screen(Modal())
            while getattr(app.screen, "painted_at", None) is None:
                await asyncio.sleep(0.001)
            modal = app.screen.painted_at - t
            await pilot.pause()
        return first * 1000, modal * 1000
    return asyncio.run(go())


def run() -> list[dict]:
    from console.engine.core import Engine
    from console.tui.app import DeployerConsole
    from console.tui.data import Poller, Filter
    from console.tui.seed import SHOWCASE, seed
    from tests.conftest import make_settings
    tmp = Path(tempfile.mkdtemp(prefix="tui-bench-"))
    engine = None
    try:
        engine = Engine(make_settings(tmp / "data"))
        B.log(f"seeding {DEPLOYMENTS:,} deployments")
        seed(engine.store, extra=DEPLOYMENTS - len(SHOWCASE), at=time.time())
        fetch_ms = statistics.median(B.timed(Poller(engine).poll, Filter(), "newest", 0, False)[0] * 1000
                                     for _ in range(5))
        B.log("running the console headless")
        base_paint, base_modal = baseline_ms()
        m = asyncio.run(_measure(DeployerConsole(engine, host_runtime=False)))
        med = statistics.median
        tick_note = f"{CHANGED} rows × 3 cells via update_cell, in the UI callback; max of {len(m['tick_ms'])}"
        return [
            B.at_most("first paint, wall clock (10,000 deployments)", round(m["first_paint_s"], 3), 1.0, "s",
                      f"{m['rows_shown']} rows shown (newest 500 + every active one)"),
            B.at_most("first paint, UI-thread CPU", round(m["first_paint_cpu_s"], 3), 1.0, "s",
                      "CPU the UI thread spent from start to the first frame with rows"),
            B.at_most(f"tick with {CHANGED} changed rows, UI-thread wall", round(max(m["tick_ms"]), 2), 30.0, "ms",
                      f"{tick_note}, median {med(m['tick_ms']):.1f} ms"),
            B.at_most(f"tick with {CHANGED} changed rows, UI-thread CPU", round(max(m["tick_cpu_ms"]), 2), 30.0,
                      "ms", f"median {med(m['tick_cpu_ms']):.1f} ms"),
            B.info("poll fetch (thread worker, not the UI thread)", round(fetch_ms, 1), "ms",
                   "deployments window + active + count + status + events"),
            B.at_most("key-to-modal (c → cancel confirmation painted), wall", round(max(m["modal_ms"]), 1), 100.0,
                      "ms", f"max of {ROUNDS}, median {med(m['modal_ms']):.1f} ms"),
            B.at_most("key-to-modal, UI-thread CPU", round(max(m["modal_cpu_ms"]), 1), 100.0, "ms",
                      f"median {med(m['modal_cpu_ms']):.1f} ms"),
            B.at_most("RSS of the console process", round(m["rss_mb"], 1), 200.0, "MB", "VmRSS after the run"),
            B.info("for scale: a bare Textual app's first paint / a bare modal, wall",
                   f"{base_paint:.0f} / {base_modal:.0f}", "ms", "same machine, same moment: " + B.load_note()),
        ]
    finally:
        if engine is not None:
            engine.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(B.main(run, "console (issue 5): 10,000 deployments"))
