"""The generation eval during training: events that replay, the best checkpoint marked and kept from
rotation, and losses exactly those of a run without it (the pause for inference puts everything back)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import warm
from workbench.config import save_config
from workbench.protocol import BestCheckpoint, GenerationEval, Log
from workbench.runs import RunDir
from workbench.ui.history import fold

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]


def train(config_path: Path, run_dir: Path) -> RunDir:
    proc = warm.run("train", "--config", str(config_path), "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return RunDir(run_dir)


def test_generation_eval_marks_the_best_and_leaves_the_losses_alone(demo_config, tmp_path: Path) -> None:
    demo_config.data.eval_fraction = 0.0
    demo_config.training.max_steps = 9
    demo_config.training.save_steps = 100  # only the best (and the end) is saved
    demo_config.training.save_total_limit = 1
    demo_config.lora.dropout = 0.1  # dropout draws random numbers: the pause must put their state back
    plain = tmp_path / "plain.toml"
    save_config(demo_config, plain)
    demo_config.eval.generate_steps = 3
    demo_config.eval.generate_rows = 2
    demo_config.eval.max_new_tokens = 12
    demo_config.eval.best_metric = "rougeL"
    demo_config.eval.do_sample = True  # sampling draws random numbers: the pause must put their state back
    judged = tmp_path / "judged.toml"
    save_config(demo_config, judged)

    reference = train(plain, tmp_path / "runs" / "plain")
    run = train(judged, tmp_path / "runs" / "judged")

    def losses(r: RunDir) -> list[float | None]:
        return [e.loss for e in r.iter_events() if isinstance(e, Log)]

    assert losses(run) == losses(reference), "summarizing mid-run changed the training"
    generated = [e for e in run.iter_events() if isinstance(e, GenerationEval)]
    assert [e.step for e in generated] == [3, 6, 9] and all(e.rows == 2 for e in generated)
    bests = [e for e in run.iter_events() if isinstance(e, BestCheckpoint)]
    assert bests and bests[0].step == 3 and bests[0].metric == "rougeL"
    best = bests[-1]
    marked = [p for _, p in run.checkpoints() if (p / "workbench-best").exists()]
    assert [p.name for p in marked] == [f"checkpoint-{best.step}"], "one best, kept from rotation"
    history = fold(run.iter_events(), 100)  # what a re-attached Train pane shows
    assert [g.step for g in history.generation_evals] == [3, 6, 9] and history.best == best
    assert any("summaries at step 3" in line for line in history.lines)
