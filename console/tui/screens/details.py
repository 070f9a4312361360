"""The details screen of one deployment: the six phases of its latest attempt (earlier attempts collapsed below), the
error in full, its cleanup task, containers and events.

Polled like the main screen (thread worker, render, then reschedule), so a running or resumed attempt is followed
live: the timeline switches to the new attempt as soon as it starts and its events keep arriving. q or escape go
back."""
import time

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.renderables.sparkline import Sparkline as SparklineRenderable
from textual.screen import Screen
from textual.widgets import Collapsible, Static
from textual.worker import Worker, WorkerState

from console import fmt
from console.engine.deployments import ACTIVE
from console.engine.validate import PHASES
from console.tui.data import one_line
from console.tui.screens.logs import FollowLog
from console.tui.widgets.containers import ContainersTable
from console.tui.widgets.deployments import CLEANUP_STYLE, STATUS_STYLE
from console.tui.widgets.footer import Footer
from console.tui.widgets.statsline import StatsLine
from storage.clock import now

OUTCOME_STYLE = {"done": "green", "skipped": "cyan", "failed": "bold red", "cancelled": "magenta", None: "yellow"}
LEVEL_STYLE = {"error": "bold red", "warning": "yellow", "debug": "dim"}
BAR = 10
TREND_WIDE, TREND_NARROW = 20, 12   # one bar per deployment when wide (20 of them), buckets when narrow
WIDE = 120


def clock(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"


def head_text(d: dict) -> Text:
    t = Text()
    t.append(f"{d['id']}", style="bold")
    t.append(f"  {d['service']}  ")
    t.append(d["status"], style=STATUS_STYLE.get(d["status"], ""))
    t.append(f"  {fmt.phase_progress(d['phase'], d['status'])}  host {d['host']}  image {d.get('image') or '-'}\n")
    t.append(f"created {clock(d['created_at'])} ({fmt.age(d['created_at'])} ago)  finished "
             f"{clock(d['finished_at'])}  run {fmt.run_time(d)}"
             + (f"  resumed {d['attempts']}×" if d.get("attempts") else "")
             + (f"  owner {d['owner']}" if d.get("owner") else ""), style="dim")
    if d.get("error"):
        t.append("\nerror: ", style="bold red")
        t.append(d["error"], style="red")   # the Static wraps it: the whole reason, at any width
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


def _took(p: dict) -> float | None:
    if p["duration"] is not None:
        return p["duration"]
    return now() - p["started_at"] if p["outcome"] is None and p["started_at"] else None


def _bar(took: float | None, longest: float, running: bool) -> str:
    if running:
        return "…"
    return "█" * max(1, round(BAR * took / longest)) if took else ""


def timeline(phases: list[dict], status: str) -> tuple[int, list[tuple], list[dict]]:
    """(latest attempt, its six rows, the earlier attempts' runs). Each row is the phase's run in the latest
    attempt; a phase a resume skipped shows the earlier run it builds on (its attempt number says so); a phase not
    reached is pending while the deployment is active, else `not run`."""
    latest = max((p["attempt"] for p in phases), default=0)
    current = {p["phase"]: p for p in phases if p["attempt"] == latest}   # a re-run within an attempt: the last
    earlier = [p for p in phases if p["attempt"] < latest]
    carried = {p["phase"]: p for p in earlier}
    first = min((PHASES.index(name) for name in current if name in PHASES), default=len(PHASES))
    longest = max([_took(p) or 0 for p in phases] + [0.001])
    rows = []
    for i, name in enumerate(PHASES):
        p = current.get(name) or (carried.get(name) if i < first else None)
        label = f"{i + 1}/6 {name}"
        if p is None:
            state = "pending" if status in ACTIVE else "not run"
            rows.append((label, "-", Text(state, style="dim"), "-", "-", "", ""))
            continue
        took, running = _took(p), p["outcome"] is None
        outcome = Text(p["outcome"] or "running", style=OUTCOME_STYLE.get(p["outcome"], ""))
        rows.append((label, str(p["attempt"]), outcome, clock(p["started_at"]), fmt.duration(took),
                     _bar(took, longest, running), p["detail"] or ""))
    return latest, rows, earlier


def trend_cell(durations: list | None, width: int):
    """The phase's durations over the service's last deployments (oldest left) as Textual's sparkline; `-` with
    fewer than two runs to compare."""
    data = [d for d in durations or () if d is not None]
    if len(data) < 2:
        return Text("-", style="dim")
    return SparklineRenderable(data, width=min(width, len(data)), summary_function=max)


def trends_title(t: dict | None) -> str:
    """The phase box's subtitle: failure rate and median run of the service's last deployments."""
    if not t or not t["ids"]:
        return ""
    n = len(t["ids"])
    rate = "no run ended" if t["failure_rate"] is None else \
        f"{t['failed']} of {t['ended']} failed ({t['failure_rate']:.0%})"
    median = f" · median run {fmt.duration(t['median_run'])}" if t.get("median_run") is not None else ""
    return f"last {n} of {t['service']}: {rate}{median}"


def phase_table(rows: list[tuple], dim_attempts: int | None = None, trends: dict | None = None,
                narrow: bool = False) -> Table:
    """The phase rows; with `trends` a TREND column (each phase over the service's last deployments) and, when
    narrow, without STARTED and the bar so the trend and DETAIL still fit 80 columns."""
    table = Table(box=None, padding=(0, 1), pad_edge=False, expand=True, show_edge=False, header_style="bold")
    width = TREND_NARROW if narrow else TREND_WIDE
    columns = [("PHASE", {"width": 21}), ("ATT", {"width": 3, "justify": "right"}), ("OUTCOME", {"width": 9}),
               ("STARTED", {"width": 8}), ("TOOK", {"width": 6}), ("", {"width": BAR})]
    drop = {3, 5} if trends is not None and narrow else set()
    if trends is not None:
        columns.append((f"LAST {len(trends['ids'])}", {"width": width}))
    columns.append(("DETAIL", {"ratio": 1}))
    for i, (name, kwargs) in enumerate(columns):
        if i not in drop:
            table.add_column(name, no_wrap=True, overflow="ellipsis", **kwargs)
    for row in rows:
        style = "dim" if dim_attempts is not None and row[1] not in ("-", str(dim_attempts)) else ""
        cells = list(row)
        if trends is not None:
            name = row[0].split(" ", 1)[-1]
            cells.insert(6, trend_cell(trends["phases"].get(name), width))
        table.add_row(*[c for i, c in enumerate(cells) if i not in drop], style=style)
    return table


def earlier_title(earlier: list[dict]) -> str:
    attempts = sorted({p["attempt"] for p in earlier})
    last = earlier[-1]
    return (f"Earlier attempts: {', '.join(map(str, attempts))} (attempt {last['attempt']} ended in "
            f"{last['phase']}: {last['outcome'] or 'stopped'})")


def event_text(e: dict) -> str:
    level = {"error": "ERR", "warning": "WRN", "info": "   ", "debug": "dbg"}.get(e["level"], e["level"][:3].upper())
    kind = "" if e["kind"] in ("deployment", "build") else f"{e['kind']}: "
    return (f"{time.strftime('%H:%M:%S', time.localtime(e['time']))} {level} {kind}{e['message']}"
            + (f"  [{e['actor']}]" if e.get("actor") else ""))


class DetailsScreen(Screen):
    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back", id="back"),
                Binding("l", "logs", "Logs", id="details_logs")]

    def __init__(self, deployment_id: str, **kwargs):
        super().__init__(**kwargs)
        self.deployment_id = deployment_id
        self.last_event_id = 0
        self.loaded = False
        self.attempt: int | None = None
        self.trends: dict | None = None    # the service's last deployments (engine.trends), shown in the timeline
        self._timer = None

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="detail-head")
        yield Static("", id="phases")
        with Collapsible(title="Earlier attempts", id="detail-earlier"):
            yield Static("", id="detail-earlier-runs")
        yield Static("", id="detail-cleanup")
        yield StatsLine(id="detail-stats")
        with Horizontal(id="detail-bottom"):
            yield ContainersTable(id="detail-containers")
            yield FollowLog(id="detail-events", max_lines=5000, wrap_indent=13)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#phases").border_title = "Phase timeline"
        self.query_one("#detail-earlier").display = False
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
        # the store connection stays with the executor's thread, reused by the next poll (see Poller.release)
        engine = self.app.engine
        data = engine.show(self.deployment_id, events=False)
        data["events"] = engine.events(since_id=since_id, deployment_id=self.deployment_id, limit=2000)
        try:
            data["trends"] = engine.trends(data["service"])
        except Exception as e:  # the timeline is worth showing without them
            data["trends"], data["trends_error"] = None, one_line(e)
        containers, errors = [], []
        try:  # a deployment's containers are all on its own host: one list call there
            containers = [c for c in engine.containers(all=True, host=data["host"])
                          if c["deployment_id"] == data["id"]]
        except Exception as e:
            errors.append(f"{data['host']}: {one_line(e)}")
        return data, containers, errors

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
            self._timer = self.set_timer(self.app.engine.settings.console.poll_interval, self.poll)

    def show(self, data: dict, containers: list[dict], errors: list[str]) -> None:
        if not data.get("started_at") and data["phases"]:
            data["started_at"] = data["phases"][0]["started_at"]
        self.query_one("#detail-head", Static).update(head_text(data))
        latest, rows, earlier = timeline(data["phases"], data["status"])
        phases = self.query_one("#phases", Static)
        self.trends = data.get("trends")
        phases.update(phase_table(rows, dim_attempts=latest, trends=self.trends, narrow=self.size.width < WIDE))
        running = data["status"] == "deploying"
        phases.border_title = (f"Phase timeline · attempt {latest}" + (" (running)" if running else "")
                               + (" · resumed" if latest else ""))
        phases.border_subtitle = trends_title(self.trends) or data.get("trends_error") or ""
        box = self.query_one("#detail-earlier", Collapsible)
        box.display = bool(earlier)
        if earlier:
            box.title = earlier_title(earlier)
            self.query_one("#detail-earlier-runs", Static).update(phase_table([
                (f"{PHASES.index(p['phase']) + 1}/6 {p['phase']}" if p["phase"] in PHASES else p["phase"],
                 str(p["attempt"]), Text(p["outcome"] or "stopped", style=OUTCOME_STYLE.get(p["outcome"], "")),
                 clock(p["started_at"]), fmt.duration(p["duration"]), "", p["detail"] or "") for p in earlier]))
        self.query_one("#detail-cleanup", Static).update(cleanup_text(data.get("cleanup")))
        table = self.query_one(ContainersTable)
        table.show(containers)
        self.query_one(StatsLine).follow(next((c for c in containers if c["state"] == "running"), None))
        table.border_title = f"Containers {len(containers)}" + (f" · unreachable: {'; '.join(errors)}"
                                                                if errors else "")
        events = data["events"]
        if events:
            self.query_one("#detail-events", FollowLog).add_lines([event_text(e) for e in events])
            self.last_event_id = events[-1]["id"]
        self.attempt = latest
        self.loaded = True

    def action_logs(self) -> None:
        container = self.query_one(ContainersTable).selected()
        if container is None:
            self.app.notify("no container", severity="warning")
            return
        from console.tui.screens.logs import LogsScreen
        self.app.push_screen(LogsScreen(container))
