"""Render SVG screenshots of the console into screenshots/ from a seeded store (frozen clock, UTC, 160x45 and
80x24): main screen, cancel confirmation, resume phase picker, details, read-only mode, help, a bulk cancel of
marked rows.

    .venv/bin/python scripts/screenshots.py [OUT_DIR [NAME ...]]

No runtime is hosted and no deployment runs; the main screen shows the seed's showcase status (a leader, two hosts)
and containers, so it looks like a hosted console; the other shots ask the local Docker engine (none for the seeded
store)."""
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE = (160, 45)


async def _shot(app, out: Path, name: str, keys=(), wait=None, size=SIZE):
    """Waits as the snapshot tests do (tests/tui/conftest.py): on the state each picture shows, never a fixed sleep."""
    from tests.tui.conftest import first_render, wait_until
    async with app.run_test(size=size) as pilot:
        await first_render(pilot)
        for key in keys:
            await pilot.press(key)
        if wait:
            await wait_until(pilot, lambda: wait(app), what=f"the {name} screenshot's state")
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        app.save_screenshot(filename=f"{name}.svg", path=str(out))
    print(f"wrote {out / (name + '.svg')}")


def main(out: Path, only=()) -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()
    from console.tui.app import DeployerConsole
    from storage.clock import freeze
    from tests.conftest import make_settings
    from tests.fixtures.seed import FROZEN_AT, seeded_engine, showcase_containers, showcase_status

    out.mkdir(parents=True, exist_ok=True)
    def failure_shown(a):
        return a.main.containers and a.main.query_one("#failure").display

    live = {"live": True}
    shots = [
        ("main", live, ("down", "down", "a"), failure_shown),
        ("main-80x24", dict(live, size=(80, 24)), ("down", "down", "a"), failure_shown),
        ("cancel-confirmation", {}, ("down", "c"), lambda a: type(a.screen).__name__ == "ConfirmScreen"),
        ("resume-phase-picker", {}, ("down", "down", "r"), lambda a: type(a.screen).__name__ == "ResumeScreen"),
        ("details", {}, ("down", "down", "d"), lambda a: getattr(a.screen, "loaded", False)),
        ("read-only", {"read_only": True}, ("down", "c"), lambda a: bool(a.notices)),
        ("help", {}, ("question_mark",), lambda a: type(a.screen).__name__ == "HelpScreen"),
        ("bulk-cancel", {}, ("space", "down", "space", "down", "down", "space", "c"),
         lambda a: type(a.screen).__name__ == "ConfirmScreen"),
    ]
    for name, options, keys, wait in shots:
        if only and name not in only:
            continue
        options = dict(options)
        is_live, size = options.pop("live", False), options.pop("size", SIZE)
        tmp = Path(tempfile.mkdtemp(prefix="console-shot-"))
        freeze(FROZEN_AT)
        engine = seeded_engine(make_settings, tmp / "data", **options)
        try:
            if is_live:
                engine.status = showcase_status
                engine.containers = lambda all=False, host=None, unreachable=None: showcase_containers()
            app = DeployerConsole(engine, host_runtime=False, prewarm=False)   # nothing pushed behind a shot
            app.title = "deployer-console"
            asyncio.run(_shot(app, out, name, keys, wait, size))
        finally:
            freeze(None)
            engine.close()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "screenshots", set(sys.argv[2:]))
