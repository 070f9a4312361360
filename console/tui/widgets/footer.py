"""Textual's Footer, recomposed only when what it would show changes.

Pushing a modal over a screen fires that screen's bindings signal, and the stock Footer then rebuilds every key
widget of a screen nobody sees (about 30 ms of UI thread for the main screen's keys, twice per dialog). This one
skips the rebuild while its screen is not the active one, and skips it on return when the keys are unchanged.
"""
from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    _shown: tuple | None = None

    def _signature(self) -> tuple | None:
        try:
            active = self.screen.active_bindings
        except Exception:  # not attached yet: let the stock footer decide
            return None
        return tuple((key, b.binding.description, b.binding.show, b.enabled, b.tooltip) for key, b in active.items())

    def bindings_changed(self, screen) -> None:
        if self.is_attached and self.app.screen is not self.screen and self._bindings_ready:
            return  # hidden under a dialog: nothing to redraw
        signature = self._signature()
        if signature is not None and signature == self._shown and self._bindings_ready:
            return
        self._shown = signature
        super().bindings_changed(screen)
