"""A stop on ranks: every rank stops at one step with a checkpoint, and the resumed run has the uninterrupted
losses. `workbench train --nproc 2` is the path a multi-GPU run takes, with CPU ranks over gloo instead of
GPUs (tests/engine/ranks.py has the helpers)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.engine.ranks import ROOT, losses, small_config, wait_for_step, workbench
from workbench.protocol import Done
from workbench.runs import COMPLETE_MARKER, RunDir

pytestmark = pytest.mark.engine


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
