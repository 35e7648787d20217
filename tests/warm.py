"""`workbench …` commands for tests, started warm: forked from a process that has already imported unsloth
and the training code (tests/warm_server.py), instead of a fresh `python -m workbench.cli` each time.

Why: a fresh interpreter spends about 15 s of CPU importing unsloth, torch, transformers and TRL before a
3-step run on the tiny model that takes 2 s; the suite starts such commands dozens of times, on 2 cores.
What stays the same: the child is its own process (exit code, signals, stdout and stderr, environment and
working directory as subprocess gives them) and runs `workbench.cli` as `python -m` does. What is skipped
is only the interpreter's start and the imports, so tests of those (the start-up path, import hygiene,
output free of library chatter) start real interpreters.

Ranks: torchrun itself is always a fresh interpreter. A test that passes `rank_env(...)` as the command's
environment has torchrun start each rank through tests/warm_rank.py, forked from a server that imported
under that launch's rank environment (WORLD_SIZE, FSDP2 and the rest, which unsloth reads at import);
the other rank tests (tests/engine/test_ranks.py) start every rank as a fresh interpreter.

One server per test process (each pytest-xdist worker), started on first use and ended with the process."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from tests.warm_server import with_import_effects

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 300.0


class WarmProcess:
    """A command the server forked: the parts of subprocess.Popen the tests use."""

    def __init__(self, conn: socket.socket, out: IO[bytes], err: IO[bytes] | None, args: list[str]) -> None:
        self.args = args
        self._conn = conn
        self._out, self._err = out, err
        self.pid = int(self._read_line(timeout=60))
        self.returncode: int | None = None

    def _read_line(self, timeout: float | None) -> str:
        self._conn.settimeout(timeout)
        data = b""
        while not data.endswith(b"\n"):
            chunk = self._conn.recv(64)
            if not chunk:
                raise RuntimeError(f"the warm server went away while running {self.args}")
            data += chunk
        return data.decode().strip()

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                self.returncode = int(self._read_line(timeout=0.001))
                self._conn.close()
            except TimeoutError:
                return None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                self.returncode = int(self._read_line(timeout=timeout))
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
            self._conn.close()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """The child's whole process group (a run's torchrun and ranks with it), as the server does on a
        hang-up."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)

    def output(self) -> str:
        """stdout so far (with stderr, when they were merged)."""
        return _read(self._out)

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        self.wait(timeout)
        return _read(self._out), _read(self._err) if self._err is not None else None


def _read(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode("utf-8", errors="replace")


class WarmServer:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        """`env`: the server's own environment, under which it imports (default: this process's)."""
        self.env = dict(os.environ if env is None else env)
        """What it imported under."""
        self.folder = Path(tempfile.mkdtemp(prefix="wb-warm-"))
        self.socket_path = str(self.folder / "s")
        self.log = open(self.folder / "server.log", "wb")  # noqa: SIM115 (open while the server runs)
        self.process = subprocess.Popen([sys.executable, "-m", "tests.warm_server", self.socket_path], cwd=ROOT,
                                        stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not os.path.exists(self.socket_path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the warm server did not start: "
                                   + (self.folder / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        self.import_effects: dict[str, str | None] = json.loads(Path(self.socket_path + ".effects.json").read_text())
        """What the server's imports set in its environment (None: removed), as they do in each child's."""

    def popen(self, args: list[str], *, cwd: Path | str = ROOT, env: dict[str, str] | None = None,
              merge_stderr: bool = False, module: str = "workbench.cli", session: bool = False,
              out: IO[bytes] | None = None, path: str | None = None, code: str | None = None) -> WarmProcess:
        """`module` run as `python -m`, or, when given, the script at `path` as `python PATH` or `code` as
        `python -c`."""
        out = out or tempfile.TemporaryFile()  # noqa: SIM115 (the command's stdout, read when it ends)
        err = None if merge_stderr else tempfile.TemporaryFile()  # noqa: SIM115
        request = {"module": module, "path": path, "code": code, "argv": args, "cwd": str(cwd), "session": session,
                   "env": dict(os.environ if env is None else env)}
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.socket_path)
        fds = [out.fileno(), (err or out).fileno()]
        socket.send_fds(conn, [json.dumps(request).encode("utf-8")], fds)
        what = ["-c", code] if code is not None else [path] if path is not None else [module]
        return WarmProcess(conn, out, err, [*what, *args])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_server: WarmServer | None = None
_rank_servers: dict[tuple[tuple[str, str], ...], WarmServer] = {}
_lock = threading.Lock()
RANK_SHIM = ROOT / "tests" / "warm_rank.py"


def server() -> WarmServer:
    global _server
    with _lock:
        if _server is None or _server.process.poll() is not None:
            _server = WarmServer()
            atexit.register(_server.close)
        return _server


def rank_env(nproc_per_node: int, nnodes: int = 1, strategy: str = "ddp", from_workbench: bool = True) -> dict[str, str]:
    """The environment for a `workbench train --nproc …` whose ranks torchrun starts warm: this process's,
    with PYTHON_EXEC naming tests/warm_rank.py and the socket of a rank server that imported under the
    environment those ranks get (started on first use, one per kind of launch). `from_workbench=False`: the
    test starts torchrun itself (the lines `--print-launch` prints)."""
    from workbench.distributed import LaunchPlan

    # A rank inherits the environment of the `workbench` process that launched it, whose imports set
    # variables of their own (unsloth's, the compile cache's location), then torchrun's.
    launcher_env = dict(os.environ)
    if from_workbench:
        commands = server()
        launcher_env = with_import_effects(launcher_env, commands.env, commands.import_effects)
    imported_under = {**launcher_env, **LaunchPlan(nproc_per_node, nnodes=nnodes, strategy=strategy).env(),
                      "WORLD_SIZE": str(nproc_per_node * nnodes), "LOCAL_WORLD_SIZE": str(nproc_per_node),
                      "RANK": "0", "LOCAL_RANK": "0"}
    if nproc_per_node > 1:  # what torchrun sets for its ranks when the caller did not
        imported_under.setdefault("OMP_NUM_THREADS", "1")
    key = tuple(sorted(imported_under.items()))
    with _lock:
        ranks = _rank_servers.get(key)
        if ranks is None or ranks.process.poll() is not None:
            ranks = _rank_servers[key] = WarmServer(env=imported_under)
            atexit.register(ranks.close)
    return {**os.environ, "PYTHON_EXEC": str(RANK_SHIM), "WORKBENCH_WARM_RANK_SOCKET": ranks.socket_path}


def popen(*args: str, cwd: Path | str = ROOT, env: dict[str, str] | None = None) -> WarmProcess:
    """As Popen(..., stdout=PIPE, stderr=STDOUT, text=True): stdout and stderr merged."""
    return server().popen(list(args), cwd=cwd, env=env, merge_stderr=True)


def spawn_engine(args: list[str], env: dict[str, str], log: IO[bytes]) -> WarmProcess:
    """EngineClient's `spawn`: `python -m workbench.engine ARGS…` in its own session, output to the log."""
    return server().popen(args, env=env, merge_stderr=True, module="workbench.engine", session=True, out=log)


def engine_client(on_event: Any) -> Any:
    """An EngineClient whose engines start warm: the App's `engine_factory`, the engine fixture's client."""
    from workbench.client import EngineClient

    return EngineClient(on_event, spawn=spawn_engine)


def python(*args: str, timeout: float = 600, cwd: Path | str = ROOT,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python SCRIPT ARGS…` or `python -c CODE ARGS…` forked warm, as subprocess.run([sys.executable, *args],
    capture_output=True, text=True, timeout=…) gives it: for a probe that must run in a process of its own
    (unsloth patches transformers for the whole process) but not in a fresh interpreter. The script runs
    after the server's imports (unsloth first, then the training code), as a fresh one that begins with
    boot() imports them."""
    if args and args[0] == "-c":
        return _completed(server().popen(list(args[2:]), cwd=cwd, env=env, code=args[1]), timeout)
    return _completed(server().popen(list(args[1:]), cwd=cwd, env=env, path=str(args[0])), timeout)


def run(*args: str, timeout: float = 600, cwd: Path | str = ROOT,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`workbench ARGS…`, as subprocess.run(..., capture_output=True, text=True, timeout=…) gives it."""
    return _completed(server().popen(list(args), cwd=cwd, env=env), timeout)


def _completed(proc: WarmProcess, timeout: float) -> subprocess.CompletedProcess[str]:
    """Wait for a forked command as subprocess.run does: killed at the timeout, its output captured."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode or 0, out, err or "")
