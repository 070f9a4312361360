"""Modal dialogs: confirmation (y/n), the resume phase picker, the help screen and the hosts view."""

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from console import fmt
from console.engine.deployments import ACTIVE
from console.engine.host_specs import LOOPBACK
from console.engine.validate import PHASES


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question: `y` confirms, `n` or escape refuses. The No button has the focus, so enter is safe.

    Built once and reused (the app installs one): `ask()` swaps the words before each push, so opening a dialog
    costs a screen switch, not composing and styling a new widget tree."""
    BINDINGS = [Binding("y", "answer(True)", "Yes", id="confirm_yes"),
                Binding("n,escape", "answer(False)", "No", id="confirm_no")]

    def __init__(self, title: str = "", body: Text | str = "", yes: str = "Yes", **kwargs):
        super().__init__(**kwargs)
        self.title_text, self.body, self.yes = title, body, yes

    def ask(self, title: str, body: Text | str, yes: str = "Yes") -> "ConfirmScreen":
        self.title_text, self.body, self.yes = title, body, yes
        if self.is_mounted:
            self.query_one("#dialog-title", Label).update(title)
            self.query_one("#dialog-text", Static).update(body)
            self.query_one("#yes", Button).label = f"{yes} (y)"
            self.query_one("#dialog-body", VerticalScroll).scroll_home(animate=False)
        return self

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="danger"):
            yield Label(self.title_text, id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(self.body, id="dialog-text")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_screen_resume(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")


class ResumeScreen(ModalScreen[str | None]):
    """The six phases with the recorded one preselected: enter resumes from the highlighted phase. Built once and
    reused: `ask(deployment)` fills it in before each push."""
    BINDINGS = [Binding("escape,n", "close", "Back", id="resume_back")]

    def __init__(self, deployment: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.deployment = deployment or {"id": "", "service": "", "status": "", "phase": None}

    def ask(self, deployment: dict) -> "ResumeScreen":
        self.deployment = deployment
        if self.is_mounted:
            self.query_one("#dialog-title", Label).update(self._title())
            self.query_one("#dialog-text", Static).update(self._body())
            phases = self.query_one(OptionList)
            for i, prompt in enumerate(self._prompts()):
                phases.replace_option_prompt_at_index(i, prompt)
            self._highlight()
        return self

    def _recorded(self) -> str:
        return self.deployment.get("phase") or PHASES[0]

    def _title(self) -> str:
        return f"Resume deployment {self.deployment['id']} of {self.deployment['service']}"

    def _body(self) -> Text:
        dep = self.deployment
        body = Text()
        body.append(f"status {dep['status']}, recorded phase {self._recorded()}\n")
        if dep.get("error"):
            body.append(f"{dep['error']}\n", style="red")
        body.append("Pick the phase to run from; the engine runs it and every later phase.", style="dim")
        return body

    def _prompts(self) -> list[Text]:
        prompts = []
        for i, phase in enumerate(PHASES):
            label = Text(f"{i + 1}/6  {phase}")
            if phase == self._recorded():
                label.append("   ← recorded", style="bold yellow")
            prompts.append(label)
        return prompts

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self._title(), id="dialog-title")
            yield Static(self._body(), id="dialog-text")
            yield OptionList(*(Option(p, id=phase) for p, phase in zip(self._prompts(), PHASES)),
                             id="phases")
            yield Label("[b]enter[/] resume from the highlighted phase   [b]escape[/] back", id="dialog-hint")

    def _highlight(self) -> None:
        recorded = self._recorded()
        self.query_one(OptionList).highlighted = PHASES.index(recorded) if recorded in PHASES else 0

    def on_mount(self) -> None:
        self._highlight()

    def on_screen_resume(self) -> None:
        self.query_one(OptionList).focus()

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
            yield Label('Rebind in config.toml:  \\[keys]  cancel = "w"    [b]↑ ↓[/] scroll  [b]escape[/] close',
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
            active = sum(counts.get(s, 0) for s in ACTIVE)
            deps = f"{sum(counts.values())} ({active} active, {counts.get('failed', 0)} failed)"
            ctrs = f"{h.get('containers', 0)}" + (f" ({h['orphans']} orphan)" if h.get("orphans") else "")
            where = Text((h["url"] or "local socket") + (" (default)" if h.get("default") else ""))
            if h.get("address") not in (None, LOOPBACK):   # where its containers publish, for a proxy elsewhere
                where.append(f" · publish {h['address']}", style="dim")
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
