"""Run a training run on several ranks and follow it: torchrun started in a session of its own, rank 0's
events read back from the run's events.jsonl as they are written, a stop passed on as the run's
stop-request file. Used by `workbench train --gpus N / --nproc N` and by the engine (the TUI's Start), so
both behave the same. No torch import: the ranks import it.

A run whose ranks end without a Done (a rank killed with -9, a machine gone) is marked failed here with
the last lines of every rank's output (torchrun keeps them under RUN/ranks/); checkpoints count only once
marked complete, so the newest complete one stays the one a resume takes.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.config import RunConfig, save_config
from workbench.distributed import ENGINE_SOCKET_ENV, LAUNCH_CONFIG, STOP_REQUEST, LaunchPlan
from workbench.protocol import Done, Status
from workbench.runs import RunDir

POLL_S = 0.3
"""How often the events file is read for new lines."""


def rank_command(plan: LaunchPlan, run: RunDir, resume: bool) -> list[str]:
    command = plan.command(str(run.path), resume=resume)
    # After --nproc-per-node: one stdout / stderr pair per rank under RUN/ranks/.
    return [*command[:4], f"--log-dir={run.path / 'ranks'}", "--redirects=3", *command[4:]]


def describe(plan: LaunchPlan) -> str:
    where = "CPU, gloo" if plan.cpu else f"GPU {','.join(map(str, plan.gpu_ids))}, {plan.strategy}"
    return f"{plan.world} rank{'s' if plan.world > 1 else ''} ({where})"


def train_on_ranks(plan: LaunchPlan, config: RunConfig, run: RunDir, emit: Callable[[Any], None],
                   stop: threading.Event, resume: bool = False, on_start: Callable[[int], None] | None = None,
                   engine_socket: str | None = None) -> Done:
    """Start the ranks on `run` and pass each event rank 0 writes to `emit` until they end; the run's Done.
    `stop` set: every rank stops at the next step boundary with a checkpoint. `on_start` hears torchrun's pid.
    `engine_socket`: the engine this runs in, named in the run's engine.json for `workbench attach`."""
    save_config(config, run.path / LAUNCH_CONFIG)
    (run.path / STOP_REQUEST).unlink(missing_ok=True)
    command = rank_command(plan, run, resume)
    emit(Status(run=run.name, message=f"{describe(plan)}: {' '.join(command)}"))
    seen = len(list(run.iter_events()))
    env = {**os.environ, **plan.env()}
    if engine_socket:
        env[ENGINE_SOCKET_ENV] = engine_socket
    proc = subprocess.Popen(command, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if on_start is not None:
        on_start(proc.pid)
    done: Done | None = None
    asked = False
    while True:
        if stop.is_set() and not asked:
            (run.path / STOP_REQUEST).write_text("stop", encoding="utf-8")
            asked = True
        events = list(run.iter_events())
        for event in events[seen:]:
            emit(event)
            if isinstance(event, Done):
                done = event
        seen = len(events)
        if proc.poll() is not None:
            break
        time.sleep(POLL_S)
    (run.path / STOP_REQUEST).unlink(missing_ok=True)
    if proc.returncode != 0 and done is not None and done.status == "failed":
        emit(Status(run=run.name, message=f"A rank ended with an error (torchrun exit {proc.returncode}). "
                                          f"Last lines of the ranks: {rank_log_tail(run.path / 'ranks')}"))
    if done is None:
        done = Done(run=run.name, status="failed", step=0, total_steps=config.training.max_steps, error_type="rank",
                    message=f"A rank ended without finishing the run (torchrun exit {proc.returncode}); the newest "
                            f"complete checkpoint is kept. Last lines: {rank_log_tail(run.path / 'ranks')}")
        run.append(done)
        emit(done)
    return done


def rank_log_tail(logs: Path, lines: int = 4) -> str:
    """The last lines each rank wrote, stderr first (where a traceback goes)."""
    tails = []
    for log in sorted(logs.glob("**/stderr.log")) + sorted(logs.glob("**/stdout.log")):
        text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if text:
            tails.append(f"[rank {log.parent.name}] " + " | ".join(text[-lines:]))
    return " ".join(tails)[-1500:] or "(no rank wrote a log)"
