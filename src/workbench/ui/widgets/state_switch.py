"""A Switch that says its state in words beside the slider, "on" or "off": Textual's Switch shows it by
the slider's side and colour alone, which a colour-blind user, a monochrome terminal or a screenshot
pasted into an issue can miss (the radio buttons do the same with ● / ○, `toggles.py`)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import RenderResult
from textual.geometry import Size
from textual.widgets import Switch

SLIDER = 4  # columns: Switch's own content width
WORD = 4  # a space and "off", the longer word: the width does not change when toggled


class StateSwitch(Switch):
    def render(self) -> RenderResult:
        grid = Table.grid()
        grid.add_column(width=SLIDER)
        grid.add_column(width=WORD)
        word = Text(" on", style="bold") if self.value else Text(" off")
        slider = super().render()  # Switch renders a Rich renderable (a ScrollBarRender), not a Visual
        grid.add_row(slider, word)  # type: ignore[arg-type]
        return grid

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return SLIDER + WORD
