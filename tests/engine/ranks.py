"""Helpers for the tests of training on several ranks through the real launcher (torchrun), on the CPU:
unsloth's CPU backend runs DDP over gloo. The tests are split over three files so that pytest-xdist can run
them side by side (each takes minutes)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workbench.config import load_config, save_config
from workbench.protocol import Log
from workbench.runs import RunDir

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


def workbench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


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
    """The rank processes of a run (not torchrun itself, whose command line names the module too)."""
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
