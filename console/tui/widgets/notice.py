"""One line for notices (what `app.notify` says): short-lived, the newest replaces the one before, so notices never
stack over the tables or the event log. Hidden while there is nothing to say."""
from rich.text import Text
from textual.widgets import Static

STYLE = {"information": ("●", "bold green"), "warning": ("▲", "bold yellow"), "error": ("✗", "bold red")}


class NoticeLine(Static):
    DEFAULT_CSS = """
    NoticeLine { height: 1; padding: 0 1; background: $panel; display: none; text-wrap: nowrap;
                 text-overflow: ellipsis; }
    """
    _timer = None

    def show(self, message: str, severity: str = "information", title: str = "", timeout: float = 4.0) -> None:
        mark, style = STYLE.get(severity, STYLE["information"])
        t = Text()
        t.append(f"{mark} ", style=style)
        if title:
            t.append(f"{title}: ", style="bold")
        t.append(" ".join(message.split()), style="" if severity == "information" else style.split()[-1])
        self.message = message
        self.update(t)
        self.display = True
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(max(1.0, timeout), self.clear)

    def clear(self) -> None:
        self._timer = None
        self.message = None
        self.update("")
        self.display = False
