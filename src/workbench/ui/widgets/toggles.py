"""Radio buttons whose state shows in the text, not in colour alone: ● chosen, ○ not (a colour-blind
user, a monochrome terminal, a screenshot pasted into an issue all tell them apart)."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import RadioButton

from workbench.ui import textual_internals


class StateRadioButton(RadioButton):
    @property
    def _button(self) -> Content:
        return textual_internals.toggle_button_glyph(self, "●" if self.value else "○")
