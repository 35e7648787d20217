"""The key bar at the bottom: the keys that work where the focus is, on one line drawn by one widget.

Textual's `Footer` is a container of one `FooterKey` widget per key (13 here). It rebuilds all of them
whenever the screen's bindings are refreshed, which every focus move does, so every pane switch
removed and mounted 13 widgets and laid the screen out again: about 12 ms for the rebuild plus 16 ms
for the layout after it, on a 2-core machine, right after the frame that shows the pane, where the
next key press lands. Each rebuild also leaked a watcher per key (Textual issue #6666), and the 13
keys cost 5-6 ms of every full-screen render.

`KeyBar` draws the same keys as styled text in a single widget. When the keys change it only redraws
its one line; the screen's layout is untouched. It looks like the `Footer` (theme's footer colours,
the command palette key on the right) and clicking a key presses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import events
from textual.app import RenderResult
from textual.content import Content
from textual.screen import Screen
from textual.widget import Widget


@dataclass(frozen=True)
class KeyHint:
    key: str
    """The key as bindings name it ("ctrl+q"): what a click presses."""
    display: str
    """The key as shown ("^q")."""
    description: str
    enabled: bool


def shown_keys(screen: Screen[object]) -> tuple[tuple[KeyHint, ...], KeyHint | None]:
    """The keys the footer shows for the screen's focus, in `Footer`'s order (the first binding of each
    action), and the command palette's key, shown apart."""
    app = screen.app
    hints: dict[str, KeyHint] = {}
    palette: KeyHint | None = None
    for key, (_node, binding, enabled, _tooltip) in screen.active_bindings.items():
        if key == app.COMMAND_PALETTE_BINDING:
            if app.ENABLE_COMMAND_PALETTE:
                palette = KeyHint(key, app.get_key_display(binding), binding.description, enabled)
            continue
        if binding.show and binding.action not in hints:
            hints[binding.action] = KeyHint(key, app.get_key_display(binding), binding.description, enabled)
    return tuple(hints.values()), palette


class KeyBar(Widget, can_focus=False):
    ALLOW_SELECT = False
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-foreground;
    }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keys: tuple[tuple[KeyHint, ...], KeyHint | None] = ((), None)
        self._spans: list[tuple[int, int, KeyHint]] = []
        """(first column, end column, key) of each key drawn, for clicks."""

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if screen is not self.screen:
            return
        keys = shown_keys(screen)
        if keys != self._keys:  # most focus moves leave the keys as they were: nothing to redraw
            self._keys = keys
            self.refresh()

    @property
    def keys(self) -> list[KeyHint]:
        """The keys shown now, the command palette's last."""
        hints, palette = self._keys
        return [*hints, *([palette] if palette else [])]

    def render(self) -> RenderResult:
        hints, palette = self._keys
        parts: list[Content] = []
        self._spans = []
        column = 0
        for hint in hints:
            part = self._key(f" {hint.display} ", f"{hint.description} ", hint.enabled)
            self._spans.append((column, column + part.cell_length, hint))
            column += part.cell_length
            parts.append(part)
        line = Content("").join(parts)
        if palette is None:
            return line
        tail = Content.assemble(("▏", "$foreground 20%"), self._key(palette.display, f" {palette.description} ",
                                                                   palette.enabled))
        width = self.size.width
        line = line.truncate(max(0, width - tail.cell_length))
        gap = max(0, width - line.cell_length - tail.cell_length)
        start = line.cell_length + gap
        self._spans = [span for span in self._spans if span[1] <= start]
        self._spans.append((start + 1, start + tail.cell_length, palette))
        return Content.assemble(line, " " * gap, tail)

    @staticmethod
    def _key(key: str, description: str, enabled: bool) -> Content:
        dim = "" if enabled else " dim"
        return Content.assemble(
            (key, f"bold $footer-key-foreground{dim}"),
            (description, f"$footer-description-foreground{dim}"),
        )

    def on_click(self, event: events.Click) -> None:
        for start, end, hint in self._spans:
            if start <= event.x < end:
                if hint.enabled:
                    self.app.simulate_key(hint.key)
                else:
                    self.app.bell()
                return
