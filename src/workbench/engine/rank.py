"""One rank of a run on several processes: `python -m workbench.engine.rank RUN_DIR [--resume]`, started by
torchrun once per GPU (or CPU rank) with the run's config in RUN_DIR/launch.toml (written by the launcher; else its config.toml).

Every rank trains (`train.run_training`; the HF Trainer does DDP under torchrun's environment); rank 0 alone
writes the run's files. A stop is asked by creating RUN_DIR/stop-request (the launcher does on Ctrl-C or
the UI's stop): a thread here sees it, and the ranks agree on it at every step boundary (callbacks), so all
stop at the same step and save the same checkpoint.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from workbench.engine.boot import boot


def watch_stop_request(run_dir: Path, stop: threading.Event, every_s: float = 0.5) -> None:
    from workbench.distributed import STOP_REQUEST

    def poll() -> None:
        while not stop.wait(every_s):
            if (run_dir / STOP_REQUEST).exists():
                stop.set()

    threading.Thread(target=poll, name="stop-request", daemon=True).start()


def allow_indexed_cpu_locations() -> None:
    """HF's Trainer resumes a run on several ranks by loading the optimizer state onto `args.device`, which
    for CPU ranks is "cpu:0", a location torch.load does not know ("don't know how to restore data
    location"). Registered here: such a location is the CPU."""
    from typing import Any

    import torch

    def tag(_obj: Any) -> None:
        return None

    def restore(obj: Any, location: str) -> Any:
        return obj if location.startswith("cpu:") else None

    torch.serialization.register_package(30, tag, restore)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.engine.rank")
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    boot()
    from workbench import settings
    from workbench.config import load_config
    from workbench.distributed import LAUNCH_CONFIG, current
    from workbench.engine.train import run_training
    from workbench.runs import RunDir

    allow_indexed_cpu_locations()
    run = RunDir(Path(args.run_dir))
    config = load_config(run.path / LAUNCH_CONFIG if (run.path / LAUNCH_CONFIG).exists() else run.config_path)
    stop = threading.Event()
    # torchrun passes SIGTERM on when it is stopped: end at the step boundary like a stop request.
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    watch_stop_request(run.path, stop)
    done, _loaded = run_training(config, run, lambda _event: None, stop, resume=args.resume,
                                 socket_path=settings.engine_socket())
    me = current()
    print(f"rank {me.rank} of {me.world}: {done.status} at step {done.step}: {done.message}", flush=True)
    return 0 if done.status in ("completed", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
