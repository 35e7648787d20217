"""QLoRA on ranks: 4-bit DDP ranks train as one 4-bit process with the same global batch. `workbench train
--nproc 2` is the path a multi-GPU run takes, with CPU ranks over gloo instead of GPUs. Full precision, stops
and resumes: test_ranks_ddp.py and test_ranks_fsdp2.py (tests/engine/ranks.py has the helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import warm
from tests.engine.ranks import losses, small_config
from workbench.config import load_config, save_config
from workbench.runs import RunDir

pytestmark = pytest.mark.engine


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
    single = warm.run("train", "--config", str(config_4bit(4, "q4b4")), "--run-dir", str(one.path))
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
    assert "(4-bit)" in single.stdout  # quantized, not the full-precision fallback
    ranks = warm.run("train", "--config", str(config_4bit(2, "q4b2")), "--run-dir", str(two.path), "--nproc", "2")
    assert ranks.returncode == 0, ranks.stdout[-2000:] + ranks.stderr[-2000:]
    assert "4-bit = True" in "".join(p.read_text() for p in (two.path / "ranks").glob("**/std*.log"))
    assert losses(two) == pytest.approx(losses(one), rel=1e-4)
