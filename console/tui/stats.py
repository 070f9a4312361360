"""Live stats in the console: once a second, ask the widgets on the current screen which running containers they
show (`stats_targets`), have the engine stream exactly those (`engine.stats.watch`), and hand each widget the last
minute of samples (`show_stats`). A screen without such widgets (logs, a dialog, help) watches nothing, so every
stream stops; so does a row scrolled out of view or a pane hidden by a zoom.

The streams run in the engine's threads (console/engine/stats.py); this tick only diffs sets and updates cells.
`[console] stats = false` turns it off."""
import logging

from textual.css.query import NoMatches
from textual.errors import NoWidget

log = logging.getLogger(__name__)
STATS_VIEW = "stats-view"     # the CSS class of a widget that shows live stats
TICK_S = 1.0                  # the engine sends a sample a second


class StatsFeed:
    def __init__(self, app, interval: float = TICK_S):
        self.app = app
        self.on = bool(app.engine.settings.console.stats)
        self.watched: set[tuple[str, str]] = set()
        self.ticks = 0
        self._timer = app.set_interval(interval, self.tick) if self.on else None

    def hub(self):
        return self.app.engine.stats

    def views(self) -> list:
        screen = self.app.screen
        try:
            views = list(screen.query(f".{STATS_VIEW}"))
        except NoMatches:
            return []
        shown = []
        for w in views:
            w.set_stats(True)      # a view shows its stats columns / line only once stats are on
            try:   # laid out on screen now: not hidden by a zoom, not display:none, not scrolled away
                if not screen.find_widget(w).visible_region.area:
                    continue
            except NoWidget:
                continue
            shown.append(w)
        return shown

    def tick(self) -> None:
        self.ticks += 1
        try:
            views = self.views()
            wanted = {t for v in views for t in v.stats_targets()}
            if wanted != self.watched:
                self.hub().watch(wanted)
                self.watched = wanted
            if not wanted:
                return
            series = self.hub().series(wanted)
            with self.app.batch_update():
                for v in views:
                    v.show_stats(series)
        except Exception:  # stats are a nicety: never a crash, said once in the log
            log.exception("live stats")

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self.watched:
            self.hub().watch(())
            self.watched = set()
