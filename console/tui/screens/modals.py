"""Modal dialogs: confirmation (y/n), the resume phase picker, the help screen and the hosts view."""
import time

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from console import fmt
from console.engine.validate import PHASES


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question: `y` confirms, `n` or escape refuses. The No button has the focus, so enter is safe."""
    BINDINGS = [Binding("y", "answer(True)", "Yes", id="confirm_yes"),
                Binding("n,escape", "answer(False)", "No", id="confirm_no")]

    def __init__(self, title: str, body: Text | str, yes: str = "Yes", **kwargs):
        super().__init__(**kwargs)
        self.title_text, self.body, self.yes = title, body, yes
        self.painted_at: float | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="danger"):
            yield Label(self.title_text, id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(self.body)
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()
        self.call_after_refresh(self._painted)

    def _painted(self) -> None:
        self.painted_at = time.perf_counter()   # the benchmark's key-to-modal end point (wall and UI-thread CPU)
        self.painted_cpu = time.thread_time()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")


class ResumeScreen(ModalScreen[str | None]):
    """The six phases with the recorded one preselected: enter resumes from the highlighted phase."""
    BINDINGS = [Binding("escape,n", "close", "Back", id="resume_back")]

    def __init__(self, deployment: dict, **kwargs):
        super().__init__(**kwargs)
        self.deployment = deployment

    def compose(self) -> ComposeResult:
        dep = self.deployment
        recorded = dep.get("phase") or PHASES[0]
        with Vertical(id="dialog"):
            yield Label(f"Resume deployment {dep['id']} of {dep['service']}", id="dialog-title")
            body = Text()
            body.append(f"status {dep['status']}, recorded phase {recorded}\n")
            if dep.get("error"):
                body.append(f"{dep['error'][:150]}\n", style="red")
            body.append("Pick the phase to run from; the engine runs it and every later phase.", style="dim")
            yield Static(body, id="dialog-text")
            options = []
            for i, phase in enumerate(PHASES):
                label = Text(f"{i + 1}/6  {phase}")
                if phase == recorded:
                    label.append("   ← recorded", style="bold yellow")
                options.append(Option(label, id=phase))
            yield OptionList(*options, id="phases")
            yield Label("[b]enter[/] resume from the highlighted phase   [b]escape[/] back", id="dialog-hint")

    def on_mount(self) -> None:
        phases = self.query_one(OptionList)
        recorded = self.deployment.get("phase") or PHASES[0]
        phases.highlighted = PHASES.index(recorded) if recorded in PHASES else 0
        phases.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_close(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key (as currently bound, keymap applied) and what it does; the text wraps to the screen and scrolls."""
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help_close")]

    def __init__(self, rows: list[tuple[str, str, str]], read_only: bool, **kwargs):
        super().__init__(**kwargs)
        self.rows = rows
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_edge=False, pad_edge=False, header_style="bold")
        table.add_column("KEY", style="bold", no_wrap=True, max_width=20)
        table.add_column("ACTION", style="cyan", no_wrap=True)
        table.add_column("WHAT IT DOES", ratio=1)
        for key, binding_id, text in self.rows:
            table.add_row(key, binding_id, text)
        with Vertical(id="help"):
            yield Label("Keys" + ("   (READ-ONLY: mutating keys are refused)" if self.read_only else ""),
                        id="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(table, id="help-table")
            yield Label('Rebind in config.toml:  \\[keys]  cancel = "x"    [b]↑ ↓[/] scroll  [b]escape[/] close',
                        id="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)


class HostsScreen(ModalScreen[None]):
    """`:hosts`: each Docker engine's reachability, last error, deployments and containers."""
    BINDINGS = [Binding("escape,q", "close", "Close", id="hosts_close")]

    def __init__(self, hosts: list[dict], **kwargs):
        super().__init__(**kwargs)
        self.hosts = hosts

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_edge=False, pad_edge=False, header_style="bold")
        for name, kw in (("HOST", {"no_wrap": True}), ("STATE", {"no_wrap": True}), ("SEEN", {"no_wrap": True}),
                         ("DEPLOYMENTS", {}), ("CONTAINERS", {"no_wrap": True}), ("URL / LAST ERROR", {"ratio": 1})):
            table.add_column(name, **kw)
        for h in self.hosts:
            up = h.get("reachable")
            state = Text("up", "green") if up else Text("down", "bold red") if up is False else Text("?", "yellow")
            counts = h.get("deployments") or {}
            active = sum(counts.get(s, 0) for s in ("queued", "deploying"))
            deps = f"{sum(counts.values())} ({active} active, {counts.get('failed', 0)} failed)"
            ctrs = f"{h.get('containers', 0)}" + (f" ({h['orphans']} orphan)" if h.get("orphans") else "")
            where = Text((h["url"] or "local socket") + (" (default)" if h.get("default") else ""))
            if h.get("last_error"):
                where.append("\n" + h["last_error"], style="red")
            seen = fmt.age(h.get("last_seen_at"))
            table.add_row(Text(h["name"], style="bold"), state, seen + (" ago" if seen != "-" else ""), deps, ctrs,
                          where)
        with Vertical(id="hosts"):
            yield Label(f"Hosts {len(self.hosts)}", id="dialog-title")
            with VerticalScroll(id="hosts-body"):
                yield Static(table)
            yield Label("[b]escape[/] close", id="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
