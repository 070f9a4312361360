"""The console in a real terminal (tmux), against a real running container: `x` hands the terminal to the
container's shell and the console comes back as it was; `y` reaches tmux's clipboard through OSC 52; ctrl+space as
the terminal sends it clears the marks. Each test runs its own tmux server (`-L`), so nothing else is touched."""
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from console.engine.releases import container_name
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="no tmux")


@pytest.fixture
def running(running_web):
    return running_web


class Tmux:
    def __init__(self, socket: str):
        self.socket, self.session = socket, "console"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=30).stdout

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", self.session, *keys)

    def type(self, text: str) -> None:
        self("send-keys", "-t", self.session, "-l", text)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", self.session)

    def wait(self, predicate, what: str, timeout: float = 60.0) -> str:
        """The screen once `predicate(screen)` holds. The console runs in another process (tmux's): its pane is the
        only signal there is to wait on, so it is read until the predicate holds (tests/conftest.wait_for)."""
        seen = [""]

        def shown():
            seen[0] = self.screen()
            return seen[0] if predicate(seen[0]) else None
        try:
            return wait_for(shown, timeout=timeout, what=what)
        except AssertionError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; the screen:\n{seen[0]}") from None


@pytest.fixture(params=["160x45", "80x24"])
def console(request, engine, running):
    """The console in a tmux window (160x45 and 80x24) on the test's store (clipboard: set-clipboard on)."""
    width, height = request.param.split("x")
    tmux = Tmux(f"deployer-test-{uuid.uuid4().hex[:8]}")
    env = {"PYTHONPATH": str(ROOT), "DEPLOYER_DATA_DIR": str(engine.settings.data_dir), "TERM": "xterm-256color"}
    if engine.settings.store.db:
        env["DEPLOYER_DB"] = engine.settings.store.db
    command = " ".join(f"{k}={v!s}" for k, v in env.items()) + f" exec {sys.executable} -m console.cli"
    tmux("-f", os.devnull, "new-session", "-d", "-s", tmux.session, "-x", width, "-y", height, command)
    tmux("set-option", "-g", "window-size", "manual")
    tmux("resize-window", "-t", tmux.session, "-x", width, "-y", height)
    size = tmux("display-message", "-p", "-t", tmux.session, "#{window_width}x#{window_height}").strip()
    assert size == request.param
    tmux("set-option", "-g", "set-clipboard", "on")
    tmux("set-option", "-g", "escape-time", "0")
    try:
        tmux.wait(lambda s: running.id in s and "Deployments 1" in s, "the console to show the deployment")
        yield tmux
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True, timeout=30)


def test_x_hands_the_terminal_to_the_containers_shell_and_exit_brings_the_console_back_as_it_was(console, running,
                                                                                                engine, docker_client):
    short_id = docker_client.containers.get(container_name("web", running.id)).id[:12]
    console.keys("/")
    console.wait(lambda s: "filter: words" in s, "the filter prompt")
    console.type("web")
    console.wait(lambda s: "· /web " in s, "the filter typed")
    console.keys("Enter")
    console.wait(lambda s: "Deployments 1 of 1 · /web" in s, "the filter")
    console.keys("s")                      # sort: newest -> status
    before = console.wait(lambda s: "Deployments 1 of 1 · /web" in s and "sort status" in s, "the filter and sort")
    assert running.id in before
    console.keys("x")
    console.wait(lambda s: "Deployments" not in s and "#" in s, "the container's shell prompt")
    console.type("echo MARKER $(hostname)")
    console.keys("Enter")
    screen = console.wait(lambda s: f"MARKER {short_id}" in s.splitlines(), "MARKER echoed by the shell")
    assert any(line.endswith("echo MARKER $(hostname)") for line in screen.splitlines())
    console.type("exit")
    console.keys("Enter")
    after = console.wait(lambda s: "Deployments 1 of 1 · /web" in s, "the console to come back")
    assert "sort status" in after and running.id in after
    console.wait(lambda s: f"shell in {container_name('web', running.id)} ended" in s, "the notice")
    audit = [r for r in engine.audit() if r["action"] == "exec"]
    assert [(r["target"], r["outcome"]) for r in audit] == [
        (f"{running.id} container {container_name('web', running.id)}", "ok")]
    assert audit[0]["user"] and audit[0]["time"]


def test_y_puts_the_id_on_tmuxs_clipboard_and_ctrl_space_as_sent_by_the_terminal_clears_marks(console, running):
    console.keys("y")
    console.wait(lambda s: f"copied deployment id {running.id}" in s, "the copy notice")
    wait_for(lambda: console("show-buffer").strip() == running.id, what="the id in tmux's paste buffer")
    console.keys("Space")
    console.wait(lambda s: "1 marked" in s, "the mark")
    console.keys("C-Space")
    console.wait(lambda s: "1 mark cleared" in s and "marked:" not in s, "the marks cleared")
