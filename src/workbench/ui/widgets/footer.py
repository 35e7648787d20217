"""A `Footer` that neither rebuilds itself for nothing nor leaks its old keys.

Textual 8.2.8's `Footer` recomposes whenever the screen's bindings are refreshed, which every focus move
does (about 3 times per pane switch here), even when the keys it shows stay the same. Each recompose
builds new `FooterKey`s with `data_bind(compact=Footer.compact)`, and each of those adds an entry to the
Footer's `compact` watcher list that is only pruned when `compact` changes, which never happens
(Textual issue #6666). Measured in the workbench: the list grew to 6,831 entries for 9 keys shown, the
heap to 1 M GC-tracked objects, and full garbage collections paused the UI for up to 0.64 s.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class WorkbenchFooter(Footer):
    """Recomposes only when the keys it would show change, and drops its removed keys' watchers."""

    _shown: object = None
    """What the last compose showed (see `_shown_bindings`); None until the bindings are ready."""

    def _shown_bindings(self) -> object:
        """Everything `Footer.compose` reads, as one comparable value."""
        app = self.app
        active = self.screen.active_bindings
        keys = tuple(
            (key, binding, app.get_key_display(binding), enabled, tooltip)
            for key, (_, binding, enabled, tooltip) in active.items()
            if binding.show or key == app.COMMAND_PALETTE_BINDING
        )
        return keys, self.show_command_palette, app.ENABLE_COMMAND_PALETTE, self.combine_groups

    def compose(self) -> ComposeResult:
        # Recorded here, not in recompose(): the bindings may change while the old keys are removed.
        self._shown = self._shown_bindings() if self._bindings_ready else None
        for widget in super().compose():
            if isinstance(widget, FooterKey) and "compact" in (widget._reactive_connect or {}):  # bound ones only
                # A FooterKey starts compact and is then bound to the Footer's (not compact): the class
                # change restyled every key on every rebuild, 12 keys x ~1.3 ms per pane switch.
                # Starting with the Footer's value makes both the initial watch and the binding no-ops.
                widget.set_reactive(FooterKey.compact, self.compact)
            yield widget

    async def recompose(self) -> None:
        if self._shown is not None and self.is_attached and self._shown_bindings() == self._shown:
            return  # the same keys: rebuilding them would only feed the leak below
        await super().recompose()
        self._prune_watchers()

    def _prune_watchers(self) -> None:
        """Drop watcher entries of widgets no longer in the DOM (the replaced `FooterKey`s)."""
        watchers: dict[str, list[tuple[object, object]]] = getattr(self, "__watchers", {})
        for entries in watchers.values():
            entries[:] = [(node, callback) for node, callback in entries if getattr(node, "is_attached", True)]

    @property
    def watcher_count(self) -> int:
        """Entries in the `compact` watcher list (for tests and diagnostics)."""
        return len(getattr(self, "__watchers", {}).get("compact", []))
