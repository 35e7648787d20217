"""Every place the UI relies on a Textual, textual-plotext or Rich internal, gathered here.

Each is a private attribute or a behaviour that is not documented API, used because the public path
cost measured time (see the comment where it is used). `tests/unit/test_textual_internals.py` checks
that each still exists in the installed versions, so an upgrade that removes one fails loudly in CI
instead of quietly breaking the screen. The versions they were checked against are pinned in
pyproject.toml.
"""

from __future__ import annotations

from typing import Any, cast

from textual.content import Content
from textual.widgets._toggle_button import ToggleButton

# 1. Screen.focused is a repainting reactive (textual/screen.py); WorkbenchScreen (ui/app.py) redeclares
#    it without repaint. Checked: Screen has a `focused` Reactive.
# 2. The key bar reads `Screen.active_bindings` (a public property, but its tuple layout
#    (node, binding, enabled, tooltip) is not documented); ui/widgets/key_bar.py.
# 3. FocusScroll (ui/widgets/focus_scroll.py) restyles itself alone with `app.stylesheet.update_nodes`.
# 4. The loss chart (ui/widgets/loss_chart.py) draws with textual-plotext's Plot off the UI thread and
#    so repeats what PlotextPlot.render does: `Plot._set_size` and `PlotextPlot._get_plotext_theme_name`.
# 5. workbench.textwidth replaces `rich.cells.load_cell_table` and clears Rich's width caches.
# 6. StateRadioButton (ui/widgets/toggles.py) draws its own glyph through ToggleButton's `_button`.
# 7. read_esc_digit_as_alt (below) edits Textual's key table, `textual._ansi_sequences.ANSI_SEQUENCES_KEYS`.


def toggle_button_glyph(button: ToggleButton, inner: str) -> Content:
    """ToggleButton's drawing of its button, with `inner` as the character inside it."""
    button.BUTTON_INNER = inner
    drawn: Content = ToggleButton._button.fget(button)  # type: ignore[attr-defined]
    return drawn




ESC_DIGITS = tuple(f"\x1b{digit}" for digit in "0123456789")


def read_esc_digit_as_alt() -> None:
    """Read Esc followed by a digit as Alt+digit (the pane keys), as xterm means it.

    Textual's key table maps Esc then a digit to what macOS's Option key types on a US layout (Esc 6 is
    "§", Esc 1 "¡"). But Esc+digit is how Alt+digit arrives from a Linux terminal (xterm's
    metaSendsEscape), from tmux (M-6), from macOS with "Option as Meta", and when Esc and a digit are
    typed quickly over a slow link: the pane switch typed "§" into the text box being left. Without the
    entries, Textual's parser reads the Esc as Alt on the digit. Typing "§" itself is unchanged: a
    terminal sends the character, not Esc and a digit."""
    from textual import _ansi_sequences

    table = cast("dict[str, Any]", _ansi_sequences.ANSI_SEQUENCES_KEYS)  # typed Mapping; a dict
    for sequence in ESC_DIGITS:
        table.pop(sequence, None)


def _internals() -> tuple[tuple[str, Any, str], ...]:
    import rich.cells
    from textual import _ansi_sequences
    from textual.css.stylesheet import Stylesheet
    from textual.screen import Screen
    from textual_plotext import PlotextPlot
    from textual_plotext.plot import Plot

    return (
        ("Screen.focused reactive", Screen, "focused"),
        ("Screen.active_bindings", Screen, "active_bindings"),
        ("Stylesheet.update_nodes", Stylesheet, "update_nodes"),
        ("Plot._set_size", Plot, "_set_size"),
        ("PlotextPlot._get_plotext_theme_name", PlotextPlot, "_get_plotext_theme_name"),
        ("rich.cells.load_cell_table", rich.cells, "load_cell_table"),
        ("rich.cells.get_character_cell_size", rich.cells, "get_character_cell_size"),
        ("rich.cells.cached_cell_len", rich.cells, "cached_cell_len"),
        ("ToggleButton._button", ToggleButton, "_button"),
        ("ToggleButton.BUTTON_INNER", ToggleButton, "BUTTON_INNER"),
        ("textual._ansi_sequences.ANSI_SEQUENCES_KEYS", _ansi_sequences, "ANSI_SEQUENCES_KEYS"),
    )


def missing() -> list[str]:
    """The internals above that the installed versions no longer have."""
    return [what for what, owner, attribute in _internals() if not hasattr(owner, attribute)]
