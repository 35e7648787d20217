"""A scrolling container whose focus changes restyle only itself.

Textual restyles a widget *and every descendant* when it gains or loses focus (`watch_has_focus` ->
`App.update_styles`). The Config form is a focusable scroll region (so that the pane's keys and the
digits that switch panes act, instead of typing into a field) holding about 290 widgets: each focus
change restyled all of them, about 0.13 s on a 2-core machine, on every switch to or from the pane and
at start-up. No rule in the workbench or in Textual's widgets styles a descendant by this container's
focus, so its own styles (and its scrollbars') are all that can change.
"""

from __future__ import annotations

from textual.containers import VerticalScroll


class FocusScroll(VerticalScroll):
    def watch_has_focus(self, _has_focus: bool) -> None:
        self.app.stylesheet.update_nodes([self], animate=True)
