"""FSDP2 on two CPU ranks (unsloth's native sharding, UNSLOTH_FSDP2=1; `workbench train --nproc 2 --strategy
fsdp2`): each rank holds half of every parameter and of the optimizer state; the steps are those of one
process with the same global batch, a stop and a resume included, and the adapter written at the end is
whole (gathered from both ranks), not a shard (tests/engine/ranks.py has the helpers)."""

from __future__ import annotations

import pytest

from tests.engine.ranks import adapter_tensors, losses, stop_and_resume_on_ranks
from workbench.runs import COMPLETE_MARKER

pytestmark = pytest.mark.engine
STEPS = 16


def test_fsdp2_ranks_train_stop_and_resume_as_one_process_and_save_a_whole_adapter(tmp_path):
    both = stop_and_resume_on_ranks(tmp_path, "fsdp2", STEPS)
    run, step = both.run, both.stop_step
    assert 2 <= step < STEPS
    marked = [s for s, p in run.checkpoints() if (p / COMPLETE_MARKER).exists()]
    assert step in marked, (step, marked)  # each rank saved its shard at that step
    assert f"completed at step {STEPS}/{STEPS}" in both.resumed_output and "adapter saved" in both.resumed_output
    assert sorted(losses(run)) == list(range(1, STEPS + 1))
    assert losses(run) == pytest.approx(losses(both.single), rel=1e-4)
    whole, gathered = adapter_tensors(both.single), adapter_tensors(run)
    assert sorted(gathered) == sorted(whole) and len(whole) > 0
    for name, tensor in whole.items():
        assert gathered[name].shape == tensor.shape, name
        # Adam's steps are nearly sign-sized, so float32 reduction-order noise shows at ~3e-4 of the scale.
        assert gathered[name].float().sub(tensor.float()).abs().max().item() <= 1e-3 * tensor.abs().max().item() + 1e-6
