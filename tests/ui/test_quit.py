"""Quitting while the engine is still starting is prompt and leaves no engine behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.ui.conftest import FakeNvml, wait_for
from workbench.client import EngineClient
from workbench.protocol import Event
from workbench.runs import pid_alive
from workbench.ui.app import WorkbenchApp

pytestmark = pytest.mark.engine


class TimedClient(EngineClient):
    """The real client, telling when start() gave up: App.run() waits for the thread that runs it."""

    def __init__(self, on_event: Callable[[Event], None]) -> None:
        super().__init__(on_event)
        self.start_returned = threading.Event()

    def start(self, extra_env: dict[str, str] | None = None, timeout: float = 120.0) -> None:
        try:
            super().start(extra_env, timeout)
        finally:
            self.start_returned.set()


async def test_quit_while_the_engine_starts(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, engine_factory=TimedClient, gpu_module=FakeNvml())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.client is not None and app.client.process is not None, 30, "a spawned engine")
        client: TimedClient = app.client
        assert not app.engine_ready, "still starting (its imports take seconds)"
        quit_at = time.monotonic()
    # it used to wait for the engine's whole start-up (about 6 s), and App.run() waited for it
    assert client.start_returned.wait(timeout=10)
    took = time.monotonic() - quit_at
    assert took < 2.0, f"start() returned {took:.1f} s after quitting"
    engine = client.process
    assert engine is not None and engine.poll() is not None and not pid_alive(engine.pid), \
        "the engine, which had no run yet, was stopped"
    assert not Path(client.socket_path or "").exists()
