"""Route engine events on the UI thread: answers go to the callback of the request that asked, the
rest (training progress, state) to every subscriber."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workbench.protocol import Error, Event, Result


@dataclass
class Pending:
    on_result: Callable[[Result], None] | None = None
    on_error: Callable[[Error], None] | None = None
    on_stream: Callable[[Event], None] | None = None


@dataclass
class EngineBridge:
    send_fn: Callable[[str, dict[str, Any]], str] | None = None
    pending: dict[str, Pending] = field(default_factory=dict)
    subscribers: list[Callable[[Event], None]] = field(default_factory=list)

    def request(
        self,
        cmd: str,
        args: dict[str, Any] | None = None,
        on_result: Callable[[Result], None] | None = None,
        on_error: Callable[[Error], None] | None = None,
        on_stream: Callable[[Event], None] | None = None,
    ) -> str | None:
        """Send a request; returns its id, or None (after calling on_error) when no engine is connected."""
        if self.send_fn is None:
            if on_error:
                on_error(Error(type="no_engine", message="The engine is not running yet.",
                               hint="Wait for the status bar to say ready."))
            return None
        try:
            rid = self.send_fn(cmd, args or {})
        except ConnectionError as exc:
            if on_error:
                on_error(Error(type="engine_gone", message=str(exc), hint="Restart the engine (ctrl+r)."))
            return None
        self.pending[rid] = Pending(on_result, on_error, on_stream)
        return rid

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        self.subscribers.append(callback)

    def dispatch(self, event: Event) -> None:
        pending = self.pending.get(event.id or "") if event.id else None
        if pending is not None:
            if isinstance(event, Result):
                self.pending.pop(event.id or "", None)
                if pending.on_result:
                    pending.on_result(event)
                return
            if isinstance(event, Error):
                self.pending.pop(event.id or "", None)
                if pending.on_error:
                    pending.on_error(event)
                return
            if pending.on_stream:
                pending.on_stream(event)
            return
        for callback in list(self.subscribers):
            callback(event)

    def fail_all(self, error: Error) -> None:
        """The engine went away: every open request ends with this error."""
        pending, self.pending = self.pending, {}
        for p in pending.values():
            if p.on_error:
                p.on_error(error)
