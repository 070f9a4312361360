"""Managed containers: those of the selected deployment, or (toggle) every container we manage, orphans marked."""
from rich.text import Text

from console import fmt
from console.tui.widgets.keyed_table import KeyedTable

STATE_STYLE = {"running": "green", "exited": "red", "created": "yellow", "restarting": "yellow", "dead": "red"}


def container_cells(c: dict) -> tuple[str, ...]:
    return ("ORPHAN" if c.get("orphan") else "", c["state"], c["health"], c["name"], fmt.age(c["created"]),
            ", ".join(c["ports"]) or "-", c["image"], c["host"], c["id"])


class ContainersTable(KeyedTable):
    """State and health come before the name, so a narrow pane still shows what is wrong."""
    UNIQUE = 3
    COLUMNS = (("orphan", "", 6), ("state", "STATE", 10), ("health", "HEALTH", 9), ("name", "NAME", 34),
               ("created", "CREATED", 8), ("ports", "PORTS", 22), ("image", "IMAGE", 30), ("host", "HOST", 8),
               ("id", "ID", 12))

    def style_cell(self, column, value, cells):
        if column == "state":
            return Text(value, style=STATE_STYLE.get(value, ""))
        if column == "health":
            return Text(value, style={"healthy": "green", "unhealthy": "bold red", "starting": "yellow"}.get(
                value, "dim"))
        if column == "orphan" and value:
            return Text(value, style="bold red")
        return value

    def cells(self, row: dict) -> tuple[str, ...]:
        return container_cells(row)
