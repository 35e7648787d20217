"""The UI's side of the engine: start (or attach to) an engine process and talk to it.

No ML imports here: this module is on the UI's start-up path. Events arrive on a reader thread and are
handed to `on_event` (the UI posts them as Textual messages); `send()` is fire-and-forget with an id,
`call()` waits for the typed answer (CLI and tests). The first event of a connection is the engine's
`Hello`: an engine that speaks another protocol version (one started by another workbench version, still
running a run) is refused with a message saying so, instead of failing on its first answer.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar, cast

from workbench.protocol import (
    PROTOCOL_VERSION,
    Error,
    Event,
    Hello,
    ProtocolError,
    Request,
    Result,
    decode_event,
    encode,
)

if TYPE_CHECKING:
    from workbench.requests import Answer, Args, Expects

AnswerT = TypeVar("AnswerT", bound="Answer")


class EngineGone(ConnectionError):
    pass


class EngineError(RuntimeError):
    """The engine answered a request with an error (already phrased for the user)."""

    def __init__(self, error: Error) -> None:
        super().__init__(f"{error.message} {error.hint}".strip())
        self.error = error


class StartAborted(EngineGone):
    """`close()` was called while `start()` waited for the engine; the engine it spawned is stopped."""


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = Path(base) / f"workbench-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


KEEP_ENGINE_LOGS = 20
"""Engine logs kept in the runtime folder (one per engine started); older ones are removed."""


def prune_engine_logs(folder: Path, keep: int = KEEP_ENGINE_LOGS) -> list[Path]:
    """Remove all but the newest `keep` engine logs (every UI start writes one: they piled up in /tmp)."""
    dated = []
    for log in folder.glob("engine-*.log"):
        with contextlib.suppress(FileNotFoundError):  # another workbench pruning at the same moment
            dated.append((log.stat().st_mtime, log))
    logs = [log for _mtime, log in sorted(dated, reverse=True)]
    removed = []
    for old in logs[keep:]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
            removed.append(old)
    return removed


class EngineProcess(Protocol):
    """The engine process start() spawned: what the client asks of it (subprocess.Popen has it all)."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


Spawn = Callable[[list[str], dict[str, str], BinaryIO], EngineProcess]
"""Start `python -m workbench.engine ARGS` with this environment, stdout and stderr to the log, in a
session of its own (it outlives the terminal)."""


def spawn_engine(args: list[str], env: dict[str, str], log: BinaryIO) -> EngineProcess:
    return subprocess.Popen([sys.executable, "-m", "workbench.engine", *args], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, start_new_session=True, env=env)


class EngineClient:
    def __init__(self, on_event: Callable[[Event], None] | None = None, spawn: Spawn = spawn_engine) -> None:
        """`spawn` starts the engine process; the tests pass one that forks it from a process that has
        already imported the ML stack (tests/warm.py)."""
        self.on_event = on_event or (lambda e: None)
        self.spawn = spawn
        self.process: EngineProcess | None = None
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
        # Set by close(): a start() still waiting for the socket gives up at once. The UI quits (or
        # restarts the engine) while one starts; without this its worker thread kept the process alive
        # for the engine's whole start-up, because App.run() joins it.
        self._closing = threading.Event()
        self._sock_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, extra_env: dict[str, str] | None = None, timeout: float = 120.0) -> None:
        """Spawn an engine in its own session (it survives the terminal) and connect to it.

        Raises StartAborted when close() is called meanwhile: the engine just spawned has no run yet,
        so it is stopped rather than left waiting for a client that will never come.
        """
        if self._closing.is_set():
            raise StartAborted("the client was closed before the engine started")
        rdir = runtime_dir()
        prune_engine_logs(rdir)
        stamp = f"{os.getpid()}-{int(time.time() * 1000)}"
        self.socket_path = str(rdir / f"engine-{stamp}.sock")
        self.log_path = rdir / f"engine-{stamp}.log"
        env = {**os.environ, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
        src = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(self.log_path, "ab") as log:
            self.process = self.spawn(["--socket", self.socket_path], env, log)
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket_path) and not self._closing.is_set():
            if self.process.poll() is not None:
                raise EngineGone(f"the engine exited during start-up (code {self.process.returncode}); "
                                 f"see {self.log_path}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise EngineGone(f"the engine did not start within {timeout:.0f} s; see {self.log_path}")
            self._closing.wait(0.05)
        if not self._closing.is_set():
            self.connect(self.socket_path)
        if self._closing.is_set():  # checked again after connect(): close() may have run in between
            self._close_socket()
            self._stop_spawned()
            raise StartAborted("the client was closed while the engine was starting")

    def _stop_spawned(self, grace_s: float = 2.0) -> None:
        """Stop the engine start() spawned, and whatever it started (its own process group)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=grace_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def connect(self, socket_path: str) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(socket_path)
        except OSError as exc:
            sock.close()
            raise EngineGone(f"cannot reach the engine at {socket_path}: {exc.strerror}") from None
        self.socket_path = socket_path
        with self._sock_lock:
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
                if isinstance(event, Hello) and event.protocol != PROTOCOL_VERSION:
                    self.on_event(Error(
                        type="protocol_mismatch", fatal=True,
                        message=f"The engine (pid {event.pid}) speaks protocol {event.protocol}; this workbench "
                                f"speaks {PROTOCOL_VERSION}: it was started by another workbench version.",
                        hint="Use that version to watch its run, or stop that engine; its run directory can be "
                             "opened from Runs."))
                    break
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
        self._closing.set()
        if shutdown and self.connected.is_set():
            from workbench.requests import Shutdown

            with contextlib.suppress(EngineGone):
                self.send(Shutdown())
        self._close_socket()

    def _close_socket(self) -> None:
        with self._sock_lock:  # close() (UI thread) and an aborted start() (worker) may both get here
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    # -- requests -------------------------------------------------------------------------------
    def _write(self, request: Request) -> None:
        if self._wfile is None or not self.connected.is_set():
            raise EngineGone("the engine is not connected")
        line = encode(request).encode("utf-8")
        with self._send_lock:
            try:
                self._wfile.write(line)
                self._wfile.flush()
            except OSError as exc:
                raise EngineGone(f"the engine is not reachable: {exc}") from None

    def send(self, args: Args) -> str:
        """Send a command; its answer arrives through on_event. Returns the request id."""
        rid = f"r{next(self._ids)}"
        self._write(Request(id=rid, cmd=args.cmd, args=args.wire_args()))
        return rid

    def call_events(self, args: Args, timeout: float = 600.0) -> tuple[Result | Error, list[Event]]:
        """Send and wait: (the Result or Error, and every event with this request's id, in order)."""
        rid = f"r{next(self._ids)}"
        done = threading.Event()
        events: list[Event] = []
        self._waiters[rid] = (done, events)
        try:
            self._write(Request(id=rid, cmd=args.cmd, args=args.wire_args()))
            if not done.wait(timeout):
                raise TimeoutError(f"the engine did not answer {args.cmd} within {timeout:.0f} s")
        finally:
            self._waiters.pop(rid, None)
        final = next((e for e in reversed(events) if isinstance(e, Result | Error)), None)
        if final is None:
            raise EngineGone(f"the engine closed before answering {args.cmd}")
        return final, events

    def call(self, args: Expects[AnswerT], timeout: float = 600.0) -> AnswerT:
        """Send and wait for the typed answer; an engine error raises EngineError."""
        command = cast("Args", args)
        assert isinstance(command, _args_class())
        final, _events = self.call_events(command, timeout)
        if isinstance(final, Error):
            raise EngineError(final)
        return cast(AnswerT, command.answer.model_validate(final.data))


def _args_class() -> type[Args]:
    from workbench.requests import Args  # not at import: requests.py stays off the TUI's start-up path

    return Args
