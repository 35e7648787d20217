"""Textual messages that carry engine events and GPU samples from worker threads to the UI thread."""

from __future__ import annotations

from textual.message import Message

from workbench.gpu import Reading
from workbench.protocol import Event


class EngineEvent(Message):
    """One event from the engine (posted from the client's reader thread; never dropped)."""

    def __init__(self, event: Event, generation: int = 0) -> None:
        super().__init__()
        self.event = event
        self.generation = generation
        """Which engine sent it: events of an engine that was replaced are ignored."""


class GpuSample(Message):
    """One reading of every GPU (or, without one, of the host's CPU and RAM). Coalesced: a newer sample
    replaces an unhandled older one."""

    def __init__(self, reading: Reading) -> None:
        super().__init__()
        self.reading = reading

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpuSample)


class ConfigChanged(Message):
    """The run configuration changed; `data_affecting` when the Data pane must re-render."""

    def __init__(self, data_affecting: bool) -> None:
        super().__init__()
        self.data_affecting = data_affecting
