"""Following a container's log. The stream is read in a thread worker and written to a `Log` from there via
call_from_thread; leaving the screen closes the stream (docker-py's CancellableStream.close works across threads)."""
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Log, Static

from console.tui.widgets.footer import Footer

from console.tui.data import one_line


class LogsScreen(Screen):
    CSS = """
    #logs-head { height: 1; padding: 0 1; background: $panel; }
    #logs { height: 1fr; border: round $primary; }
    """
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="logs_back"),
                Binding("end", "follow", "Follow", id="logs_follow")]

    def __init__(self, container: dict, **kwargs):
        super().__init__(**kwargs)
        self.container = container
        self.stream = None
        self.closed = False

    def compose(self) -> ComposeResult:
        c = self.container
        yield Static(f"logs of {c['name']} ({c['id']}) on {c['host']} · {c['state']} · following "
                     f"(scroll up to pause, end to follow)", id="logs-head")
        yield Log(id="logs", max_lines=20000)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Log).focus()
        self._follow()

    def on_unmount(self) -> None:
        self.closed = True
        stream = self.stream
        if stream is not None and hasattr(stream, "close"):
            try:
                stream.close()
            except Exception:
                pass

    def action_follow(self) -> None:
        self.query_one(Log).scroll_end(animate=False)

    def _write(self, text: str) -> None:
        if self.closed:
            return
        log = self.query_one(Log)
        log.write(text, scroll_end=log.is_vertical_scroll_end)

    @work(thread=True, group="logs", exit_on_error=False)
    def _follow(self) -> None:
        c = self.container
        try:
            self.stream = self.app.engine.container_logs(c["id"], host=c["host"], follow=True)
            if self.closed:
                self.stream.close()
                return
            for chunk in self.stream:
                if self.closed:
                    break
                self.app.call_from_thread(self._write, chunk.decode(errors="replace"))
            if not self.closed:
                self.app.call_from_thread(self._write, "\n— log stream ended (container stopped) —\n")
        except Exception as e:  # the operator sees a line, the console keeps running
            if not self.closed:
                self.app.call_from_thread(self.app.notify, f"logs of {c['name']}: {one_line(e)}", severity="error")
        finally:
            try:
                self.app.engine.store.db.close()
            except Exception:
                pass
