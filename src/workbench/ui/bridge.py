"""The panes' handle on the engine, on the UI thread: typed requests go out, and each answer comes back
to the callback of the request that asked, parsed into its answer model; the events that belong to no
request (training progress, state) go to every subscriber.

The App owns the bridge and hands it down to the panes it builds (attributes down); panes never reach
into the App for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from workbench.protocol import Error, Event, Result

if TYPE_CHECKING:
    from workbench.requests import Answer, Args, Expects

AnswerT = TypeVar("AnswerT", bound="Answer")
ErrorHandler = Callable[[Error], None]
StreamHandler = Callable[[Event], None]


@dataclass
class Pending:
    args: Args
    on_answer: Callable[[Any], None] | None = None
    on_error: ErrorHandler | None = None
    on_stream: StreamHandler | None = None


@dataclass
class EngineBridge:
    send_fn: Callable[[Args], str] | None = None
    """The connected client's `send`; None while no engine is connected."""
    pending: dict[str, Pending] = field(default_factory=dict)
    subscribers: list[Callable[[Event], None]] = field(default_factory=list)

    @property
    def connected(self) -> bool:
        return self.send_fn is not None

    def request(
        self,
        args: Expects[AnswerT],
        on_answer: Callable[[AnswerT], None] | None = None,
        on_error: ErrorHandler | None = None,
        on_stream: StreamHandler | None = None,
    ) -> str | None:
        """Send a command; returns its id, or None (after calling on_error) when no engine is connected."""
        command = cast("Args", args)
        if self.send_fn is None:
            if on_error:
                on_error(Error(type="no_engine", message="The engine is not running yet.",
                               hint="Wait for the status bar to say ready."))
            return None
        try:
            rid = self.send_fn(command)
        except ConnectionError as exc:
            if on_error:
                on_error(Error(type="engine_gone", message=str(exc), hint="Restart the engine (ctrl+p: Restart)."))
            return None
        self.pending[rid] = Pending(command, on_answer, on_error, on_stream)
        return rid

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        self.subscribers.append(callback)

    def dispatch(self, event: Event) -> None:
        pending = self.pending.get(event.id) if event.id else None
        if pending is None:
            for callback in list(self.subscribers):
                callback(event)
            return
        if isinstance(event, Result):
            del self.pending[event.id or ""]
            if pending.on_answer:
                pending.on_answer(pending.args.answer.model_validate(event.data))
        elif isinstance(event, Error):
            del self.pending[event.id or ""]
            if pending.on_error:
                pending.on_error(event)
        elif pending.on_stream:
            pending.on_stream(event)

    def fail_all(self, error: Error) -> None:
        """The engine went away: every open request ends with this error."""
        pending, self.pending = self.pending, {}
        for p in pending.values():
            if p.on_error:
                p.on_error(error)
