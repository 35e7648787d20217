#!/usr/bin/env python3
"""torchrun's interpreter for the rank tests that start ranks warm: `PYTHON_EXEC` names this file (see
tests/warm.py's `rank_env`), so torchrun runs `warm_rank.py -u -m workbench.engine.rank RUN [--resume]`
once per rank instead of a fresh Python. It asks the rank server named by WORKBENCH_WARM_RANK_SOCKET (a
tests/warm_server.py that imported unsloth under this launch's rank environment) to fork the rank, with
this process's environment, working directory, stdout and stderr (torchrun's per-rank log files), and
then stands for it:

- torchrun's signals (SIGTERM when another rank failed, SIGINT) are passed on to the rank;
- the rank's exit is this process's: the same code, or death by the same signal;
- killed with -9 itself (as a test kills a rank), the connection drops and the server kills the rank.

Standard library only, and no import of the project: it starts in milliseconds under any python3."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys


def parse(argv: list[str]) -> tuple[str, list[str], bool]:
    """(module, its argv, unbuffered) from the interpreter arguments torchrun passes."""
    unbuffered = False
    rest = list(argv)
    while rest and rest[0] == "-u":
        unbuffered = True
        rest.pop(0)
    if len(rest) < 2 or rest[0] != "-m":
        raise SystemExit(f"warm_rank.py: expected [-u] -m MODULE ARGS..., got {argv}")
    return rest[1], rest[2:], unbuffered


def main() -> None:
    module, args, unbuffered = parse(sys.argv[1:])
    request = {"module": module, "argv": args, "cwd": os.getcwd(), "env": dict(os.environ), "session": False,
               "rank": True, "unbuffered": unbuffered}
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(os.environ["WORKBENCH_WARM_RANK_SOCKET"])
    socket.send_fds(conn, [json.dumps(request).encode("utf-8")], [1, 2])
    reader = conn.makefile("r", encoding="ascii")
    pid = int(reader.readline())

    def pass_on(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, pass_on)
    line = reader.readline()
    code = int(line) if line.strip() else 1
    if code < 0:  # the rank died of a signal: so does this process, as torchrun would have seen it
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
