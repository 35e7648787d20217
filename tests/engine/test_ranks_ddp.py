"""DDP on two CPU ranks (`workbench train --nproc 2`, the path a multi-GPU run takes, over gloo instead of
GPUs): the ranks train as one process with the same global batch, a stop reaches every rank at one step
with a checkpoint, and the resumed run goes on with the losses of that one process (tests/engine/ranks.py
has the helpers)."""

from __future__ import annotations

import pytest

from tests.engine.ranks import losses, stop_and_resume_on_ranks
from workbench.protocol import Done, Log, TrainStart
from workbench.runs import COMPLETE_MARKER

pytestmark = pytest.mark.engine
STEPS = 16


def test_ddp_ranks_train_stop_and_resume_as_one_process(tmp_path):
    both = stop_and_resume_on_ranks(tmp_path, "ddp", STEPS)  # stopped at a step every rank saved, resumed
    run = both.run
    assert "2 ranks (CPU, gloo)" in both.stopped_output and "2 ranks, effective batch 4" in both.stopped_output
    # The same samples per step, split over two ranks: the losses of one process (DDP averages the
    # gradients), before the stop and after the resume (every rank restored its weights, its optimizer state
    # and its place in the data).
    assert losses(run) == pytest.approx(losses(both.single), rel=1e-4)
    events = list(run.iter_events())
    # Rank 0 alone writes: one start and one end per launch, one log per step.
    assert sorted(e.step for e in events if isinstance(e, Log)) == list(range(1, STEPS + 1))
    assert [d.status for d in events if isinstance(d, Done)] == ["stopped", "completed"]
    starts = [e for e in events if isinstance(e, TrainStart)]
    assert len(starts) == 2 and all(s.effective_batch == 4 and s.ranks == 2 for s in starts)
    assert (run.adapter_dir / "adapter_model.safetensors").exists()
    assert all((p / COMPLETE_MARKER).exists() for _, p in run.checkpoints())
    assert len(list((run.path / "ranks").glob("**/0/stdout.log"))) >= 1  # each rank's output kept
