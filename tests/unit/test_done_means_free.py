"""A run's Done is the client's cue to go on (the next run, a chat, a save): when it goes out, the engine is
already free. Before, Done was written while the training thread was still winding down, and a client that
answered it at once with the next `train` was refused ("The engine is training") now and then in CI.

The run itself (workbench.engine.train, whose import alone takes unsloth's 15 s) is replaced by one that writes
its Done and then takes a while to return, which is what the real one does (it clears engine.json, hands back
the model); the engine around it is the real one. The real run's Done is tested in tests/engine."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
import types
from typing import Any

import pytest

from workbench.config import RunConfig, config_to_dict
from workbench.engine.server import Engine
from workbench.protocol import Done, Error, Result, decode_event


class SeeingWriter(io.BytesIO):
    """The engine's output stream; notes what the engine says about itself at the moment Done is written."""

    def __init__(self) -> None:
        super().__init__()
        self.engine: Engine | None = None
        self.at_done: list[tuple[bool, bool]] = []
        self.done_written = threading.Event()

    def write(self, data: Any) -> int:
        written = super().write(data)
        for line in bytes(data).decode("utf-8").splitlines():
            if self.engine is not None and isinstance(decode_event(line), Done):
                self.at_done.append((self.engine.training, self.engine.idle))
                self.done_written.set()
        return written


def slow_to_return_run(config: RunConfig, run: Any, emit: Any, stop: Any, **_kwargs: Any) -> tuple[Done, None]:
    done = Done(status="completed", message="Training finished.", step=1, total_steps=1)
    emit(done)
    time.sleep(0.5)  # what follows the Done in the real run: engine.json cleared, the model handed back
    return done, None


def send(engine: Engine, rid: str, cmd: str, config: RunConfig) -> None:
    line = {"id": rid, "cmd": cmd, "args": {"config": config_to_dict(config)}}
    engine.handle_line(json.dumps(line).encode())


def test_the_engine_is_free_when_a_runs_done_goes_out(
    demo_config: RunConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType("workbench.engine.train")
    module.run_training = slow_to_return_run  # type: ignore[attr-defined]
    module.check_resume = lambda config, run: (config, [])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "workbench.engine.train", module)
    out = SeeingWriter()
    engine = Engine()
    engine.attach_writer(out)
    out.engine = engine

    send(engine, "first", "train", demo_config)
    assert out.done_written.wait(30), out.getvalue().decode()
    send(engine, "second", "train", demo_config)  # at once, as a client that heard Done does
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(out.at_done) < 2:
        time.sleep(0.02)

    events = [decode_event(line) for line in out.getvalue().decode().splitlines()]
    refused = [e for e in events if isinstance(e, Error)]
    assert not refused, refused
    assert {e.id for e in events if isinstance(e, Result)} == {"first", "second"}
    assert out.at_done == [(False, True), (False, True)]  # not training, and the model is free
