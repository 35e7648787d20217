"""The server side of tests/warm.py: a process that has imported unsloth and the workbench's training,
eval, export and engine code once, and forks a child for each `workbench …` command or engine a test asks
for.

Run as `python -m tests.warm_server SOCKET`. One connection per command: the test sends one JSON line
(module, argv, cwd, env, session) with the child's stdout and stderr as file descriptors (SCM_RIGHTS); the server answers
with the child's pid, then, when the child ends, with its exit code. A connection closed early (a test that
failed or timed out) kills the child's process group.

The child runs the module (`workbench.cli` or `workbench.engine`) as `python -m` does (runpy, as
__main__), or a script file or a string of code as `python PATH` and `python -c` do (tests/warm.py's
`python`), in its own process group (its own session, as the UI starts an engine, when asked), with the test's environment and working directory; only the interpreter's start and the imports
are skipped. OpenMP is forked before any parallel region runs here (this process only imports), so the
children start their thread pools fresh.

What the imports do to the environment (unsloth sets variables as it loads) is done again in each child:
the child's environment is the test's, with those changes applied where the test left the variable as
this process started with it (what a fresh interpreter importing the same code would end with).

A server started with a rank's environment (tests/warm.py's `rank_env`) forks ranks for torchrun through
tests/warm_rank.py. Its imports ran under that environment (unsloth decides at import whether it is one
of several ranks and whether to shard with FSDP2), so a request marked `rank` is refused when the
variables those decisions read (SIGNATURE) differ from this process's at its start.

A request marked `unbuffered` (torchrun starts ranks with `python -u`) gets unbuffered stdout and stderr,
so a rank's last lines are in its log even when it is killed."""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import traceback
import types

START_ENV = dict(os.environ)
"""This process's environment before the imports."""
IMPORT_EFFECTS: dict[str, str | None] = {}
"""What the imports changed in it: the new value, or None for a variable they removed."""
SIGNATURE_EXACT = ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
SIGNATURE_PREFIXES = ("UNSLOTH_", "ACCELERATE_", "FSDP_")


def preload() -> None:
    """What a `workbench train`, `eval` or `export`, an engine and a rank import, in their order (unsloth
    first)."""
    from workbench.engine.boot import boot

    boot()
    import workbench.cli
    import workbench.engine.evaluate
    import workbench.engine.export
    import workbench.engine.generate
    import workbench.engine.rank
    import workbench.engine.server
    import workbench.engine.train  # noqa: F401

    for key in set(START_ENV) | set(os.environ):
        if START_ENV.get(key) != os.environ.get(key):
            IMPORT_EFFECTS[key] = os.environ.get(key)


def signature(env: dict[str, str]) -> dict[str, str]:
    """The variables whose values at import decide what a rank's imports set up."""
    return {k: v for k, v in env.items() if k in SIGNATURE_EXACT or k.startswith(SIGNATURE_PREFIXES)}


def with_import_effects(requested: dict[str, str], start_env: dict[str, str],
                        effects: dict[str, str | None]) -> dict[str, str]:
    """`requested` as the imports that changed `start_env` by `effects` leave it: each change applied where
    `requested` has the variable as `start_env` had it (the import changes it the same way)."""
    env = dict(requested)
    for key, value in effects.items():
        if requested.get(key) == start_env.get(key):
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
    return env


def unbuffered_std_streams() -> None:
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        setattr(sys, name, io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding=old.encoding,
                                            errors=old.errors, write_through=True))


def child(request: dict, fds: list[int]) -> None:
    """Become the command: never returns."""
    code = 1
    try:
        if request.get("session"):
            os.setsid()
        else:
            os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in (devnull, *fds):
            os.close(fd)
        if request.get("unbuffered"):
            unbuffered_std_streams()
        os.chdir(request["cwd"])
        if request.get("rank") and signature(request["env"]) != signature(START_ENV):
            sys.stderr.write(f"warm rank: this server imported with {signature(START_ENV)}, but the rank's "
                             f"environment has {signature(request['env'])}; start it with tests/warm.py's "
                             "rank_env for this launch\n")
            code = 97
            return
        os.environ.clear()
        os.environ.update(with_import_effects(request["env"], START_ENV, IMPORT_EFFECTS))
        try:
            run_main(request)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except KeyboardInterrupt:
            code = 128 + signal.SIGINT
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()  # what an interpreter's own exit runs (temporary files, logging)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_main(request: dict) -> None:
    """Run what the request names as `python` runs its main: a module (`-m`), a script file (`path`, its
    folder first on sys.path) or a string of code (`code`, as `-c`)."""
    if request.get("code") is not None:
        sys.argv = ["-c", *request["argv"]]
        sys.path[0] = ""
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = __builtins__
        sys.modules["__main__"] = main
        exec(compile(request["code"], "<string>", "exec"), main.__dict__)
    elif request.get("path") is not None:
        path = os.path.abspath(request["path"])
        sys.argv = [request["path"], *request["argv"]]
        sys.path[0] = os.path.dirname(path)
        runpy.run_path(path, run_name="__main__")
    else:
        module = request.get("module", "workbench.cli")
        sys.argv = [module, *request["argv"]]
        sys.modules.pop(module, None)  # as under `python -m`: __main__ is the only copy run
        runpy.run_module(module, run_name="__main__", alter_sys=True)


def exit_code(status: int) -> int:
    """As subprocess reports it: the exit code, or minus the signal that ended the process."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    parent = os.getppid()
    print("ready", flush=True)
    while os.getppid() == parent:  # the test process that started it is gone: so are its commands
        for key, _ in selector.select(timeout=0.05):
            if key.fileobj is listener:
                conn, _ = listener.accept()
                data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 2)
                request = json.loads(data.decode("utf-8"))
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:  # the child keeps none of the server's sockets (nor the other commands')
                    for held in (listener, conn, *children.values()):
                        held.close()
                    child(request, fds)
                for fd in fds:
                    os.close(fd)
                conn.sendall(f"{pid}\n".encode())
                children[pid] = conn
                selector.register(conn, selectors.EVENT_READ, pid)
            else:  # the test hung up before its command ended
                pid = key.data
                selector.unregister(key.fileobj)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(conn)
            with contextlib.suppress(OSError):
                conn.sendall(f"{exit_code(status)}\n".encode())
            conn.close()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    preload()
    # Before the socket exists (which tells the client the server is up): what the imports set, for the
    # environment of a rank server (tests/warm.py's rank_env).
    with open(sys.argv[1] + ".effects.json", "w", encoding="utf-8") as effects:
        json.dump(IMPORT_EFFECTS, effects)
    serve(sys.argv[1])
