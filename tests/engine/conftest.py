from __future__ import annotations

import pytest

from tests import warm


@pytest.fixture(scope="module")
def engine():
    """One real engine process per test module, forked warm (tests/warm.py: no 15 s of imports each)."""
    events: list = []
    client = warm.engine_client(events.append)
    client.start(timeout=180)
    client.events = events  # type: ignore[attr-defined]
    yield client
    client.close(shutdown=True)
    if client.process is not None:
        try:
            client.process.wait(timeout=20)
        except Exception:
            client.process.kill()
