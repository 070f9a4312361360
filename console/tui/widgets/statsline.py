"""One line of live stats for a deployment's running container on the details screen: CPU % and memory, each with
its last minute as Textual's Sparkline widget. Hidden while the deployment has no running container."""
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Sparkline

from console.tui.widgets.containers import size_text


class StatsLine(Horizontal):
    DEFAULT_CSS = """
    StatsLine { height: 1; padding: 0 1; display: none; }
    StatsLine Label { width: auto; padding: 0 1 0 0; }
    StatsLine #stats-cpu { width: 11; }
    StatsLine Sparkline { width: 1fr; margin: 0 2 0 0; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.container: dict | None = None
        self.stats_on = False
        self.add_class("stats-view")     # console/tui/stats.py feeds it

    def compose(self) -> ComposeResult:
        yield Label("CPU -", id="stats-cpu")
        yield Sparkline([], id="stats-cpu-spark")
        yield Label("MEM -", id="stats-mem")
        yield Sparkline([], id="stats-mem-spark")

    def follow(self, container: dict | None) -> None:
        """The running container to show (None hides the line)."""
        self.container = container
        self.display = container is not None and self.stats_on

    def set_stats(self, on: bool) -> None:
        if on != self.stats_on:
            self.stats_on = on
            self.follow(self.container)

    def stats_targets(self) -> list[tuple[str, str]]:
        c = self.container
        return [(c["host"], c["id"])] if self.stats_on and c is not None else []

    def show_stats(self, series: dict) -> None:
        c = self.container
        s = series.get((c["host"], c["id"])) if c is not None else None
        if s is None:
            return
        if not s.cpu:
            self.query_one("#stats-cpu", Label).update(f"CPU {s.error or '-'}")
            return
        self.query_one("#stats-cpu", Label).update(f"CPU {s.cpu[-1]:5.1f}%")
        limit = f"/{size_text(s.limit)}" if s.limit else ""
        self.query_one("#stats-mem", Label).update(f"MEM {size_text(s.mem[-1])}{limit}")
        self.query_one("#stats-cpu-spark", Sparkline).data = list(s.cpu)
        self.query_one("#stats-mem-spark", Sparkline).data = list(s.mem)
