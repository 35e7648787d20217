"""The client refuses an engine that speaks another protocol version, with a message saying so."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from workbench.client import EngineClient
from workbench.protocol import PROTOCOL_VERSION, Error, Event, Hello, encode


def test_an_engine_of_another_version_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = str(tmp_path / "engine.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def old_engine() -> None:
        conn, _ = server.accept()
        conn.sendall(encode(Hello(pid=77, device="cpu", protocol=PROTOCOL_VERSION - 1)).encode())
        conn.recv(1)  # stays connected until the client leaves

    threading.Thread(target=old_engine, daemon=True).start()
    events: list[Event] = []
    got = threading.Event()
    client = EngineClient(on_event=lambda e: (events.append(e), got.set()))
    client.connect(path)
    assert client.closed.wait(5), "the client stops reading an engine it cannot talk to"
    errors = [e for e in events if isinstance(e, Error)]
    assert errors and errors[0].type == "protocol_mismatch" and errors[0].fatal
    assert f"speaks protocol {PROTOCOL_VERSION - 1}" in errors[0].message and "pid 77" in errors[0].message
    client.close()
    server.close()


def test_only_the_newest_engine_logs_are_kept(tmp_path: Path) -> None:
    import os

    from workbench.client import prune_engine_logs

    for i in range(25):
        log = tmp_path / f"engine-{i}.log"
        log.write_text("x", encoding="utf-8")
        os.utime(log, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "other.txt").write_text("kept", encoding="utf-8")
    removed = prune_engine_logs(tmp_path, keep=20)
    assert sorted(p.name for p in removed) == sorted(f"engine-{i}.log" for i in range(5))
    assert len(list(tmp_path.glob("engine-*.log"))) == 20 and (tmp_path / "other.txt").exists()
