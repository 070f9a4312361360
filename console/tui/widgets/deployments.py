"""The deployments table: one row per deployment, keyed by its id, status coloured (● marks the release a service's
`current` points at), phase as `3/6 COPYING_FILES` (`3/6 COPY` when narrow), marked rows (space) reversed. It fits 80
columns: below WIDE the service, phase and age columns shrink and HOST is hidden while there is only one host (with
several, CLEANUP gives way to HOST)."""
from rich.text import Text

from console.tui.data import SLOW_MARK, STATUS_WIDTH, deployment_cells
from console.tui.widgets.keyed_table import KeyedTable

STATUS_STYLE = {"deploying": "bold yellow", "queued": "cyan", "success": "green", "failed": "red",
                "degraded": "bold red", "cancelled": "magenta", "superseded": "dim"}
CLEANUP_STYLE = {"pending": "yellow", "running": "bold yellow", "done": "dim", "kept": "cyan", "abandoned": "red"}
MARK_STYLE = "reverse bold"   # a marked row: seen without colour too
WIDE = 120
NARROW_WIDTHS = {"service": 10, "phase": 10, "host": 7}


class DeploymentsTable(KeyedTable):
    COLUMNS = (("id", "ID", 12), ("service", "SERVICE", 14), ("status", "STATUS", STATUS_WIDTH), ("phase", "PHASE", 21),
               ("age", "AGE", 6), ("duration", "DURATION", 8), ("cleanup", "CLEANUP", 7), ("host", "HOST", 10))
    short = False
    host_count = 1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.marked: set[str] = set()   # ids marked with space: c and C act on all of them

    def show(self, rows: list[dict]) -> dict:
        self.marked &= {r["id"] for r in rows}   # a mark never outlives its row in view: nothing unseen is acted on
        return super().show(rows)

    def toggle_mark(self, key: str) -> None:
        self.marked ^= {key}
        self.redraw()

    def clear_marks(self) -> None:
        self.marked.clear()
        self.redraw()

    def marked_rows(self) -> list[dict]:
        """The marked rows, in table order."""
        return [self.rows_by_id[k] for k in self._order if k in self.marked]

    def style_cell(self, column, value, cells):
        styled = self._style_cell(column, value, cells)
        if len(cells) > len(self.COLUMNS):     # marked
            styled = styled.copy() if isinstance(styled, Text) else Text(value)
            styled.stylize(MARK_STYLE)
        return styled

    def _style_cell(self, column, value, cells):
        if column == "status":
            status = value.removeprefix("●").lstrip()
            t = Text(value, style=STATUS_STYLE.get(status, ""))
            if status != value:
                t.stylize("bold green", 0, 1)
            return t
        if column == "cleanup":
            return Text(value, style=CLEANUP_STYLE.get(value, "dim"))
        if column == "duration" and value.endswith(SLOW_MARK):
            t = Text(value)
            t.stylize("bold yellow", len(value) - 1)
            return t
        if column == "phase" and cells[2].endswith("deploying"):
            return Text(value, style="yellow")
        return value

    def cells(self, row: dict) -> tuple[str, ...]:
        cells = deployment_cells(row, self.short)
        return cells + ("marked",) if row["id"] in self.marked else cells

    def fit(self, width: int | None = None, host_count: int | None = None) -> None:
        """Pick the column layout for the table's width and the number of hosts."""
        if host_count is not None:
            self.host_count = host_count
        width = width if width is not None else self.size.width
        short = bool(width) and width < WIDE
        if short != self.short:
            self.short = short
            rows = self.rows_by_id
            self._cells = {k: self.cells(rows[k]) for k in self._order if k in rows}
            self._order = [k for k in self._order if k in self._cells]
        # one host: HOST says nothing; several hosts on a narrow screen: HOST matters more than CLEANUP (in details)
        hidden = {"host"} if self.host_count <= 1 else {"cleanup"} if short else set()
        self.set_layout(hidden, NARROW_WIDTHS if short else {})

    def on_resize(self, event) -> None:
        self.fit(event.size.width)
