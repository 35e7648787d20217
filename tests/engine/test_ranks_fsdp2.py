"""FSDP2 on two CPU ranks (unsloth's native sharding, UNSLOTH_FSDP2=1; `workbench train --nproc 2 --strategy
fsdp2`): each rank holds half of every parameter and of the optimizer state; the steps are those of one
process with the same global batch, a stop and a resume included, and the adapter written at the end is
whole (gathered from both ranks), not a shard (tests/engine/ranks.py has the helpers)."""

from __future__ import annotations

import pytest

from tests.engine.ranks import adapter_tensors, losses, stop_and_resume_on_ranks

pytestmark = pytest.mark.engine
STEPS = 16


def test_fsdp2_ranks_train_stop_and_resume_as_one_process_and_save_a_whole_adapter(tmp_path):
    both = stop_and_resume_on_ranks(tmp_path, "fsdp2", STEPS)  # stopped at a step every rank saved, resumed
    run = both.run
    assert "adapter saved" in both.resumed_output
    assert losses(run) == pytest.approx(losses(both.single), rel=1e-4)
    whole, gathered = adapter_tensors(both.single), adapter_tensors(run)
    assert sorted(gathered) == sorted(whole) and len(whole) > 0
    for name, tensor in whole.items():
        assert gathered[name].shape == tensor.shape, name
        # Adam's steps are nearly sign-sized, so float32 reduction-order noise shows at ~3e-4 of the scale.
        assert gathered[name].float().sub(tensor.float()).abs().max().item() <= 1e-3 * tensor.abs().max().item() + 1e-6
