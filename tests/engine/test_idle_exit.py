"""An engine whose UI died while it started (nobody ever connects) must exit on its own."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from workbench.engine.server import Engine, serve_socket


def _serve(path: Path, wait_s: float) -> threading.Thread:
    thread = threading.Thread(target=serve_socket, args=(Engine(str(path)), str(path)),
                              kwargs={"first_client_wait_s": wait_s}, daemon=True)
    thread.start()
    return thread


def test_engine_without_any_client_exits_after_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "e.sock"
    started = time.monotonic()
    thread = _serve(path, wait_s=1.0)
    thread.join(timeout=10)
    assert not thread.is_alive(), "the engine kept waiting for a client that never came"
    assert 1.0 <= time.monotonic() - started < 5
    assert not path.exists()


def test_engine_with_a_connected_client_stays(tmp_path: Path) -> None:
    path = tmp_path / "e.sock"
    thread = _serve(path, wait_s=0.5)
    for _ in range(100):
        if path.exists():
            break
        time.sleep(0.02)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    time.sleep(1.5)
    assert thread.is_alive(), "an engine with a client must not idle-exit"
    client.close()
    thread.join(timeout=10)  # the client left and nothing runs: idle exit as before
    assert not thread.is_alive()
