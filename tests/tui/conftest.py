"""Console fixtures: a deterministic seeded store (frozen clock, UTC) and helpers to drive the app with a Pilot."""
import asyncio
import os
import time

import pytest

from storage.clock import freeze
from tests.conftest import make_settings
from tests.fixtures.seed import FROZEN_AT, ShowcaseStats, seeded_engine, showcase_containers, showcase_status

SIZE = (160, 45)


@pytest.fixture
def utc():
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture
def seeded(tmp_path, utc, docker_client):
    """make(read_only=False, keys=None, extra=0, live=False, prewarm=False) -> a DeployerConsole over a seeded store,
    no runtime (snapshots). With live, the engine reports a leader with two hosts, the showcase containers and a
    fixed minute of their CPU/memory (fixed data, so a snapshot shows what a hosted console shows without a clock
    or a Docker engine that moves). The dialogs are not prewarmed unless asked: a snapshot never catches one pushed
    behind its back."""
    from console.tui.app import DeployerConsole
    engines = []

    def make(read_only: bool = False, keys: dict | None = None, extra: int = 0, live: bool = False,
             prewarm: bool = False):
        freeze(FROZEN_AT)
        engine = seeded_engine(make_settings, tmp_path / f"data{len(engines)}", extra=extra, read_only=read_only,
                               keys=keys or {})
        engines.append(engine)
        if live:
            engine.status = showcase_status
            engine.containers = lambda all=False, host=None, unreachable=None: showcase_containers()
            engine.stats = ShowcaseStats()     # a fixed minute of CPU/memory: deterministic sparklines
        return DeployerConsole(engine, host_runtime=False, prewarm=prewarm)

    yield make
    freeze(None)
    for engine in engines:
        engine.close()


async def wait_until(pilot, predicate, timeout: float = 60.0, what="condition"):
    """Wait until predicate() holds, letting the app work in between: each round is `pilot.pause()` with no delay
    (the screen's pending messages are processed, then it waits for the process to go idle), so workers' results,
    timers and after-refresh callbacks run; no fixed sleep. The deadline is generous (a loaded machine is slow, never
    wrong): it fails saying what was awaited. `what` may be a callable, to say the state it ended in."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            said = what() if callable(what) else what
            raise AssertionError(f"waited {timeout:.0f} s for {said}; it did not happen")
        await pilot.pause()


async def wait_for_workers(pilot, group: str):
    """Wait for the app's workers of one group (e.g. "action") to finish, then for the messages they posted."""
    await pilot.app.workers.wait_for_complete([w for w in pilot.app.workers if w.group == group])
    await pilot.pause()


async def first_render(pilot):
    """The first poll drawn, the next one (the first with the containers) done, and the dialogs built if the app
    prewarms them; then the messages that rendering posted (after-refresh scrolls, the start-up notice) processed."""
    app = pilot.app
    await wait_until(pilot, lambda: app.main is not None and app.main.first_render_at is not None and
                     app.main.polls >= 2 and getattr(app, "dialogs_ready", True),
                     what="the first two polls to render and the dialogs to be built")
    await pilot.pause()


def run(coro):
    return asyncio.run(coro)
