"""Textual's Footer, keys by priority and recomposed only when what it would show changes.

Keys are laid out by priority (help and quit first, then PRIORITY, then the rest), so at 80 columns the keys cut
off at the right edge are the least needed, never `?` or `q`. Pushing a modal over a screen fires that screen's
bindings signal, and the stock Footer then rebuilds every key widget of a screen nobody sees (about 30 ms of UI
thread for the main screen's keys, twice per dialog). This one skips the rebuild while its screen is not the active
one, and skips it on return when the keys are unchanged.
"""
from textual.app import ComposeResult
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey

PRIORITY = ("help", "quit", "filter", "details", "cancel", "resume", "rollback", "logs", "shell", "zoom")


class Footer(TextualFooter):
    # the compact footer gives every key a margin-right of 1, the palette key docked at the right edge too: the last
    # column then shows the key scrolled under it ("…^p paletteo" at 80 columns). Padding instead covers that column.
    DEFAULT_CSS = """
    Footer.-compact FooterKey.-command-palette { margin-right: 0; padding-right: 1; }
    """
    _shown: tuple | None = None

    def __init__(self, **kwargs):
        kwargs.setdefault("compact", True)
        super().__init__(**kwargs)

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

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        by_action: dict[str, tuple] = {}
        for _, binding, enabled, tooltip in active.values():
            if binding.show and binding.action not in by_action:
                by_action[binding.action] = (binding, enabled, tooltip)
        rank = {name: i for i, name in enumerate(PRIORITY)}
        ordered = sorted(by_action.values(), key=lambda b: rank.get(b[0].id or "", len(rank)))
        self.styles.grid_size_columns = len(ordered)
        for binding, enabled, tooltip in ordered:
            yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description, binding.action,
                            disabled=not enabled, tooltip=tooltip).data_bind(compact=TextualFooter.compact)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            try:
                _, binding, enabled, tooltip = active[self.app.COMMAND_PALETTE_BINDING]
            except KeyError:
                return
            yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description, binding.action,
                            classes="-command-palette", disabled=not enabled,
                            tooltip=binding.tooltip or binding.description)
