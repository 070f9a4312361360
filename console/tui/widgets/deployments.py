"""The deployments table: one row per deployment, keyed by its id, status coloured (● marks the release a service's
`current` points at), phase as `3/6 COPYING_FILES` (`3/6 COPY` when narrow). It fits 80 columns: below WIDE the
service, phase and age columns shrink and HOST is hidden while there is only one host (with several, CLEANUP gives
way to HOST)."""
from rich.text import Text

from console.tui.data import deployment_cells
from console.tui.widgets.keyed_table import KeyedTable

STATUS_STYLE = {"deploying": "bold yellow", "queued": "cyan", "success": "green", "failed": "red",
                "degraded": "bold red", "cancelled": "magenta", "superseded": "dim"}
CLEANUP_STYLE = {"pending": "yellow", "running": "bold yellow", "done": "dim", "kept": "cyan", "abandoned": "red"}
WIDE = 120
NARROW_WIDTHS = {"service": 10, "phase": 10, "host": 7}


class DeploymentsTable(KeyedTable):
    COLUMNS = (("id", "ID", 12), ("service", "SERVICE", 14), ("status", "STATUS", 10), ("phase", "PHASE", 21),
               ("age", "AGE", 6), ("duration", "DURATION", 8), ("cleanup", "CLEANUP", 7), ("host", "HOST", 10))
    short = False
    host_count = 1

    def style_cell(self, column, value, cells):
        if column == "status":
            status = value.removeprefix("● ")
            t = Text(value, style=STATUS_STYLE.get(status, ""))
            if status != value:
                t.stylize("bold green", 0, 1)
            return t
        if column == "cleanup":
            return Text(value, style=CLEANUP_STYLE.get(value, "dim"))
        if column == "phase" and cells[2].endswith("deploying"):
            return Text(value, style="yellow")
        return value

    def cells(self, row: dict) -> tuple[str, ...]:
        return deployment_cells(row, self.short)

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
