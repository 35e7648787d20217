"""Helpers for the tests of training on several ranks through the real launcher (torchrun), on the CPU:
unsloth's CPU backend runs DDP over gloo. The tests are split over files so that pytest-xdist can run them
side by side.

Where a test passes `warm.rank_env(...)`, torchrun starts its ranks warm (tests/warm_rank.py: forked from a
server that imported under that launch's rank environment), which saves each rank the ~15 s of CPU a fresh
interpreter spends importing unsloth; tests/engine/test_ranks.py and the engine's launch start every rank
as a fresh interpreter, so that path stays tested too."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import warm
from workbench.config import load_config, save_config
from workbench.protocol import Done, Log
from workbench.runs import COMPLETE_MARKER, RunDir

ROOT = Path(__file__).resolve().parents[2]


def small_config(tmp_path: Path, batch: int, steps: int, name: str, save_steps: int = 20) -> Path:
    config = load_config(ROOT / "configs" / "demo.toml")
    config.data.eval_fraction = 0.0
    config.data.max_rows = 32
    config.training.max_steps = steps
    config.training.per_device_train_batch_size = batch
    config.training.gradient_accumulation_steps = 1
    config.training.warmup_steps = 0
    config.training.save_steps = save_steps
    config.eval.generate_steps = 0
    path = tmp_path / f"{name}.toml"
    save_config(config, path)
    return path


def losses(run: RunDir) -> dict[int, float]:
    return {e.step: e.loss for e in run.iter_events() if isinstance(e, Log) and e.loss is not None}


def adapter_tensors(run: RunDir) -> dict[str, Any]:
    from safetensors.torch import load_file

    return dict(load_file(str(run.adapter_dir / "adapter_model.safetensors")))


def wait_for_step(run: RunDir, step: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s >= step for s in losses(run)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no step {step} within {timeout} s")


def rank_pids(run_dir: Path) -> list[str]:
    """The rank processes of a run (not torchrun itself, whose command line names the module too). Ranks
    started warm are found by their tests/warm_rank.py stand-ins: a signal to one reaches its rank, and
    killed with -9, it takes its rank with it."""
    found = subprocess.run(["pgrep", "-f", f"workbench.engine.rank {run_dir}"], capture_output=True, text=True)
    pids = []
    for pid in found.stdout.split():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"torch.distributed.run" not in cmdline:
            pids.append(pid)
    return pids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StoppedAndResumed:
    run: RunDir
    """On 2 CPU ranks: stopped by SIGINT after step 2, then resumed to the end."""
    single: RunDir
    """One process with the same global batch (4: 2 per rank x 2 ranks) and the same samples."""
    stopped_output: str
    resumed_output: str
    stop_step: int


def stop_and_resume_on_ranks(tmp_path: Path, strategy: str, steps: int = 16) -> StoppedAndResumed:
    """The run a test of ranks checks: what every rank does at a stop and a resume, and (against the run of
    one process) what DDP or FSDP2 computes, from one stopped and one resumed launch."""
    run, single = RunDir(tmp_path / f"ranks-{strategy}"), RunDir(tmp_path / "single")
    one = warm.run("train", "--config", str(small_config(tmp_path, 4, steps, "b4")), "--run-dir", str(single.path))
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-2000:]
    config = small_config(tmp_path, 2, steps, "b2")
    ranks = ["--nproc", "2", "--strategy", strategy]
    env = warm.rank_env(2, strategy=strategy)
    proc = warm.popen("train", "--config", str(config), "--run-dir", str(run.path), *ranks, env=env)
    try:
        wait_for_step(run, 2)
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: the launcher asks the ranks to stop
        stopped_output, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130 or "stopped" in stopped_output, stopped_output[-2000:]
    done = [e for e in run.iter_events() if isinstance(e, Done)]
    assert [d.status for d in done] == ["stopped"], stopped_output[-2000:]
    step = done[0].step
    assert 2 <= step < steps
    marked = [s for s, p in run.checkpoints() if (p / COMPLETE_MARKER).exists()]
    assert step in marked, (step, marked)  # every rank stopped at that step and saved it (its shard, FSDP2)
    resumed = warm.run("train", "--config", str(config), "--run-dir", str(run.path), *ranks, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"completed at step {steps}/{steps}" in resumed.stdout, resumed.stdout[-2000:]
    assert sorted(losses(run)) == list(range(1, steps + 1))
    return StoppedAndResumed(run, single, stopped_output, resumed.stdout, step)
