"""A line of text that never changes size: the status bar, the Config form's labels and its summary.

A plain `Static.update` asks for a layout of the whole screen, because new text may need another size.
These lines are one row high and clipped, so a new text only needs a repaint: typing into the Config form
flips a field's ● mark and rewrites the summary and the status bar on every key, and each of those
layouts cost ~30-90 ms of a 2-core machine with the form's ~360 widgets."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


class OneLine(Static):
    DEFAULT_CSS = "OneLine { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }"

    def show(self, content: str | Content) -> None:
        """Show `content` (unchanged: nothing happens); a repaint, never a layout."""
        if content != self.content:
            self.update(content, layout=False)
