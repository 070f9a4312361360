"""The deployments table: one row per deployment, keyed by its id, status coloured, phase as `3/6 COPYING_FILES`."""
from rich.text import Text

from console.tui.data import deployment_cells
from console.tui.widgets.keyed_table import KeyedTable

STATUS_STYLE = {"deploying": "bold yellow", "queued": "cyan", "success": "green", "failed": "red",
                "degraded": "bold red", "cancelled": "magenta", "superseded": "dim"}
CLEANUP_STYLE = {"pending": "yellow", "running": "bold yellow", "done": "dim", "kept": "cyan"}


class DeploymentsTable(KeyedTable):
    COLUMNS = (("id", "ID", 12), ("service", "SERVICE", 12), ("status", "STATUS", 10), ("phase", "PHASE", 21),
               ("age", "AGE", 6), ("duration", "DURATION", 8), ("cleanup", "CLEANUP", 7), ("host", "HOST", 10))

    def style_cell(self, column, value, cells):
        if column == "status":
            return Text(value, style=STATUS_STYLE.get(value, ""))
        if column == "cleanup":
            return Text(value, style=CLEANUP_STYLE.get(value, "dim"))
        if column == "phase" and cells[2] == "deploying":
            return Text(value, style="yellow")
        return value

    def show(self, rows: list[dict]) -> dict:
        self.rows_by_id = {r["id"]: r for r in rows}
        return self.apply([r["id"] for r in rows], {r["id"]: deployment_cells(r) for r in rows})

    def selected(self) -> dict | None:
        key = self.selected_key()
        return getattr(self, "rows_by_id", {}).get(key) if key else None
