"""A DataTable updated by diff on stable row keys: changed cells get `update_cell`, new rows `add_row`, gone rows
`remove_row`, and the cursor stays on the same row (and the viewport on the same rows) while others come and go.
`clear()` is used only when most rows changed, since it resets the cursor."""
from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable


class KeyedTable(DataTable):
    """Rows move with j/k as well as the arrows; g/Home and G/End go to the first/last row (not sideways)."""
    BINDINGS = [Binding("j", "cursor_down", show=False), Binding("k", "cursor_up", show=False),
                Binding("g,home", "scroll_top", "First row", show=False),
                Binding("G,end", "scroll_bottom", "Last row", show=False)]
    COLUMNS: tuple[tuple[str, str, int | None], ...] = ()   # (key, label, width)
    UNIQUE = 0   # index of a column whose value is unique per row (sort() sees values, not row keys)

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._cells: dict[str, tuple] = {}
        self._order: list[str] = []
        self.hidden: frozenset[str] = frozenset()
        self.widths: dict[str, int] = {}
        self.rows_by_id: dict[str, dict] = {}   # the rows last shown, by key

    def row_key(self, row: dict) -> str:
        return row["id"]

    def cells(self, row: dict) -> tuple[str, ...]:
        """The plain text of a row's cells, in COLUMNS order."""
        raise NotImplementedError

    def show(self, rows: list[dict]) -> dict:
        """Show these rows (keyed by `row_key`), in this order. Returns counts of what changed (see `apply`)."""
        self.rows_by_id = {self.row_key(r): r for r in rows}
        return self.apply(list(self.rows_by_id), {k: self.cells(r) for k, r in self.rows_by_id.items()})

    def redraw(self) -> dict:
        """Show the rows last shown again, their cells computed anew (the clock moved, a mark or a setting changed)."""
        return self.apply(list(self._order), {k: self.cells(self.rows_by_id[k]) for k in self._order})

    def selected(self) -> dict | None:
        """The row under the cursor, or None."""
        key = self.selected_key()
        return self.rows_by_id.get(key) if key else None

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        for key, label, width in self.COLUMNS:
            if key not in self.hidden:
                self.add_column(label, key=key, width=self.widths.get(key, width))

    def _shown(self, cells: tuple) -> list[tuple[str, str]]:
        return [(key, value) for (key, _, _), value in zip(self.COLUMNS, cells) if key not in self.hidden]

    def set_layout(self, hidden=frozenset(), widths: dict[str, int] | None = None) -> bool:
        """Hide columns / change widths (rare: a resize across a breakpoint, a second host). Rebuilds the table and
        keeps the cursor on the same row. Returns whether anything changed."""
        hidden, widths = frozenset(hidden), dict(widths or {})
        if (hidden, widths) == (self.hidden, self.widths):
            return False
        self.hidden, self.widths = hidden, widths
        selected = self.selected_key()
        self.clear(columns=True)
        self._add_columns()
        for key in self._order:
            self.add_row(*self._styled(self._cells[key]), key=key)
        if selected in self._cells:
            self.move_cursor(row=self._order.index(selected))
        return True

    def style_cell(self, column: str, value: str, cells: tuple) -> str | Text:
        return value

    def _styled(self, cells: tuple) -> list:
        return [self.style_cell(key, value, cells) for key, value in self._shown(cells)]

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        except Exception:  # the cursor is past the last row for a moment
            return None

    def apply(self, order: list[str], cells: dict[str, tuple]) -> dict:
        """Make the table show `order` (keys) with `cells`. Returns counts of what changed."""
        selected = self.selected_key()
        old_row, old_scroll = self.cursor_row, self.scroll_y
        removed = [k for k in self._order if k not in cells]
        added = [k for k in order if k not in self._cells]
        counts = {"added": len(added), "removed": len(removed), "updated": 0, "rebuilt": False}
        if self._order and len(added) + len(removed) > max(50, len(self._order) // 2):
            counts["rebuilt"] = True
            self.clear()
            for key in order:
                self.add_row(*self._styled(cells[key]), key=key)
        else:
            for key in removed:
                self.remove_row(key)
            columns = [c[0] for c in self.COLUMNS]
            for key in order:
                old = self._cells.get(key)
                new = cells[key]
                if old is None or old == new:
                    continue
                counts["updated"] += 1
                # values past the columns (a mark) style every cell: all of them are drawn again when they change
                restyle = old[len(columns):] != new[len(columns):]
                for column, a, b in zip(columns, old, new):
                    if (a != b or restyle) and column not in self.hidden:
                        self.update_cell(key, column, self.style_cell(column, b, new))
            for key in added:
                self.add_row(*self._styled(cells[key]), key=key)
            current = [k for k in self._order if k in cells] + added
            if current != order:
                # sort() sees cell values, not row keys: the UNIQUE column's value stands for the row
                position = {str(cells[k][self.UNIQUE]): i for i, k in enumerate(order)}
                self.sort(self.COLUMNS[self.UNIQUE][0], key=lambda value: position.get(str(value), 0))
        self._cells = {k: cells[k] for k in order}
        self._order = list(order)
        if selected is not None and selected in self._cells:
            index = order.index(selected)
            if index != self.cursor_row or counts["rebuilt"]:
                shift = index - old_row
                self.move_cursor(row=index, scroll=False)
                target = max(0.0, old_scroll + shift) if old_scroll > 0 or counts["rebuilt"] else old_scroll
                self.call_after_refresh(self._settle, target)
        return counts

    def _settle(self, scroll_y: float) -> None:
        self.scroll_to(y=scroll_y, animate=False, immediate=True)
        self._scroll_cursor_into_view()
