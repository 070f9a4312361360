"""The operations console: a thin Textual face over the Engine. Opens with `deployer-console` (no subcommand).

The console hosts the embedded engine and scheduler (`engine.start_runtime`) as leader or follower; it never runs a
pipeline or a Docker/store call on the UI thread itself. Keys are Textual bindings with ids, so `[console.keys]` in
config.toml rebinds them through the app keymap.
"""
import logging
from functools import partial

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding

from console.tui.data import one_line
from console.tui.screens.main import ACTIONS, MUTATING, MainScreen, checked_keymap
from console.tui.widgets.notice import NoticeLine

log = logging.getLogger(__name__)
APP_IDS = {"help", "quit"}
PALETTE_NAMES = {"containers": "All containers", "event_kind": "Event kind", "event_scope": "Event scope",
                 "command": "Open a view"}


class DeployerConsole(App):
    TITLE = "deployer-console"
    # every screen's stylesheet is loaded once at start: a screen class with its own CSS_PATH makes Textual re-apply
    # the whole stylesheet to every widget the first time it is pushed (hundreds of ms with the tables up)
    CSS_PATH = ["screens/main.tcss", "screens/modals.tcss", "screens/details.tcss"]
    BINDINGS = [Binding("question_mark", "help", "Help", id="help"),
                Binding("q", "quit", "Quit", id="quit")]

    def __init__(self, engine, host_runtime: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.engine = engine
        self.host_runtime = host_runtime
        self.main: MainScreen | None = None
        self.notices: list[tuple[str, str]] = []   # (severity, message), newest last: what the notice line said
        self.key_map: dict[str, str] = {}

    def on_mount(self) -> None:
        self.key_map, problems = checked_keymap(dict(self.engine.settings.keys or {}), APP_IDS)
        if self.key_map:
            self.set_keymap(self.key_map)
        self.main = MainScreen()
        self.push_screen(self.main)
        self.call_after_refresh(self._startup_notice, problems)
        if self.host_runtime:
            self._start_runtime()

    def _startup_notice(self, problems: list[str]) -> None:
        if problems:   # a refused rebinding is said at start: neither action lost its key silently
            self.notify("[keys] " + "; ".join(problems), severity="warning", timeout=15)
        elif self.engine.settings.read_only:
            self.notify("read-only mode: cancel, resume and rollback are refused", title="READ-ONLY",
                        severity="warning", timeout=4)

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Notices go to the screen's notice line (one line, newest wins) instead of stacking toasts over the work;
        a screen without one (a dialog) gets Textual's toast."""
        self.notices.append((severity, message))
        del self.notices[:-50]
        if timeout is None:
            timeout = {"error": 8.0, "warning": 6.0}.get(severity, 4.0)
        lines = self.screen.query(NoticeLine) if self.screen.is_attached else []
        if lines:
            lines.first().show(message, severity, title, timeout)
        else:
            super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    @work(thread=True, group="runtime", exit_on_error=False)
    def _start_runtime(self) -> None:
        start = getattr(self.engine, "start_runtime", None)
        if start is None:
            self.call_from_thread(self.notify, "this engine has no embedded runtime; showing the store only",
                                  severity="warning")
            return
        try:
            start(run_jobs=True)
        except Exception as e:  # the console stays useful as a viewer
            log.exception("starting the embedded engine")
            self.call_from_thread(self.notify, f"embedded engine did not start: {one_line(e)}", severity="error")

    # ---- app-wide actions (the main screen's actions are on MainScreen)
    def action_help(self) -> None:
        if self.main is not None:
            self.main.action_help()

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        if self.main is None:
            return
        keys = {binding_id: shown for shown, binding_id, _ in self.main.help_rows()}   # id -> keys bound now
        for action, (_, label, text) in ACTIONS.items():
            title = f"{PALETTE_NAMES.get(action, label)}  ({keys.get(action, '')})"
            if action in MUTATING and self.engine.settings.read_only:
                title += "  read-only: refused"
            yield SystemCommand(title, text, partial(self._palette, action))
        yield SystemCommand(f"Help  ({keys.get('help', '?')})", "List every key binding", self.action_help)

    def _palette(self, action: str) -> None:
        if self.screen is not self.main:
            self.pop_screen()
        getattr(self.main, f"action_{action}")()


def run_console(settings, engine=None) -> None:
    """Open the console. With no engine given, it builds one from settings and closes it (and the runtime) on exit."""
    own = engine is None
    if own:
        from console.engine.core import Engine
        engine = Engine(settings)
    try:
        DeployerConsole(engine).run()
    finally:
        if own:
            engine.close()
