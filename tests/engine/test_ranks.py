"""Training on several ranks through the real launcher (torchrun), on the CPU: unsloth's CPU backend runs DDP
over gloo. `workbench train --nproc 2` is the path a multi-GPU run takes, with CPU ranks instead of GPUs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from workbench.config import load_config, save_config
from workbench.protocol import Checkpoint, Done, Log, TrainStart
from workbench.runs import COMPLETE_MARKER, RunDir

pytestmark = pytest.mark.engine

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


def test_two_cpu_ranks_train_as_one_rank_with_the_same_global_batch_ddp_and_fsdp2(tmp_path):
    one, two = RunDir(tmp_path / "one"), RunDir(tmp_path / "two")
    single = workbench("train", "--config", str(small_config(tmp_path, 4, 3, "b4")), "--run-dir", str(one.path))
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
    ranks = workbench("train", "--config", str(small_config(tmp_path, 2, 3, "b2")), "--run-dir", str(two.path),
                      "--nproc", "2")
    assert ranks.returncode == 0, ranks.stdout[-2000:] + ranks.stderr[-2000:]
    assert "2 ranks (CPU, gloo)" in ranks.stdout and "completed at step 3/3" in ranks.stdout
    # The same samples per step, split over two ranks: the same losses (DDP averages the gradients).
    assert losses(two) == pytest.approx(losses(one), rel=1e-4)
    events = list(two.iter_events())
    # Rank 0 alone writes: one start, one log per step, one end.
    assert sum(isinstance(e, TrainStart) for e in events) == 1
    assert sorted(e.step for e in events if isinstance(e, Log)) == [1, 2, 3]
    assert sum(isinstance(e, Done) for e in events) == 1
    start = next(e for e in events if isinstance(e, TrainStart))
    assert start.effective_batch == 4 and start.ranks == 2  # 2 per rank x 2 ranks
    assert "2 ranks, effective batch 4" in ranks.stdout
    assert (two.adapter_dir / "adapter_model.safetensors").exists()
    assert all((p / COMPLETE_MARKER).exists() for _, p in two.checkpoints())
    assert len(list((two.path / "ranks").glob("**/0/stdout.log"))) == 1  # each rank's output kept

    # FSDP2 (unsloth's native sharding, UNSLOTH_FSDP2=1): each rank holds half of every parameter; the steps
    # are the same, and the adapter written at the end is whole (gathered from both ranks), not a shard.
    sharded = RunDir(tmp_path / "fsdp2")
    fsdp2 = workbench("train", "--config", str(small_config(tmp_path, 2, 3, "b2")), "--run-dir", str(sharded.path),
                      "--nproc", "2", "--strategy", "fsdp2")
    assert fsdp2.returncode == 0, fsdp2.stdout[-2000:] + fsdp2.stderr[-2000:]
    assert "adapter saved" in fsdp2.stdout
    assert losses(sharded) == pytest.approx(losses(one), rel=1e-4)
    whole, gathered = adapter_tensors(one), adapter_tensors(sharded)
    assert sorted(gathered) == sorted(whole) and len(whole) > 0
    for name, tensor in whole.items():
        assert gathered[name].shape == tensor.shape, name
        # Adam's first steps are nearly sign-sized, so float32 reduction-order noise shows at ~3e-4 of the scale.
        assert gathered[name].float().sub(tensor.float()).abs().max().item() <= 1e-3 * tensor.abs().max().item() + 1e-6


def test_two_cpu_ranks_in_4bit_train_as_one_4bit_process(tmp_path):
    """QLoRA on ranks: bitsandbytes' CPU backend quantizes the tiny model's weights on each rank (unsloth's CPU
    loader), and DDP over gloo gives the losses of one 4-bit process with the same global batch."""
    def config_4bit(batch: int, name: str) -> Path:
        path = small_config(tmp_path, batch, 3, name)
        config = load_config(path)
        config.model.load_in_4bit = True
        save_config(config, path)
        return path

    one, two = RunDir(tmp_path / "one-4bit"), RunDir(tmp_path / "two-4bit")
    single = workbench("train", "--config", str(config_4bit(4, "q4b4")), "--run-dir", str(one.path))
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
    assert "(4-bit)" in single.stdout  # quantized, not the full-precision fallback
    ranks = workbench("train", "--config", str(config_4bit(2, "q4b2")), "--run-dir", str(two.path), "--nproc", "2")
    assert ranks.returncode == 0, ranks.stdout[-2000:] + ranks.stderr[-2000:]
    assert "4-bit = True" in "".join(p.read_text() for p in (two.path / "ranks").glob("**/std*.log"))
    assert losses(two) == pytest.approx(losses(one), rel=1e-4)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_a_stop_reaches_every_rank_and_the_resumed_run_has_the_uninterrupted_losses(tmp_path, strategy):
    steps = 16
    run, whole = RunDir(tmp_path / "stopped"), RunDir(tmp_path / "whole")
    config = small_config(tmp_path, 2, steps, "long")
    ranks = ["--nproc", "2", "--strategy", strategy]
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "train", "--config", str(config), "--run-dir",
                             str(run.path), *ranks], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT)
    try:
        wait_for_step(run, 2)
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: the launcher asks the ranks to stop
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 or "stopped" in out, out[-2000:]
    done = [e for e in run.iter_events() if isinstance(e, Done)]
    assert [d.status for d in done] == ["stopped"], out[-2000:]
    step = done[0].step
    assert 2 <= step < steps
    marked = [s for s, p in run.checkpoints() if (p / COMPLETE_MARKER).exists()]
    assert step in marked, (step, marked)  # both ranks stopped at that step and it was saved
    resumed = workbench("train", "--config", str(config), "--run-dir", str(run.path), *ranks, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"completed at step {steps}/{steps}" in resumed.stdout
    uninterrupted = workbench("train", "--config", str(config), "--run-dir", str(whole.path), *ranks)
    assert uninterrupted.returncode == 0, uninterrupted.stdout[-2000:] + uninterrupted.stderr[-2000:]
    # Every rank restored its weights, optimizer state (its shard, under FSDP2) and data position.
    after = {s: loss for s, loss in losses(run).items() if s > step}
    assert after and after == pytest.approx({s: losses(whole)[s] for s in after}, rel=1e-4)


def test_a_rank_killed_marks_the_run_failed_and_keeps_the_checkpoint(tmp_path):
    run = RunDir(tmp_path / "killed")
    config = small_config(tmp_path, 2, 60, "kill", save_steps=2)
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "train", "--config", str(config), "--run-dir",
                             str(run.path), "--nproc", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT)
    try:
        wait_for_step(run, 3)
        victims = rank_pids(run.path)
        assert len(victims) == 2, victims
        os.kill(int(max(victims, key=int)), signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = [e for e in run.iter_events() if isinstance(e, Done)]
    assert [d.status for d in done] == ["failed"], out[-2000:]
    assert proc.returncode != 0
    assert "A rank ended" in out + done[0].message, out[-2000:]
    assert not run.adapter_dir.exists()
    newest = run.newest_checkpoint()  # only complete checkpoints count
    assert newest is not None and (newest / COMPLETE_MARKER).exists()
    assert any(isinstance(e, Checkpoint) for e in run.iter_events())


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


def test_out_of_memory_on_ranks_fails_the_run_at_once_instead_of_retrying_on_one_rank(tmp_path):
    """auto_retry_oom halves the micro-batch of one process; on ranks that would leave the others waiting in a
    collective, so the run fails with the out-of-memory message and keeps its checkpoint for a resume."""
    run = RunDir(tmp_path / "oom")
    path = small_config(tmp_path, 2, 8, "oom", save_steps=2)
    config = load_config(path)
    config.training.auto_retry_oom = True
    save_config(config, path)
    env = {**os.environ, "WORKBENCH_INJECT_OOM_AT_STEP": "3"}
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "train", "--config", str(path), "--run-dir",
                           str(run.path), "--nproc", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=env)
    assert proc.returncode != 0
    done = [e for e in run.iter_events() if isinstance(e, Done)]
    assert [d.status for d in done] == ["failed"], proc.stdout[-2000:]
    assert "out of memory" in done[0].message and "retrying" not in proc.stdout
    assert run.newest_checkpoint() is not None and run.newest_checkpoint().name == "checkpoint-2"


def test_two_nodes_on_one_machine_from_print_launch(tmp_path):
    """`--print-launch` prints one command per node; both started here (two launcher agents, one rank
    each, rendezvous on localhost) train the run together."""
    run_dir = tmp_path / "nodes"
    config = small_config(tmp_path, 2, 2, "nodes")
    printed = workbench("train", "--config", str(config), "--run-dir", str(run_dir), "--nproc", "1", "--nnodes", "2",
                        "--rdzv", f"127.0.0.1:{free_port()}", "--print-launch")
    assert printed.returncode == 0, printed.stderr
    commands = [line for line in printed.stdout.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2 and "--node-rank=0" in commands[0] and "--node-rank=1" in commands[1]
    assert (run_dir / "launch.toml").exists()
    agents = [subprocess.Popen(["bash", "-c", line.replace("python ", f"{sys.executable} ", 1)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for line in commands]
    outputs = [a.communicate(timeout=400)[0] for a in agents]
    assert [a.returncode for a in agents] == [0, 0], [o[-1500:] for o in outputs]
    run = RunDir(run_dir)
    assert [d.status for d in run.iter_events() if isinstance(d, Done)] == ["completed"]
    assert sorted(losses(run)) == [1, 2]


def test_the_engine_runs_a_run_on_ranks_and_stops_it(engine, tmp_path):
    """The TUI's path: `Train` with ranks starts torchrun from the engine; the events of rank 0 reach the
    client; Stop reaches every rank; chat, pause and probes wait for the run to end; training.gpus the
    machine lacks is refused at once, naming the field."""
    from tests.engine.test_engine import wait_done
    from workbench import requests as rq
    from workbench.client import EngineError

    config = load_config(small_config(tmp_path, 2, 40, "engine"))
    config.output.runs_dir = str(tmp_path / "runs")
    with pytest.raises(EngineError, match=r"training\.gpus = 8"):
        lacking = config.model_copy(deep=True)
        lacking.training.gpus = 8
        engine.call(rq.Train(config=lacking), timeout=60)
    started = engine.call(rq.Train(config=config, cpu_ranks=2), timeout=60)
    run = RunDir(started.run_dir)
    wait_for_step(run, 1)
    # `workbench attach RUN` reaches the engine that relays the ranks: rank 0 names it in engine.json.
    info = run.engine_info()
    assert info is not None and info["socket"] == engine.socket_path and run.engine_alive()
    with pytest.raises(EngineError, match="2 ranks"):
        engine.call(rq.Pause(), timeout=30)
    assert engine.call(rq.Stop(), timeout=30).stopping
    done = wait_done(engine, started.run_dir, timeout=300)
    assert done.status == "stopped" and done.step >= 1
    streamed = [e for e in list(engine.events) if isinstance(e, Log) and e.run == run.name]
    assert streamed and len({e.step for e in streamed}) == len(streamed)  # rank 0's, once each
    assert run.newest_checkpoint() is not None
