"""The details screen of one deployment: phase timeline with durations, its events, cleanup task and containers.
Polled like the main screen (thread worker, render, then reschedule); escape goes back."""
import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Log, Static
from textual.worker import Worker, WorkerState

from console.tui.widgets.footer import Footer

from console import fmt
from console.engine.validate import PHASES
from console.tui.data import one_line
from console.tui.widgets.containers import ContainersTable
from console.tui.widgets.deployments import CLEANUP_STYLE, STATUS_STYLE
from console.tui.widgets.eventlog import event_line

OUTCOME_STYLE = {"done": "green", "skipped": "cyan", "failed": "bold red", "cancelled": "magenta", None: "yellow"}


def clock(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"


def head_text(d: dict) -> Text:
    t = Text()
    t.append(f"{d['id']}", style="bold")
    t.append(f"  {d['service']}  ")
    t.append(d["status"], style=STATUS_STYLE.get(d["status"], ""))
    t.append(f"  {fmt.phase_progress(d['phase'], d['status'])}  host {d['host']}  image {d.get('image') or '-'}\n")
    t.append(f"created {clock(d['created_at'])} ({fmt.age(d['created_at'])} ago)  finished "
             f"{clock(d['finished_at'])}  run {fmt.run_time(d)}  resume attempts {d.get('attempts', 0)}"
             f"  owner {d.get('owner') or '-'}", style="dim")
    if d.get("error"):
        t.append(f"\nerror: {d['error']}", style="red")
    return t


def cleanup_text(c: dict | None) -> Text:
    t = Text("cleanup: ", style="bold")
    if not c:
        return t.append("no task (nothing to clean up unless it fails or is cancelled)", style="dim")
    t.append(c["state"], style=CLEANUP_STYLE.get(c["state"], ""))
    t.append(f" ({c['reason']}), attempts {c['attempts']}, due {clock(c['due_at'])}")
    if c.get("finished_at"):
        t.append(f", finished {clock(c['finished_at'])}")
    if c.get("last_error"):
        t.append(f", last error: {c['last_error']}", style="red")
    return t


def timeline(phases: list[dict], status: str) -> list[tuple]:
    """One row per phase run (attempts in order), and the phases not run yet as pending."""
    longest = max([p["duration"] or 0 for p in phases] + [0.001])
    rows = []
    for p in phases:
        bar = "█" * max(1, round(12 * (p["duration"] or 0) / longest)) if p["duration"] else "…"
        rows.append((f"{PHASES.index(p['phase']) + 1}/6 {p['phase']}" if p["phase"] in PHASES else p["phase"],
                     str(p["attempt"]), Text(p["outcome"] or "running", style=OUTCOME_STYLE.get(p["outcome"], "")),
                     clock(p["started_at"]), fmt.duration(p["duration"]), bar, (p["detail"] or "")[:80]))
    ran = {p["phase"] for p in phases}
    if status in ("queued", "deploying"):
        for i, name in enumerate(PHASES):
            if name not in ran:
                rows.append((f"{i + 1}/6 {name}", "-", Text("pending", style="dim"), "-", "-", "", ""))
    return rows


class DetailsScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="back"),
                Binding("l", "logs", "Logs", id="details_logs")]

    def __init__(self, deployment_id: str, **kwargs):
        super().__init__(**kwargs)
        self.deployment_id = deployment_id
        self.last_event_id = 0
        self.loaded = False
        self._timer = None

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="detail-head")
        yield DataTable(id="phases", cursor_type="none")
        yield Static("", id="detail-cleanup")
        with Horizontal(id="detail-bottom"):
            yield ContainersTable(id="detail-containers")
            yield Log(id="detail-events", max_lines=5000)
        yield Footer()

    def on_mount(self) -> None:
        phases = self.query_one("#phases", DataTable)
        for label, width in (("PHASE", 21), ("ATTEMPT", 7), ("OUTCOME", 9), ("STARTED", 8), ("DURATION", 8),
                             ("", 12), ("DETAIL", 80)):
            phases.add_column(label, width=width)
        phases.border_title = "Phase timeline"
        self.query_one("#detail-containers").border_title = "Containers"
        self.query_one("#detail-events").border_title = "Events"
        self.query_one(ContainersTable).focus()
        self.poll()

    def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()

    def poll(self) -> None:
        self._fetch(self.last_event_id)

    @work(thread=True, group="details", exit_on_error=False, exclusive=True)
    def _fetch(self, since_id: int):
        engine = self.app.engine
        try:
            data = engine.show(self.deployment_id, events=False)
            data["events"] = engine.events(since_id=since_id, deployment_id=self.deployment_id, limit=2000)
            containers, errors = [], []
            try:  # a deployment's containers are all on its own host: one list call there
                containers = [c for c in engine.containers(all=True, host=data["host"])
                              if c["deployment_id"] == data["id"]]
            except Exception as e:
                errors.append(f"{data['host']}: {one_line(e)}")
            return data, containers, errors
        finally:
            try:
                engine.store.db.close()
            except Exception:
                pass

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "details":
            return
        if event.state == WorkerState.SUCCESS:
            try:
                self.show(*event.worker.result)
            except Exception as e:
                self.app.notify(f"details: {one_line(e)}", severity="error")
        elif event.state == WorkerState.ERROR:
            self.app.notify(f"details of {self.deployment_id}: {one_line(event.worker.error)}", severity="error")
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR) and self.is_attached:
            self._timer = self.set_timer(self.app.engine.settings.poll_interval, self.poll)

    def show(self, data: dict, containers: list[dict], errors: list[str]) -> None:
        self.loaded = True
        if not data.get("started_at") and data["phases"]:
            data["started_at"] = data["phases"][0]["started_at"]
        self.query_one("#detail-head", Static).update(head_text(data))
        phases = self.query_one("#phases", DataTable)
        phases.clear()
        for row in timeline(data["phases"], data["status"]):
            phases.add_row(*row)
        self.query_one("#detail-cleanup", Static).update(cleanup_text(data.get("cleanup")))
        table = self.query_one(ContainersTable)
        table.show(containers)
        table.border_title = f"Containers {len(containers)}" + (f" · unreachable: {'; '.join(errors)}"
                                                                if errors else "")
        events = data["events"]
        if events:
            log = self.query_one("#detail-events", Log)
            log.write_lines([event_line(e) for e in events], scroll_end=log.is_vertical_scroll_end)
            self.last_event_id = events[-1]["id"]

    def action_logs(self) -> None:
        container = self.query_one(ContainersTable).selected()
        if container is None:
            self.app.notify("no container", severity="warning")
            return
        from console.tui.screens.logs import LogsScreen
        self.app.push_screen(LogsScreen(container))
