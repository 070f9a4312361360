"""The operations console: a thin Textual face over the Engine. Opens with `deployer-console` (no subcommand).

The console hosts the embedded engine and scheduler (`engine.start_runtime`) as leader or follower; it never runs a
pipeline or a Docker/store call on the UI thread itself. Keys are Textual bindings with ids, so `[keys]` in
config.toml rebinds them through the app keymap.
"""
import logging
import time
from functools import partial
from pathlib import Path

from rich.text import Text
from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen

from console.tui.data import one_line
from console.tui.screens.main import ACTIONS, MARKS, MUTATING, MainScreen, checked_keymap
from console.tui.screens.modals import ConfirmScreen, ResumeScreen
from console.tui.stats import StatsFeed
from console.tui.widgets.notice import NoticeLine

log = logging.getLogger(__name__)
APP_IDS = {"help", "quit"}
PALETTE_NAMES = {"containers": "All containers", "event_kind": "Event kind", "event_scope": "Event scope",
                 "command": "Open a view", "unmark": "Clear marks", "copy": "Copy id"}
PREWARM_CHECK_S = 0.1        # how often start-up checks whether the first poll has been drawn (then builds dialogs)
PREWARM_LATEST_S = 5.0


class DeployerConsole(App):
    TITLE = "deployer-console"
    # every screen's stylesheet is loaded once at start: a screen class with its own CSS_PATH makes Textual re-apply
    # the whole stylesheet to every widget the first time it is pushed (hundreds of ms with the tables up)
    # (absolute, so a subclass defined elsewhere, like the bench's, finds them too)
    CSS_PATH = [Path(__file__).parent / "screens" / f"{name}.tcss" for name in ("main", "modals", "details", "logs")]
    # q goes back from a sub-screen or dialog and quits from the main screen (asking first when this console leads
    # deployments in flight); ctrl+c (a reflex) and Textual's ctrl+q do the same, even from an input
    BINDINGS = [Binding("question_mark", "help", "Help", id="help"),
                Binding("q", "quit", "Quit", id="quit"),
                Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]
    main_screen = MainScreen   # the bench swaps in a timed subclass

    def __init__(self, engine, host_runtime: bool = True, prewarm: bool = True, **kwargs):
        """prewarm=False leaves the dialogs to be built on their first opening (snapshot tests: nothing is pushed
        behind their back)."""
        super().__init__(**kwargs)
        self.engine = engine
        self.host_runtime = host_runtime
        self.prewarm = prewarm
        self.dialogs_ready = not prewarm    # set once the dialogs are built (tests wait for it)
        self._held_keys: list | None = None
        self.main: MainScreen | None = None
        self.notices: list[tuple[str, str]] = []   # (severity, message), newest last: what the notice line said
        self.key_map: dict[str, str] = {}
        self.quitting = False
        # dialogs are built once and reused: installed screens survive being popped, so the second and later
        # openings only switch screens (see ConfirmScreen.ask)
        self.confirm_dialog = ConfirmScreen()
        self.resume_dialog = ResumeScreen()

    def on_mount(self) -> None:
        self.key_map, problems = checked_keymap(dict(self.engine.settings.keys or {}), APP_IDS)
        if self.key_map:
            self.set_keymap(self.key_map)
        self.install_screen(self.confirm_dialog, "confirm")
        self.install_screen(self.resume_dialog, "resume")
        self.main = self.main_screen()
        self.push_screen(self.main)
        self._started = time.monotonic()
        self._prewarm_timer = self.set_interval(PREWARM_CHECK_S, self._maybe_prewarm)
        self.call_after_refresh(self._startup_notice, problems)
        self.stats_feed = StatsFeed(self)   # live CPU/memory of the running containers on screen
        if self.host_runtime:
            self._start_runtime()

    def _startup_notice(self, problems: list[str]) -> None:
        warnings = list(self.engine.warnings)   # modes tightened when the store opened: logged, and said here once
        if warnings:
            self.notify("; ".join(warnings), severity="warning", timeout=15)
        if problems:   # a refused rebinding is said at start: neither action lost its key silently
            self.notify("[keys] " + "; ".join(problems), severity="warning", timeout=15)
        elif self.engine.settings.read_only and not warnings:
            self.notify("read-only mode: cancel, resume, rollback, clean now and shell are refused", title="READ-ONLY",
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

    def _maybe_prewarm(self) -> None:
        """Build the dialogs once the main screen has drawn its first poll (never ahead of it: that is the paint
        the operator waits for), or after PREWARM_LATEST_S whatever happens."""
        drawn = self.main is not None and getattr(self.main, "first_render_at", None) is not None
        if drawn or time.monotonic() - self._started > PREWARM_LATEST_S:
            self._prewarm_timer.stop()
            self.call_after_refresh(self._prewarm_dialogs)

    async def _prewarm_dialogs(self) -> None:
        """Compose and style the reusable dialogs once, unseen (no frame is drawn inside a batch), while the
        operator reads the first screen: the first `c` or `r` then opens as fast as the later ones. Keys typed
        meanwhile are held and replayed to the main screen, so none is lost."""
        if not self.prewarm:
            return
        self._held_keys = []
        try:
            for dialog in (self.confirm_dialog, self.resume_dialog):
                if dialog.is_mounted or self.screen is not self.main:
                    continue
                with self.batch_update():
                    await self.push_screen(dialog)
                    if self.screen is dialog:
                        await self.pop_screen()
        finally:
            held, self._held_keys = self._held_keys, None
            for key in held:
                self.post_message(events.Key(key.key, key.character))
            self.dialogs_ready = True

    async def on_event(self, event: events.Event) -> None:
        if self._held_keys is not None and isinstance(event, events.Key) and not event.is_forwarded:
            self._held_keys.append(event)
            return
        await super().on_event(event)

    # ---- quitting
    async def action_quit(self) -> None:
        if self.quitting:
            return
        if self.main is None or self.screen is self.main:
            self._check_in_flight()
        elif isinstance(self.screen, ModalScreen):
            self.screen.dismiss(None)      # a dialog's "no"
        else:
            self.pop_screen()              # back from details or logs

    @work(thread=True, group="quit", exclusive=True, exit_on_error=False)
    def _check_in_flight(self) -> None:
        try:
            running = self.engine.in_flight()
        except Exception:  # the store is unreadable: stopping the runtime still hands over what it runs
            log.exception("listing in-flight deployments before quitting")
            running = [] if self.engine.runtime is None else [{"id": i, "service": "?", "phase": None}
                                                             for i in sorted(self.engine.runtime.running_ids())]
        finally:
            self._close_thread_db()
        self.call_from_thread(self._ask_to_quit, running)

    def _ask_to_quit(self, running: list[dict]) -> None:
        if not running:
            self.exit()
            return
        if self.confirm_dialog in self.screen_stack or self.screen is not self.main:
            return
        n = len(running)
        body = Text()
        body.append(f"This console leads and runs {n} deployment{'s' if n > 1 else ''}:\n", style="bold")
        for d in running[:8]:
            body.append(f"  • {d['id']} {d['service']} in {d.get('phase') or 'its first phase'}\n")
        if n > 8:
            body.append(f"  • … and {n - 8} more\n")
        them, each = ("them", "each") if n > 1 else ("it", "it")
        body.append(f"\nQuitting stops {them} cleanly and hands {them} over: {each} stays deploying with a resume "
                    f"request for its phase, which the next engine to lead runs (another console or "
                    f"`deployer-console engine`). The lease is released at once.")
        self.push_screen(self.confirm_dialog.ask(f"Quit and hand over {n} deployment{'s' if n > 1 else ''}?", body,
                                                 yes="Hand over and quit"),
                         lambda ok: ok and self._stop_and_exit())

    def _stop_and_exit(self) -> None:
        self.quitting = True
        self.notify("stopping: handing the running deployments over…", timeout=10)
        self._stop_runtime()

    @work(thread=True, group="quit", exit_on_error=False)
    def _stop_runtime(self) -> None:
        try:
            self.engine.stop_runtime()
        except Exception:
            log.exception("stopping the embedded engine")
        self.call_from_thread(self.exit)

    def _close_thread_db(self) -> None:
        self.engine.release_connection()

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
            if action in MUTATING | MARKS and self.engine.settings.read_only:
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
