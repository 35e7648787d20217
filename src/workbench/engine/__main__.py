"""`python -m workbench.engine --socket PATH`: the engine process.

Started by the UI (in its own session, so it outlives the terminal) or by hand. Prints nothing on
stdout that matters: the protocol runs over the socket, library chatter goes to the log.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.engine")
    parser.add_argument("--socket", required=True, help="unix socket path to listen on")
    parser.add_argument("--keep-alive", action="store_true", help="do not exit when idle without a client")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # A dropped terminal must not end training: the UI starts us with setsid, and we ignore SIGHUP too.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    from workbench.engine.boot import boot, limit_cpu_threads

    note = boot()
    threads = limit_cpu_threads()  # the engine shares the machine with the UI (`workbench train` does not)
    if threads is not None:
        logging.getLogger("workbench.engine").info("torch uses %d CPU threads", threads)
    from workbench.engine.server import Engine, serve_socket

    engine = Engine(socket_path=args.socket, notes=[note] if note else [])
    serve_socket(engine, args.socket, idle_exit=not args.keep_alive)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
