"""Several ranks train as one process with the same global batch: DDP and FSDP2, full precision and 4-bit.
`workbench train --nproc 2` is the path a multi-GPU run takes, with CPU ranks over gloo instead of GPUs
(tests/engine/ranks.py has the helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.ranks import adapter_tensors, losses, small_config, workbench
from workbench.config import load_config, save_config
from workbench.protocol import Done, Log, TrainStart
from workbench.runs import COMPLETE_MARKER, RunDir

pytestmark = pytest.mark.engine


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
