"""Managed containers: those of the selected deployment, or (toggle) every container we manage, orphans marked.

With live stats on, a running container's row shows CPU %, memory and its last minute of CPU as Textual's sparkline
(the columns appear once a row is running). The table asks for streams only for the running rows in its viewport
while the CPU column is in view (`stats_targets`); console/tui/stats.py feeds it once a second."""
from rich.text import Text
from textual.renderables.sparkline import Sparkline as SparklineRenderable

from console import fmt
from console.tui.widgets.keyed_table import KeyedTable

STATE_STYLE = {"running": "green", "exited": "red", "created": "yellow", "restarting": "yellow", "dead": "red"}
STATS_COLUMNS = frozenset({"cpu", "mem", "spark"})
SPARK_WIDTH = 10


def size_text(n: float | None) -> str:
    """Bytes the way `docker stats` abbreviates them, in at most 6 characters: 812K, 12.3M, 1.20G."""
    if n is None:
        return "-"
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            v = n / scale
            return f"{v:.2f}{unit}" if v < 10 and unit == "G" else f"{v:.1f}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return f"{int(n)}B"


def buckets(samples, width: int = SPARK_WIDTH) -> tuple:
    """The samples as at most `width` bars, each the highest of its share (what Textual's Sparkline does with
    max), rounded: an idle container's bars then stay equal from one second to the next and its cells are not
    redrawn."""
    data = list(samples)
    n = min(width, len(data))
    return tuple(round(max(data[i * len(data) // n:(i + 1) * len(data) // n]), 1) for i in range(n))


def stats_cells(series) -> tuple:
    """(CPU %, memory, the CPU sparkline's bars) of one container's series; blanks without one."""
    if series is None:
        return ("", "", ())
    if not series.cpu:
        return ("-", "-", ())
    return (f"{series.cpu[-1]:.1f}%", size_text(series.mem[-1]), buckets(series.cpu))


def container_cells(c: dict, stats: tuple = ("", "", ())) -> tuple:
    return ("ORPHAN" if c.get("orphan") else "", c["state"], c["health"], *stats, c["name"], fmt.age(c["created"]),
            ", ".join(c["ports"]) or "-", c["image"], c["host"], c["id"])


class ContainersTable(KeyedTable):
    """State and health come before the name, so a narrow pane still shows what is wrong."""
    UNIQUE = 6
    COLUMNS = (("orphan", "", 6), ("state", "STATE", 10), ("health", "HEALTH", 9), ("cpu", "CPU", 6),
               ("mem", "MEM", 6), ("spark", "CPU 1m", SPARK_WIDTH), ("name", "NAME", 34), ("created", "CREATED", 8),
               ("ports", "PORTS", 22), ("image", "IMAGE", 30), ("host", "HOST", 8), ("id", "ID", 12))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = STATS_COLUMNS      # until a row runs with stats on
        self.stats_on = False            # set by the stats feed when [console] stats is on
        self.series: dict[tuple[str, str], object] = {}
        self.add_class("stats-view")     # console/tui/stats.py feeds it

    def style_cell(self, column, value, cells):
        if column == "state":
            return Text(value, style=STATE_STYLE.get(value, ""))
        if column == "health":
            return Text(value, style={"healthy": "green", "unhealthy": "bold red", "starting": "yellow"}.get(
                value, "dim"))
        if column == "orphan" and value:
            return Text(value, style="bold red")
        if column == "spark":
            if len(value) < 2:
                return ""
            return SparklineRenderable(list(value), width=min(SPARK_WIDTH, len(value)), summary_function=max)
        if column in ("cpu", "mem"):
            return Text(value, justify="right")
        return value

    def cells(self, row: dict) -> tuple:
        stats = stats_cells(self.series.get((row["host"], row["id"]))) if self.stats_on and \
            row["state"] == "running" else ("", "", ())
        return container_cells(row, stats)

    def show(self, rows: list[dict]) -> dict:
        self._fit_stats(rows)
        return super().show(rows)

    def _fit_stats(self, rows: list[dict]) -> None:
        """The stats columns are there while any row runs and stats are on."""
        want = self.stats_on and any(r["state"] == "running" for r in rows)
        hidden = frozenset() if want else STATS_COLUMNS
        if hidden != self.hidden and self.is_mounted:
            self.set_layout(hidden, self.widths)
        else:
            self.hidden = hidden

    # ---- live stats (console/tui/stats.py calls these once a second)
    def stats_targets(self) -> list[tuple[str, str]]:
        """(host, container id) of the running rows on screen: in the viewport, with the CPU column in view."""
        if not self.stats_on or "cpu" in self.hidden or not self.row_count:
            return []
        x, width = 0, 0
        for column in self.ordered_columns:
            width = column.get_render_width(self)
            if column.key.value == "cpu":
                break
            x += width
        view = self.scrollable_content_region
        if x < self.scroll_x or x + width > self.scroll_x + view.width:   # the CPU column is not wholly in view
            return []
        first = int(self.scroll_y)
        keys = self._order[first:first + max(0, view.height - self.header_height)]
        rows = [self.rows_by_id[k] for k in keys if k in self.rows_by_id]
        return [(r["host"], r["id"]) for r in rows if r["state"] == "running"]

    def show_stats(self, series: dict) -> None:
        self.series = series
        if "cpu" in self.hidden:
            return
        self.redraw()

    def set_stats(self, on: bool) -> None:
        if on != self.stats_on:
            self.stats_on = on
            rows = list(self.rows_by_id.values())
            self._fit_stats(rows)
            self.redraw()
