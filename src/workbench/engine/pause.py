"""Pausing a training run between two optimizer steps, so the user can try the adapter as it is now.

The training thread calls `gate()` at every step boundary; when a pause was asked for, it stops there
and waits (or until the run is stopped). Meanwhile other threads probe the live model under `probe()`,
which puts the model in inference mode and back, random state included (`inference_mode.paused_for_inference`),
so the run goes on exactly as if it had not paused. Paused time is not training time: the reporters
subtract it from tokens/s, the ETA and the elapsed time. No ML import here.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from workbench.protocol import Event, Paused, Resumed

Record = Callable[[Event], None]


class PauseControl:
    def __init__(self, record: Record) -> None:
        self.record = record
        """Appends an event to the run's events.jsonl and sends it (the session's `out`)."""
        self._wanted = threading.Event()
        self._paused = threading.Event()
        self._go_on = threading.Event()
        self._probe_lock = threading.Lock()
        self.live: Any = None
        """The Loaded model being trained (set once training starts)."""
        self.step = 0

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def request(self) -> None:
        self._wanted.set()

    def wait_paused(self, timeout_s: float, cancel: threading.Event | None = None) -> bool:
        """Wait until the trainer has stopped at a step boundary (or timeout / cancel)."""
        deadline = time.monotonic() + timeout_s
        while not self._paused.wait(0.1):
            if time.monotonic() > deadline or (cancel is not None and cancel.is_set()):
                return False
        return True

    def resume(self) -> bool:
        if not self._paused.is_set():
            self._wanted.clear()  # a pause asked for and not reached yet is called off
            return False
        self._go_on.set()
        return True

    def gate(self, step: int, stop: threading.Event) -> float:
        """At a step boundary, in the training thread: wait here while a pause is wanted. Returns the
        seconds paused (0 when there was no pause)."""
        if not self._wanted.is_set() or stop.is_set():
            return 0.0
        started = time.monotonic()
        self.step = step
        self._paused.set()
        self.record(Paused(step=step))
        while not self._go_on.wait(0.2) and not stop.is_set():
            pass
        with self._probe_lock:  # a probe in progress finishes before training goes on
            self._paused.clear()
            self._wanted.clear()
            self._go_on.clear()
        waited = time.monotonic() - started
        self.record(Resumed(step=step, paused_s=round(waited, 3)))
        return waited

    @contextlib.contextmanager
    def probe(self) -> Iterator[Any]:
        """The live model, in inference mode, while the trainer waits; put back as it was afterwards."""
        from workbench.engine.inference_mode import paused_for_inference

        with self._probe_lock:
            if not self._paused.is_set() or self.live is None:
                raise RuntimeError("the trainer is not paused")
            with paused_for_inference(self.live.model):
                yield self.live
