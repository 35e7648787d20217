from __future__ import annotations

import pytest

from workbench.client import EngineClient


@pytest.fixture(scope="module")
def engine():
    """One real engine process per test module (starting one costs a few seconds of imports)."""
    events: list = []
    client = EngineClient(on_event=events.append)
    client.start(timeout=180)
    client.events = events  # type: ignore[attr-defined]
    yield client
    client.close(shutdown=True)
    if client.process is not None:
        try:
            client.process.wait(timeout=20)
        except Exception:
            client.process.kill()
