"""Widgets built after the first frame. The hidden panes of the workbench (their modules, plotext among
them, and about 110 widgets) and the Config form's sections below the fold (about 160 widgets) cost
start-up time for nothing the user can see yet. Like `textual.lazy.Lazy`, but it takes a factory, so
that even a pane's module is imported only when it is mounted, and a deferred section is built from the
state as it is then."""

from __future__ import annotations

from collections.abc import Callable

from textual.message import Message
from textual.widget import Widget


class Deferred(Widget):
    """Placeholder that, after the first refresh, mounts `factory()` in its place, removes itself and
    posts `Deferred.Built` (it bubbles up: the App counts what is still being built)."""

    DEFAULT_CSS = "Deferred { display: none; }"

    class Built(Message):
        def __init__(self, widget: Widget) -> None:
            super().__init__()
            self.widget = widget

    def __init__(self, factory: Callable[[], Widget]) -> None:
        super().__init__()
        self._factory = factory

    def on_mount(self) -> None:
        self.call_after_refresh(self._replace)

    async def _replace(self) -> None:
        parent = self.parent
        if not isinstance(parent, Widget) or not self.is_attached:
            return  # the app closed before its first frame
        widget = self._factory()
        await parent.mount(widget, after=self)
        # Posted by the parent, which stays: this placeholder is about to be removed with its queue.
        parent.post_message(self.Built(widget))
        await self.remove()
