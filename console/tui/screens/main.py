"""The main screen: deployments, containers, the event tail and the status bar, polled live.

Poll → render → reschedule: one thread worker fetches a Snapshot (never on the UI thread), the UI applies it by diff
when the worker finishes, and only then is the next poll scheduled, so polls never overlap and a slow store slows the
refresh instead of piling up. While a modal or another screen is on top, rendering waits and the snapshot is kept.
"""
import time

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static
from textual.worker import Worker, WorkerState

from console.engine import pipeline
from console.engine.deployments import ACTIVE, CLEANUP_ON, RESUMABLE
from console.tui.data import EVENT_KINDS, SORTS, Filter, Poller, one_line
from console.tui.screens.modals import HelpScreen, HostsScreen
from console.tui.widgets.containers import ContainersTable
from console.tui.widgets.deployments import DeploymentsTable
from console.tui.widgets.eventlog import EventLog
from console.tui.widgets.footer import Footer
from console.tui.widgets.notice import NoticeLine
from console.tui.widgets.statusbar import StatusBar
from storage.db import StoreUnavailable

MUTATING = {"cancel", "resume", "rollback", "shell", "clean"}
MARKS = {"mark", "unmark"}     # only for cancel and clean: not offered in read-only mode either
AGES_EVERY_S = 10.0     # with nothing new in the store, the table's ages are brought up to date this often
VIEWS = ("deployments", "containers", "events", "hosts")

# binding id -> (default key, footer label, what it does); ids are what [keys] in config.toml rebinds
ACTIONS = {
    "cancel": ("c", "Cancel", "Cancel the selected deployment (asks first; its resources are cleaned up)"),
    "resume": ("r", "Resume", "Resume the selected failed/stuck deployment from a phase you pick"),
    "rollback": ("b", "Rollback", "Roll the selected deployment's service back to its previous release"),
    "clean": ("C", "Clean now", "Run the cleanup of the selected (or every marked) failed/cancelled deployment now "
                                "instead of after cleanup_delay (asks first)"),
    "shell": ("x", "Shell", "Open a shell in the selected deployment's running container; the console comes back "
                            "as it was when the shell exits"),
    "mark": ("space", "Mark", "Mark / unmark the selected deployment: c and C then act on every marked one"),
    "unmark": ("ctrl+space,ctrl+@", "Unmark", "Clear every mark"),
    "copy": ("y", "Copy", "Copy the selected id (a container's in its pane; in the event log its bottom line) to the "
                          "clipboard with OSC 52, over SSH and tmux too"),
    "details": ("d", "Details", "Details: phase timeline, events, cleanup task, containers"),
    "logs": ("l", "Logs", "Follow the logs of the selected container"),
    "filter": ("slash", "Filter", "Filter as you type: words matched in id, service, status, host and error "
                                  "(status:failed for one field); enter keeps it, escape clears"),
    "sort": ("s", "Sort", "Cycle the sort: newest, status, service, host"),
    "containers": ("a", "All ctrs", "Toggle: containers of the selection / all managed containers (orphans)"),
    "event_kind": ("e", "Ev kind", "Cycle the event log's kind filter"),
    "event_scope": ("f", "Ev scope", "Toggle the event log between all deployments and the selected one"),
    "zoom": ("z", "Zoom", "Maximise the focused pane / restore it"),
    "newest": ("n", "Newest", "Jump to the newest deployment"),
    "command": ("colon", "Views", "Open a view by name: :deployments, :containers, :events, :hosts"),
}
PROMPTS = {"filter", "command"}
# in help and the palette, not in the footer (a marked table says its keys in its title)
HIDDEN = {"event_kind", "event_scope", "newest", "command", "clean", "mark", "unmark", "copy"}


APP_DEFAULTS = {"help": "question_mark", "quit": "q"}
# keys the tables, the event log and dialogs use without a binding id: a rebinding onto one of them would never fire
RESERVED = {"j", "k", "g", "G", "home", "end", "up", "down", "left", "right", "pageup", "pagedown", "enter",
            "escape", "tab", "shift+tab", "ctrl+p"}


def checked_keymap(keys: dict[str, str], app_ids=frozenset(APP_DEFAULTS)) -> tuple[dict[str, str], list[str]]:
    """The `[keys]` rebindings that can be applied, and one line per problem. A rebinding onto a key another action
    already has is refused and reported, so neither action loses its key silently."""
    from textual.keys import _normalize_key_list  # Textual's own spelling of keys ("?" -> "question_mark")
    defaults = {i: k for i, (k, _, _) in ACTIONS.items()} | {i: APP_DEFAULTS[i] for i in app_ids}
    problems, applied = [], {}
    unknown = sorted(set(keys) - set(defaults))
    if unknown:
        problems.append(f"unknown binding ids ignored: {', '.join(unknown)}")
    bound = {i: set(_normalize_key_list(k).split(",")) for i, k in defaults.items()}
    for binding_id, value in keys.items():
        if binding_id not in defaults:
            continue
        wanted = set(_normalize_key_list(value).split(","))
        owner = next((other for other, ks in bound.items() if other != binding_id and ks & wanted), None)
        taken = wanted & RESERVED
        if owner or taken:
            what = owner or "navigation"
            problems.append(f'{binding_id} = "{value}" collides with {what}; {binding_id} stays on '
                            f'{", ".join(sorted(bound[binding_id]))}')
            continue
        bound[binding_id] = wanted
        applied[binding_id] = value
    return applied, problems


class Pane(Vertical):
    ALLOW_MAXIMIZE = True    # `z` on the table maximises the pane (title, table and failure line)



class PromptInput(Input):
    """The `/` and `:` prompt. The app hands each key to the widget focused when it reads the key, and Enter's
    binding ran only after the key had bubbled back to the app, so keys typed right after Enter were queued here and
    typed into the prompt (`s` made the filter `/webs`). Enter now closes the prompt in the prompt's own queue, and
    a key queued behind it is given back to the app, which hands it to what has the focus now (the table): no key
    is dropped or lands in a closed prompt."""

    async def action_submit(self) -> None:
        self.screen.prompt_submitted(self.value)

    async def _on_key(self, event: events.Key) -> None:
        if not self.display:      # queued here before Enter closed the prompt: it is the table's
            event.stop()
            event.prevent_default()
            self.app.post_message(events.Key(event.key, event.character))
            return
        if event.key == "enter":  # here, in the prompt's own queue, before the keys queued behind it
            event.stop()
            event.prevent_default()
            self.screen.prompt_submitted(self.value)
            return
        await super()._on_key(event)

class MainScreen(Screen):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]   # narrow: the event log gets the width
    # `/` and `:` are priority bindings: they run as the key arrives, so the keys typed right after them are
    # already routed to the prompt (a plain binding runs only after those keys were queued for the table)
    BINDINGS = [Binding(key, action, label, id=action, show=action not in HIDDEN, priority=action in PROMPTS)
                for action, (key, label, _) in ACTIONS.items()] + [Binding("escape", "back", show=False)]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.filter = Filter()
        self.sort = SORTS[0]
        self.show_all_containers = False
        self.containers: list[dict] = []
        self.container_errors: list[str] = []
        self.status: dict | None = None
        self.total = 0
        self._polling = False
        self._timer = None
        self._pending = None
        self._pending_events: list[dict] = []
        self._last_error: str | None = None
        self._since_id = 0
        self.first_render_at: float | None = None
        self.last_counts: dict = {}   # what the last render changed in the table (added, updated, removed)
        self.polls = 0
        self.matched = 0
        self.pinned: dict[str, str] = {}    # deployments acted on -> their status then: kept in view while they run
        self.prompt_mode: str | None = None  # "/" filter bar or ":" view prompt
        self._ages_at = 0.0

    # ---- layout
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield NoticeLine(id="notice")
        yield PromptInput(id="prompt", compact=True)
        with Pane(id="deployments-pane"):
            yield DeploymentsTable(id="deployments")
            yield Static(id="failure")
        with Horizontal(id="bottom"):
            yield ContainersTable(id="containers")
            yield EventLog(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.poller = Poller(self.app.engine)
        self.read_only = self.app.engine.settings.read_only
        self.query_one(StatusBar).show(None, self.read_only)
        self._titles()
        self.query_one(DeploymentsTable).focus()
        self.poll()

    # ---- poll -> render -> reschedule
    def poll(self, containers: bool = True) -> None:
        if self._polling:
            return
        self._polling = True
        # the first poll skips Docker so the first paint waits for the store only; the next one follows at once
        self._fetch(self.filter, self.sort, self._since_id, containers and self.polls > 0, tuple(self.pinned))

    def poll_now(self, containers: bool = True) -> None:
        """Poll at once (after an action) unless one is in flight; the in-flight one reschedules. A filter or sort
        change polls the store only (containers stay as they were), so the rows follow the keys quickly."""
        if self._timer is not None:
            self._timer.stop()
        self.poll(containers)

    @work(thread=True, group="poll", exit_on_error=False)
    def _fetch(self, flt: Filter, sort: str, since_id: int, containers: bool = True, pinned=()):
        return flt, sort, self.poller.poll(flt, sort, since_id, containers, pinned)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "poll":
            if event.state == WorkerState.SUCCESS:
                flt, sort, snap = worker.result
                stale = (flt, sort) != (self.filter, self.sort)
                if not stale:
                    self.deliver(snap)
                else:  # the filter changed while it ran: its rows are stale, but its events are new
                    self._take_events(snap.events)
            elif event.state == WorkerState.ERROR:
                self.report(f"refresh failed: {one_line(worker.error)}")
                if isinstance(worker.error, StoreUnavailable):  # said in the status bar until a poll succeeds
                    message = one_line(worker.error).removeprefix("store unreachable: ")
                    self.query_one(StatusBar).show({**(self.status or {}), "store_error": message}, self.read_only)
            if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
                self._polling = False
                self.polls += 1
                if event.state == WorkerState.SUCCESS and stale:     # rows for the filter typed since
                    self._timer = self.set_timer(0.01, lambda: self.poll(containers=False))
                else:
                    self._timer = self.set_timer(
                        0.01 if self.polls <= 1 else self.app.engine.settings.console.poll_interval, self.poll)
        elif worker.group == "action" and event.state == WorkerState.ERROR:
            self.report(one_line(worker.error), remember=False)

    def _take_events(self, events: list[dict]) -> None:
        if events:
            self._pending_events += events
            self._since_id = max(self._since_id, events[-1]["id"])

    def deliver(self, snap) -> None:
        self._take_events(snap.events)
        if snap.unchanged:
            self.render_unchanged(snap)
            return
        if self.app.screen is not self:
            self._pending = snap
            return
        self.render_snapshot(snap)

    def on_screen_resume(self) -> None:
        if self._pending is not None:
            snap, self._pending = self._pending, None
            self.render_snapshot(snap)

    def render_unchanged(self, snap) -> None:
        """A poll that found nothing new in the store: only what moves with the clock or with Docker is redrawn,
        each widget only when its text changed (the status bar's clock, the ages, the containers pane)."""
        if snap.status is not None:
            self.status = snap.status
        if snap.containers is not None:
            self.containers, self.container_errors = snap.containers, snap.container_errors
        if self._pending is not None:       # a full snapshot waits for this screen: it takes what is new
            if snap.status is not None:
                self._pending.status = snap.status
            if snap.containers is not None:
                self._pending.containers, self._pending.container_errors = snap.containers, snap.container_errors
            return
        if self.app.screen is not self:
            return
        try:
            self.query_one(StatusBar).show(self.status, self.read_only)
            if snap.containers is not None:
                self.show_containers()
            mono = time.monotonic()
            if mono - self._ages_at >= AGES_EVERY_S:   # ages and run times move with the clock
                self._ages_at = mono
                self.query_one(DeploymentsTable).redraw()
        except Exception as e:  # a render problem is a notice, never a crash
            self.report(f"display failed: {one_line(e)}")

    def render_snapshot(self, snap) -> None:
        self._ages_at = time.monotonic()
        try:
            with self.app.batch_update():
                table = self.query_one(DeploymentsTable)
                table.fit(host_count=len((snap.status or {}).get("hosts") or []))
                self.last_counts = table.show(snap.rows)
                self._unpin(snap.rows)
                self.total, self.matched = snap.total, snap.matched
                self.status = snap.status
                self.query_one(StatusBar).show(snap.status, self.read_only)
                if snap.containers is not None:
                    self.containers, self.container_errors = snap.containers, snap.container_errors
                self.show_containers()
                events, self._pending_events = self._pending_events, []
                self.query_one(EventLog).add(events)
                self._titles()
                self.show_failure()
            self._last_error = None
        except Exception as e:  # a render problem is a notice, never a crash
            self.report(f"display failed: {one_line(e)}")
        if self.first_render_at is None:
            self.first_render_at = time.perf_counter()

    def report(self, message: str, remember: bool = True) -> None:
        if remember:
            if message == self._last_error:
                return
            self._last_error = message
        self.app.notify(message, severity="error", timeout=6)

    def _unpin(self, rows: list[dict]) -> None:
        for r in rows:
            then = self.pinned.get(r["id"])
            if then is not None and r["status"] != then and r["status"] not in ACTIVE:
                del self.pinned[r["id"]]      # it ran and finished: the filter decides again

    # ---- panes
    def _titles(self) -> None:
        dep = self.query_one("#deployments-pane")
        flt = self.filter.text()
        if flt:
            dep.border_title = f"Deployments {self.matched} of {self.total} · /{flt}"
        else:
            dep.border_title = f"Deployments {self.total}"
        marked = len(self.query_one(DeploymentsTable).marked)
        if marked:
            dep.border_title += f" · {marked} marked: c cancel, C clean now, ctrl+space unmark"
        dep.border_subtitle = f"sort {self.sort}"
        self.query_one(EventLog).border_title = f"Events · {self.query_one(EventLog).describe()}"

    def show_failure(self) -> None:
        """The selected deployment's error, one line under the table (details has it whole)."""
        strip = self.query_one("#failure", Static)
        row = self.selected()
        if not row or not row.get("error"):
            strip.display = False
            return
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append("✗ ", style="bold red")
        error = " ".join(row["error"].split())
        phase = row["phase"] or "no phase"
        t.append(f"{row['status']} in {phase}: ", style="bold")
        t.append(error.removeprefix(f"{phase}: "), style="red")
        strip.update(t)
        strip.display = True

    def on_event_log_follow_changed(self, event) -> None:
        self._titles()

    def show_containers(self) -> None:
        table = self.query_one(ContainersTable)
        selected = self.selected()
        if self.show_all_containers:
            rows = self.containers
            orphans = sum(1 for c in rows if c.get("orphan"))
            title = f"All containers {len(rows)}" + (f" · {orphans} orphan" if orphans else "")
        else:
            rows = [c for c in self.containers if selected and c["deployment_id"] == selected["id"]]
            title = f"Containers {len(rows)} · {selected['id']}" if selected else "Containers"
        if self.container_errors:
            title += " · unreachable: " + "; ".join(self.container_errors)
        table.border_title = title
        table.show(rows)

    def selected(self) -> dict | None:
        return self.query_one(DeploymentsTable).selected()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "deployments":
            self.show_containers()
            self.show_failure()
            log = self.query_one(EventLog)
            if log.deployment_id is not None:
                sel = self.selected()
                if sel and sel["id"] != log.deployment_id:
                    log.set_filter(deployment_id=sel["id"])
                    self._titles()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "deployments":
            self.action_details()
        elif event.data_table.id == "containers":
            self.action_logs()

    # ---- guards
    def check_action(self, action: str, parameters) -> bool | None:
        # read-only: the mutating keys are not offered (hidden from the footer, the key does nothing); the palette
        # still lists them, marked, and says why when picked
        if action in MUTATING | MARKS and getattr(self, "read_only", False):
            return False
        if action in PROMPTS and isinstance(self.focused, Input):
            return False      # typing `/` or `:` in the prompt is text
        return True

    def refuse(self, action: str) -> bool:
        if action in MUTATING | MARKS and self.read_only:
            self.app.notify(f"read-only mode: {action} refused", title="READ-ONLY", severity="warning")
            return True
        return False

    def need_selection(self) -> dict | None:
        row = self.selected()
        if row is None:
            self.app.notify("no deployment selected", severity="warning")
        return row

    # ---- actions
    def action_cancel(self) -> None:
        if self.refuse("cancel"):
            return
        if self.query_one(DeploymentsTable).marked:
            self.ask_bulk("cancel")
            return
        if (row := self.need_selection()) is None:
            return
        if row["status"] not in ACTIVE:
            self.app.notify(f"deployment {row['id']} is {row['status']}; only queued or deploying deployments can "
                            f"be cancelled", severity="warning")
            return
        body = Text()
        body.append(f"Cancel deployment {row['id']} of {row['service']} on {row['host']}?\n", style="bold")
        body.append(f"It is {row['status']} in {row['phase'] or 'no phase yet'}.\n\n")
        body.append("The pipeline stops, then cleanup removes:\n")
        mine = [c for c in self.containers if c["deployment_id"] == row["id"]]
        for c in mine:
            body.append(f"  • container {c['name']} ({c['state']}) on {c['host']}\n")
        if not mine:
            body.append(f"  • container {pipeline.container_name(row['service'], row['id'])} (if created)\n")
        body.append(f"  • image {pipeline.image_tag(row['service'], row['id'])} (once unused)\n")
        body.append("  • its own volumes (backed up first); container logs are archived\n")
        body.append(f"  • its release directory (releases/{row['id']} in the data directory)\n")
        self.app.push_screen(self.app.confirm_dialog.ask(f"Cancel {row['id']}?", body, yes="Cancel deployment"),
                             lambda ok: ok and self.act("cancel", row))

    def action_resume(self) -> None:
        if self.refuse("resume") or (row := self.need_selection()) is None:
            return
        if row["status"] not in RESUMABLE:
            self.app.notify(f"deployment {row['id']} is {row['status']}; only failed or stuck deployments can be "
                            f"resumed", severity="warning")
            return
        self.app.push_screen(self.app.resume_dialog.ask(row),
                             lambda phase: phase and self.act("resume", row, phase))

    def action_rollback(self) -> None:
        if self.refuse("rollback") or (row := self.need_selection()) is None:
            return
        self._ask_rollback(row["service"])

    @work(thread=True, group="action", exit_on_error=False)
    def _ask_rollback(self, service: str) -> None:
        """The engine names the target (or refuses), so the confirmation shows what `rollback` will do."""
        try:
            plan = self.app.engine.rollback_target(service)
        except Exception as e:  # nothing to roll back to: the engine's reason, as a notification
            self.app.call_from_thread(self.app.notify, f"rollback failed: {one_line(e)}", severity="error",
                                      timeout=6)
            return
        finally:
            self.poller.release()
        self.app.call_from_thread(self._confirm_rollback, service, plan)

    def _confirm_rollback(self, service: str, plan: dict) -> None:
        serving, target = plan["serving"], plan["target"]
        body = Text()
        body.append(f"Roll service {service} back?\n\n", style="bold")
        body.append(f"  serving now:  {serving['id'] + ' (' + serving['status'] + ')' if serving else 'nothing'}\n")
        body.append(f"  roll back to: {target}\n\n")
        body.append("The previous release's container is started, routed and health-checked; the one serving now "
                    "is stopped. Cleanup leaves both alone while the rollback runs.", style="dim")
        self.app.push_screen(self.app.confirm_dialog.ask(f"Roll back {service}?", body, yes="Roll back"),
                             lambda ok: ok and self.run_engine("rollback", service, target))

    # ---- marks and bulk actions: space marks, c / C act on every marked row after one confirmation
    def action_mark(self) -> None:
        if self.refuse("mark") or (row := self.need_selection()) is None:
            return
        self.query_one(DeploymentsTable).toggle_mark(row["id"])
        self._titles()

    def action_unmark(self) -> None:
        if self.refuse("unmark"):
            return
        table = self.query_one(DeploymentsTable)
        if table.marked:
            n = len(table.marked)
            table.clear_marks()
            self._titles()
            self.app.notify(f"{n} mark{'s' if n > 1 else ''} cleared")

    def action_clean(self) -> None:
        if self.refuse("clean"):
            return
        if not self.query_one(DeploymentsTable).marked and self.need_selection() is None:
            return
        self.ask_bulk("clean")

    @staticmethod
    def why_not(action: str, row: dict) -> str | None:
        """Why `action` does not apply to this row as the table shows it (the engine checks again), or None."""
        if action == "cancel":
            return None if row["status"] in ACTIVE else f"{row['status']}: only queued or deploying can be cancelled"
        if row["status"] not in CLEANUP_ON:
            return f"{row['status']}: only failed or cancelled deployments are cleaned up"
        cleanup = row.get("cleanup")
        if cleanup != "pending":
            return f"cleanup {cleanup or 'none'}: nothing to run"
        return None

    def ask_bulk(self, action: str) -> None:
        """One confirmation listing every marked (or the selected) deployment: those it applies to, and those
        skipped with why. Nothing applies: a notice, no dialog."""
        table = self.query_one(DeploymentsTable)
        rows = table.marked_rows() or [table.selected()]
        rows = [r for r in rows if r is not None]
        verb, done = {"cancel": ("Cancel", "cancelled"), "clean": ("Clean up now", "cleaned up")}[action]
        reasons = [(r, self.why_not(action, r)) for r in rows]
        go = [r for r, why in reasons if why is None]
        skip = [(r, why) for r, why in reasons if why is not None]
        if not go:
            self.app.notify(f"nothing to {verb.lower()}: " + "; ".join(f"{r['id']} {why}" for r, why in skip),
                            severity="warning")
            return
        n = len(go)
        body = Text()   # every one of them: the dialog's body scrolls
        what = "cancelled (the pipeline stops, then cleanup removes what it made)" if action == "cancel" else \
            "cleaned up now: containers (logs archived), own volumes (backed up), image and release removed"
        body.append(f"{n} deployment{'s' if n > 1 else ''} will be {what}:\n", style="bold")
        for r in go:
            body.append(f"  • {r['id']} {r['service']} ({r['status']}) on {r['host']}\n")
        if skip:
            body.append(f"\nSkipped, not applicable ({len(skip)}):\n", style="bold")
            for r, why in skip:
                body.append(f"  • {r['id']} {r['service']}: {why}\n", style="dim")
        ids = [r["id"] for r in go]
        skipped = [f"{r['id']} ({why.split(':')[0]})" for r, why in skip]
        title = f"{verb} {n} deployment{'s' if n > 1 else ''}?" if n > 1 or skip else f"{verb} {ids[0]}?"
        self.app.push_screen(self.app.confirm_dialog.ask(title, body, yes=f"{verb} {n}"),
                             lambda ok: ok and self._run_bulk(action, go, skipped, done))

    def _run_bulk(self, action: str, rows: list[dict], skipped: list[str], done: str) -> None:
        for r in rows:
            self.pinned[r["id"]] = r["status"]
        self.query_one(DeploymentsTable).clear_marks()
        self._titles()
        self._bulk_call(action, [r["id"] for r in rows], skipped, done)

    @work(thread=True, group="action", exit_on_error=False)
    def _bulk_call(self, action: str, ids: list[str], skipped: list[str], done: str) -> None:
        try:
            results = self.app.engine.for_each(action, ids)
        except Exception as e:  # read-only, the store gone: one line
            self.app.call_from_thread(self.app.notify, f"{action} failed: {one_line(e)}", severity="error")
            return
        finally:
            self.poller.release()
        ok = [r["id"] for r in results if r["ok"]]
        refused = [f"{r['id']} ({r['error']})" for r in results if not r["ok"]]
        parts = [f"{len(ok)} of {len(ids) + len(skipped)} {done}" + (f": {', '.join(ok)}" if ok else "")]
        if skipped:
            parts.append("skipped " + ", ".join(skipped))
        if refused:
            parts.append("refused " + "; ".join(refused))
        severity = "error" if refused else "warning" if skipped else "information"
        self.app.call_from_thread(self.app.notify, "; ".join(parts), severity=severity, timeout=10)
        self.app.call_from_thread(self.poll_now)

    # ---- shell and copy
    def action_shell(self) -> None:
        """x: a shell in the deployment's running container. The engine checks ownership and audits (in a worker);
        the console is then suspended and the terminal is the container's until the shell exits."""
        if self.refuse("shell"):
            return
        containers = self.query_one(ContainersTable)
        picked = containers.selected() if containers.has_focus else None
        row = self.selected()
        dep_id = picked["deployment_id"] if picked else row["id"] if row else None
        if dep_id is None:
            self.app.notify("no deployment selected", severity="warning")
            return
        mine = [c for c in self.containers if c["deployment_id"] == dep_id]
        if mine and not any(c["state"] == "running" for c in mine):
            self.app.notify(f"deployment {dep_id} has no running container ({mine[0]['state']})", severity="warning")
            return
        self._open_shell(dep_id)

    @work(thread=True, group="shell", exclusive=True, exit_on_error=False)
    def _open_shell(self, deployment_id: str) -> None:
        try:
            session = self.app.engine.exec_session(deployment_id)
        except Exception as e:  # not ours, not running, engine down: one line
            self.app.call_from_thread(self.app.notify, f"shell failed: {one_line(e)}", severity="error")
            return
        finally:
            self.poller.release()
        self.app.call_from_thread(self.run_shell, session)

    def run_shell(self, session) -> None:
        from textual.app import SuspendNotSupported
        try:
            with self.app.suspend():
                code = session.run()
        except SuspendNotSupported:
            self.app.notify("this terminal cannot hand itself over to a shell", severity="error")
            return
        except Exception as e:  # no docker CLI: one line
            self.app.notify(f"shell failed: {one_line(e)}", severity="error")
            return
        self.app.notify(f"shell in {session.container} ended" + (f" (exit {code})" if code else ""))

    def action_copy(self) -> None:
        """y: the id under the cursor (or the event line at the bottom of the event log) to the clipboard, as OSC
        52, which the terminal (through SSH, and tmux with set-clipboard on) puts on the operator's clipboard."""
        log = self.query_one(EventLog)
        containers = self.query_one(ContainersTable)
        if log.has_focus:
            text, what = log.bottom_line(), "event line"
        elif containers.has_focus and containers.selected():
            text, what = containers.selected()["id"], "container id"
        else:
            row = self.selected()
            text, what = (row["id"], "deployment id") if row else (None, "")
        if not text:
            self.app.notify("nothing to copy", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        shown = text if len(text) <= 60 else text[:57] + "…"
        self.app.notify(f"copied {what} {shown}")

    def action_details(self) -> None:
        if (row := self.need_selection()) is None:
            return
        from console.tui.screens.details import DetailsScreen
        self.app.push_screen(DetailsScreen(row["id"]))

    def action_logs(self) -> None:
        table = self.query_one(ContainersTable)
        container = table.selected() if table.has_focus or self.show_all_containers else None
        if container is None:
            row = self.selected()
            mine = [c for c in self.containers if row and c["deployment_id"] == row["id"]]
            container = next((c for c in mine if c["state"] == "running"), mine[0] if mine else None)
        if container is None:
            self.app.notify("no container selected (the selected deployment has none)", severity="warning")
            return
        from console.tui.screens.logs import LogsScreen
        self.app.push_screen(LogsScreen(container))

    # ---- the prompt line: `/` filters as you type, `:` opens a view by name
    def action_filter(self) -> None:
        self.open_prompt("/", self.filter.text())

    def action_command(self) -> None:
        self.open_prompt(":", "")

    def open_prompt(self, mode: str, value: str) -> None:
        prompt = self.query_one("#prompt", Input)
        self.prompt_mode = mode
        prompt.placeholder = ("filter: words in id, service, status, host, error (status:failed)   enter keep · "
                              "escape clear" if mode == "/" else "view: deployments, containers, events, hosts")
        prompt.value = value
        prompt.cursor_position = len(value)
        prompt.display = True
        prompt.border_title = mode
        self.set_focus(prompt)    # at once, not after a refresh: keys typed right after `/` land in the bar

    def close_prompt(self) -> None:
        self.prompt_mode = None
        self.query_one("#prompt", Input).display = False
        self.query_one(DeploymentsTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "prompt" and self.prompt_mode == "/":
            event.stop()
            self.set_filter(event.value)

    def prompt_submitted(self, value: str) -> None:
        """Enter in the prompt (called while Enter is handled, see PromptInput): the prompt closes and the table has
        the focus before the next key is read, so a key typed right after Enter acts on the table."""
        mode = self.prompt_mode
        if mode == "/":   # the Changed messages of the last keys may still be queued: the filter is what was typed
            self.set_filter(value)
        self.close_prompt()
        if mode == ":":
            self.open_view(value)

    def set_filter(self, text: str) -> None:
        flt = Filter.parse(text)
        if flt == self.filter:
            return
        self.filter = flt
        self.pinned = {k: v for k, v in self.pinned.items() if v in ACTIVE}
        # narrow at once from the rows on screen; the poll that follows brings rows beyond them
        table = self.query_one(DeploymentsTable)
        rows = list(table.rows_by_id.values())
        table.show([r for r in rows if flt.matches(r) or r["id"] in self.pinned])
        self.matched = table.row_count if flt.words else self.total
        self._titles()
        self.show_containers()
        self.show_failure()
        self.poll_now(containers=False)

    def action_back(self) -> None:
        """escape: closes the prompt (clearing the filter), restores a zoomed pane, clears the filter."""
        if self.prompt_mode is not None:
            if self.prompt_mode == "/":
                self.set_filter("")
            self.close_prompt()
        elif self.maximized is not None:
            self.minimize()
        elif self.filter.words:
            self.set_filter("")

    def open_view(self, name: str) -> None:
        name = name.strip().lstrip(":").lower()
        match = [v for v in VIEWS if name and v.startswith(name)]
        if len(match) != 1:
            self.app.notify(f"no view {name!r}: use {', '.join(VIEWS)}", severity="warning")
            return
        view = match[0]
        if view == "hosts":
            self._load_hosts()
            return
        if self.maximized is not None:
            self.minimize()
        if view == "containers":
            self.show_all_containers = True
            self.show_containers()
            self.query_one(ContainersTable).focus()
        elif view == "events":
            self.query_one(EventLog).focus()
        else:
            self.query_one(DeploymentsTable).focus()

    @work(thread=True, group="hosts", exclusive=True, exit_on_error=False)
    def _load_hosts(self) -> None:
        try:
            rows = self.app.engine.hosts_summary()
        finally:
            self.poller.release()
        for h in rows:
            mine = [c for c in self.containers if c.get("host") == h["name"]]
            h["containers"] = len(mine)
            h["orphans"] = sum(1 for c in mine if c.get("orphan"))
        self.app.call_from_thread(self.app.push_screen, HostsScreen(rows))

    def action_zoom(self) -> None:
        if self.maximized is not None:
            self.minimize()
        elif self.focused is not None:
            self.maximize(self.focused)

    def action_newest(self) -> None:
        table = self.query_one(DeploymentsTable)
        rows = table.rows_by_id
        if rows:
            newest = max(rows.values(), key=lambda r: (r["created_at"] or 0, r["id"]))
            table.move_cursor(row=table.get_row_index(newest["id"]))
            table.focus()

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self._titles()
        self.poll_now(containers=False)

    def action_containers(self) -> None:
        self.show_all_containers = not self.show_all_containers
        self.show_containers()

    def action_event_kind(self) -> None:
        log = self.query_one(EventLog)
        log.set_filter(kind=EVENT_KINDS[(EVENT_KINDS.index(log.kind) + 1) % len(EVENT_KINDS)])
        self._titles()

    def action_event_scope(self) -> None:
        log = self.query_one(EventLog)
        sel = self.selected()
        log.set_filter(deployment_id=None if log.deployment_id or sel is None else sel["id"])
        self._titles()

    def help_rows(self) -> list[tuple[str, str, str]]:
        keys: dict[str, list[str]] = {}
        for key, active in self.active_bindings.items():
            if active.binding.id:
                keys.setdefault(active.binding.id, []).append(self.app.get_key_display(active.binding))
        keymap = getattr(self.app, "key_map", {})   # read-only hides mutating keys from active_bindings
        for binding_id in (MUTATING | MARKS) - set(keys):
            keys[binding_id] = [k.strip() for k in keymap.get(binding_id, ACTIONS[binding_id][0]).split(",")]
        for binding_id, shown in keys.items():   # ctrl+@ is how a terminal sends ctrl+space: said once, as ctrl+space
            if len(shown) > 1:
                keys[binding_id] = [k for k in shown if k not in ("^@", "ctrl+@")]
        rows = []
        for binding_id, (default, _, text) in ACTIONS.items():
            shown = ", ".join(dict.fromkeys(keys.get(binding_id, [default])))
            if binding_id == "details":
                shown += ", enter"
            rows.append((shown, binding_id, text + ("  [mutating]" if binding_id in MUTATING else "")))
        quit_text = ("Quit (ctrl+c too); back from details, logs and dialogs. A leader with deployments in flight "
                     "asks first, then hands them over for resume")
        for binding_id, text in (("help", "This help"), ("quit", quit_text)):
            rows.append((", ".join(dict.fromkeys(keys.get(binding_id, ["?" if binding_id == "help" else "q"]))),
                         binding_id, text))
        rows += [("ctrl+p", "palette", "Command palette: every action by name, with its key"),
                 ("tab / shift+tab", "focus", "Move between deployments, containers and the event log"),
                 ("↑ ↓ j k pgup pgdn", "move", "Move the cursor; in the event log, moving up pauses following"),
                 ("g G home end", "first/last", "First / last row; in the event log end (G) follows again"),
                 ("y / n", "confirm", "In a confirmation: yes / no (escape is no)"),
                 ("escape", "back", "Close the prompt or a dialog, restore a zoomed pane, clear the filter; "
                                    "go back from details and logs")]
        return rows

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.help_rows(), self.read_only))

    # ---- engine calls, in a thread worker
    def act(self, action: str, row: dict, *args) -> None:
        """Run an action on a deployment and keep it in view (whatever the filter) while it runs."""
        self.pinned[row["id"]] = row["status"]
        self.run_engine(action, row["id"], *args)

    def run_engine(self, action: str, *args) -> None:
        self._engine_call(action, *args)

    @work(thread=True, group="action", exit_on_error=False)
    def _engine_call(self, action: str, *args) -> None:
        engine = self.app.engine
        try:
            if action == "cancel":
                dep = engine.cancel(args[0])
                message, severity = f"deployment {dep.id} cancelled; cleanup will remove its resources", "information"
            elif action == "resume":
                dep = engine.resume(args[0], args[1], detach=True)
                message, severity = f"resume of {dep.id} from {args[1]} requested", "information"
            elif action == "rollback":
                self.app.call_from_thread(self.app.notify, f"rolling {args[0]} back…", timeout=3)
                rb = engine.rollback(args[0], to=args[1])
                message = f"{args[0]} rolled back to {rb.to_deployment_id}"
                severity = "information"
            else:
                return
        except Exception as e:  # every engine error is a notification, never a crash
            message, severity = f"{action} failed: {one_line(e)}", "error"
        finally:
            self.poller.release()
        self.app.call_from_thread(self.app.notify, message, severity=severity, timeout=6)
        self.app.call_from_thread(self.poll_now)
