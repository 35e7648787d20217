"""The UI's side of the engine: start (or attach to) an engine process and talk to it.

No ML imports here: this module is on the UI's start-up path. Events arrive on a reader thread and are
handed to `on_event` (the UI posts them as Textual messages); requests are fire-and-forget with an id,
or `call()` waits for the answer (CLI and tests).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.protocol import Error, Event, ProtocolError, Request, Result, decode_event, encode


class EngineGone(ConnectionError):
    pass


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = Path(base) / f"workbench-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


class EngineClient:
    def __init__(self, on_event: Callable[[Event], None] | None = None) -> None:
        self.on_event = on_event or (lambda e: None)
        self.process: subprocess.Popen[bytes] | None = None
        self.socket_path: str | None = None
        self.log_path: Path | None = None
        self._sock: socket.socket | None = None
        self._wfile: Any = None
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._waiters: dict[str, tuple[threading.Event, list[Event]]] = {}
        self._reader: threading.Thread | None = None
        self.connected = threading.Event()
        self.closed = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, extra_env: dict[str, str] | None = None, timeout: float = 120.0) -> None:
        """Spawn an engine in its own session (it survives the terminal) and connect to it."""
        rdir = runtime_dir()
        stamp = f"{os.getpid()}-{int(time.time() * 1000)}"
        self.socket_path = str(rdir / f"engine-{stamp}.sock")
        self.log_path = rdir / f"engine-{stamp}.log"
        env = {**os.environ, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
        src = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "workbench.engine", "--socket", self.socket_path],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket_path):
            if self.process.poll() is not None:
                raise EngineGone(f"the engine exited during start-up (code {self.process.returncode}); "
                                 f"see {self.log_path}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise EngineGone(f"the engine did not start within {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.05)
        self.connect(self.socket_path)

    def connect(self, socket_path: str) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(socket_path)
        except OSError as exc:
            sock.close()
            raise EngineGone(f"cannot reach the engine at {socket_path}: {exc.strerror}") from None
        self.socket_path = socket_path
        self._sock = sock
        self._wfile = sock.makefile("wb")
        self.closed.clear()
        self._reader = threading.Thread(target=self._read, args=(sock.makefile("rb"),), name="engine-reader",
                                        daemon=True)
        self._reader.start()
        self.connected.set()

    def log_tail(self, lines: int = 5) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def _read(self, rfile: Any) -> None:
        try:
            for line in rfile:
                if not line.strip():
                    continue
                try:
                    event = decode_event(line)
                except ProtocolError:
                    continue
                waiter = self._waiters.get(event.id or "")
                if waiter is not None:
                    waiter[1].append(event)
                    if isinstance(event, Result | Error):
                        waiter[0].set()
                self.on_event(event)
        except (OSError, ValueError):
            pass
        finally:
            self.connected.clear()
            self.closed.set()
            for done, _ in self._waiters.values():
                done.set()
            self.on_event(Error(type="engine_gone", message="The connection to the engine closed.",
                                hint="Training started in this engine keeps running; re-attach from Runs.",
                                fatal=True))

    def close(self, shutdown: bool = False) -> None:
        if shutdown and self.connected.is_set():
            with contextlib.suppress(Exception):
                self.send("shutdown")
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None

    def alive(self) -> bool:
        return self.connected.is_set()

    # -- requests -------------------------------------------------------------------------------
    def send(self, cmd: str, args: dict[str, Any] | None = None) -> str:
        if self._wfile is None or not self.connected.is_set():
            raise EngineGone("the engine is not connected")
        rid = f"r{next(self._ids)}"
        line = encode(Request(id=rid, cmd=cmd, args=args or {})).encode("utf-8")  # type: ignore[arg-type]
        with self._send_lock:
            try:
                self._wfile.write(line)
                self._wfile.flush()
            except OSError as exc:
                raise EngineGone(f"the engine is not reachable: {exc}") from None
        return rid

    def call(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 600.0) -> tuple[Event, list[Event]]:
        """Send and wait for the answer: (the Result or Error, every event with this id in order)."""
        if self._wfile is None or not self.connected.is_set():
            raise EngineGone("the engine is not connected")
        rid = f"r{next(self._ids)}"
        done = threading.Event()
        events: list[Event] = []
        self._waiters[rid] = (done, events)
        line = encode(Request(id=rid, cmd=cmd, args=args or {})).encode("utf-8")  # type: ignore[arg-type]
        try:
            with self._send_lock:
                self._wfile.write(line)
                self._wfile.flush()
            if not done.wait(timeout):
                raise TimeoutError(f"the engine did not answer {cmd} within {timeout:.0f} s")
        finally:
            self._waiters.pop(rid, None)
        final = next((e for e in reversed(events) if isinstance(e, Result | Error)), None)
        if final is None:
            raise EngineGone(f"the engine closed before answering {cmd}")
        return final, events
