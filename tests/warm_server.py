"""The server side of tests/warm.py: a process that has imported unsloth and the workbench's training,
eval, export and engine code once, and forks a child for each `workbench …` command or engine a test asks
for.

Run as `python -m tests.warm_server SOCKET`. One connection per command: the test sends one JSON line
(module, argv, cwd, env, session) with the child's stdout and stderr as file descriptors (SCM_RIGHTS); the server answers
with the child's pid, then, when the child ends, with its exit code. A connection closed early (a test that
failed or timed out) kills the child's process group.

The child runs the module (`workbench.cli` or `workbench.engine`) as `python -m` does (runpy, as
__main__), in its own process group (its own session, as the UI starts an engine, when asked), with the test's environment and working directory; only the interpreter's start and the imports
are skipped. OpenMP is forked before any parallel region runs here (this process only imports), so the
children start their thread pools fresh."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import traceback


def preload() -> None:
    """What a `workbench train`, `eval` or `export` and an engine import, in their order (unsloth first)."""
    from workbench.engine.boot import boot

    boot()
    import workbench.cli
    import workbench.engine.evaluate
    import workbench.engine.export
    import workbench.engine.generate
    import workbench.engine.server
    import workbench.engine.train  # noqa: F401


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
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        module = request.get("module", "workbench.cli")
        sys.argv = [module, *request["argv"]]
        sys.modules.pop(module, None)  # as under `python -m`: __main__ is the only copy run
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
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
    serve(sys.argv[1])
