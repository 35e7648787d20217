"""Garbage collection at moments the user does not feel.

CPython collects when allocations cross a threshold, which in a TUI means in the middle of handling a
key: measured while the engine trains, a third of the pane switches had a full collection in them (about
56 ms each, on top of a ~55 ms switch). The UI turns automatic collection off and calls `tick()` from a
timer instead: young generations are collected on every tick (cheap), the full collection only when no
key has been pressed for `quiet_s`, and in any case after `max_full_interval_s`, so memory held by
reference cycles stays bounded however busy the user is: Textual's layouts leave cycles behind (about
1,200 objects per pane switch, measured), and a full collection's pause grows with what it has to walk
(about 0.6 ms per 1,000 objects here). Plain Python, no Textual: testable alone.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


class IdleCollector:
    def __init__(
        self,
        quiet_s: float = 0.5,
        full_interval_s: float = 10.0,
        max_full_interval_s: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        collect: Callable[[int], int] = gc.collect,
    ) -> None:
        self.quiet_s = quiet_s
        self.full_interval_s = full_interval_s
        self.max_full_interval_s = max_full_interval_s
        self._clock = clock
        self._collect = collect
        self._last_input = clock()
        self._last_full = clock()
        self.full_collections = 0
        self.young_collections = 0

    def start(self) -> None:
        """Take over from the automatic collector."""
        gc.disable()

    def stop(self) -> None:
        gc.enable()

    def user_input(self) -> None:
        """A key or mouse event: the next full collection waits until the user pauses."""
        self._last_input = self._clock()

    @property
    def last_input(self) -> float:
        """The clock's time of the last `user_input()` (of the collector's creation before any)."""
        return self._last_input

    def tick(self) -> int:
        """Called periodically (a few times a second). Returns the generation collected."""
        now = self._clock()
        since_full = now - self._last_full
        quiet = now - self._last_input >= self.quiet_s
        if since_full >= self.max_full_interval_s or (quiet and since_full >= self.full_interval_s):
            self._collect(2)
            self._last_full = now
            self.full_collections += 1
            return 2
        self._collect(1)  # generations 0 and 1: the young objects, a few ms at most
        self.young_collections += 1
        return 1
