"""Quitting while the engine is still starting is prompt and leaves no engine behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widget import Widget

from tests.ui.conftest import FakeNvml, wait_for
from tests.ui.scripted import scripted_app_factory
from workbench.client import EngineClient
from workbench.protocol import Error, Event
from workbench.runs import pid_alive
from workbench.ui import messages as msg
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


class EndsTheEngineOnUnmount(Widget):
    """Hands the app the engine's end while Textual removes the screen: the moment at which the app's
    message loop handled a killed engine's last event in CI (is_running already False, panes going)."""

    def __init__(self, ended: Error) -> None:
        super().__init__()
        self.ended = ended

    def on_unmount(self) -> None:
        app = self.app
        assert isinstance(app, WorkbenchApp)
        app.on_engine_event(msg.EngineEvent(self.ended, generation=0))


async def test_engine_ending_while_the_app_shuts_down(demo_config_path: Path):
    """The engine's end arriving as the app closes is dropped, not handled against panes being removed
    (it raised NoMatches for '#chat-pane' from Textual's shutdown, after a test had passed)."""
    factory, engines = scripted_app_factory()
    app = WorkbenchApp(config_path=demo_config_path, engine_factory=factory, gpu_module=FakeNvml())
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 30, "the scripted engine")
        ended = Error(type="engine_exited", message="the engine process ended", fatal=True)
        await app.screen.mount(EndsTheEngineOnUnmount(ended))
    # Dropped: handling it restarted the engine of an app that was closing.
    assert app.engine_state == "ready", app.engine_state
    assert len(engines) == 1
