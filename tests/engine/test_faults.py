"""Faults injected into the real pipeline (tiny model, CPU): what survives and what the user is told."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from tests import warm
from workbench.config import save_config
from workbench.protocol import Done, Log, Status, TrainStart
from workbench.runs import RunDir

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]


def train_cli(config_path: Path, run_dir: Path, *extra: str, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return warm.run("train", "--config", str(config_path), "--run-dir", str(run_dir), *extra, timeout=timeout,
                    env={**os.environ, **(env or {})})


@pytest.fixture
def small(demo_config, tmp_path: Path):
    def make(**training) -> Path:
        demo_config.data.eval_fraction = 0.0
        demo_config.training.max_steps = training.pop("max_steps", 10)
        demo_config.training.save_steps = training.pop("save_steps", 2)
        demo_config.training.save_total_limit = 0
        for key, value in training.items():
            setattr(demo_config.training, key, value)
        path = tmp_path / "cfg.toml"
        save_config(demo_config, path)
        return path
    return make


def test_nan_loss_stops_within_one_step_and_keeps_the_checkpoint_before(small, tmp_path):
    run_dir = tmp_path / "runs" / "nan"
    proc = train_cli(small(max_steps=20), run_dir, env={"WORKBENCH_INJECT_NAN_AT_STEP": "5"})
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "NaN" in proc.stdout or "nan" in proc.stdout
    run = RunDir(run_dir)
    logs = [e for e in run.iter_events() if isinstance(e, Log)]
    assert logs[-1].step == 5 and logs[-1].loss is not None and math.isnan(logs[-1].loss)
    assert [s for s, _ in run.checkpoints()] == [2, 4]
    done = [e for e in run.iter_events() if isinstance(e, Done)][-1]
    assert done.status == "failed" and "step 5" in done.message


def test_oom_retry_halves_the_micro_batch_and_finishes(small, tmp_path):
    run_dir = tmp_path / "runs" / "oom-retry"
    cfg = small(max_steps=8, per_device_train_batch_size=4, gradient_accumulation_steps=1, auto_retry_oom=True)
    proc = train_cli(cfg, run_dir, env={"WORKBENCH_INJECT_OOM_AT_STEP": "3"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = RunDir(run_dir)
    statuses = [e.message for e in run.iter_events() if isinstance(e, Status)]
    assert any("micro-batch 2 x accumulation 2" in s for s in statuses), statuses
    done = [e for e in run.iter_events() if isinstance(e, Done)][-1]
    assert done.status == "completed" and done.step == 8
    steps = sorted({e.step for e in run.iter_events() if isinstance(e, Log)})
    assert steps == list(range(1, 9))


def test_oom_without_retry_names_the_sizes_and_what_to_change(small, tmp_path):
    run_dir = tmp_path / "runs" / "oom"
    cfg = small(max_steps=8, per_device_train_batch_size=4, gradient_accumulation_steps=1)
    proc = train_cli(cfg, run_dir, env={"WORKBENCH_INJECT_OOM_AT_STEP": "3"})
    assert proc.returncode == 1
    assert "micro-batch 4 x accumulation 1, max_seq_length 1024" in proc.stdout
    assert "per_device_train_batch_size" in proc.stdout and "auto_retry_oom" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert RunDir(run_dir).newest_checkpoint() is not None  # the checkpoint at step 2 is kept
    done = [e for e in RunDir(run_dir).iter_events() if isinstance(e, Done)]
    assert [(d.status, d.step) for d in done] == [("failed", 2)]  # the last step it finished, not 0


def test_disk_full_is_refused_before_training(small, tmp_path):
    run_dir = tmp_path / "runs" / "disk"
    proc = train_cli(small(), run_dir, env={"WORKBENCH_FREE_BYTES": "1000"})
    assert proc.returncode == 1
    assert "GiB free" in proc.stdout and "save_total_limit" in proc.stdout
    run = RunDir(run_dir)
    assert not run.checkpoints(complete_only=False)
    assert not [e for e in run.iter_events() if isinstance(e, Log)]


def test_a_planted_token_is_never_written(small, tmp_path):
    token = "hf_PLANTEDtokenXYZ0123456789abcdef"
    run_dir = tmp_path / "runs" / "token"
    proc = train_cli(small(max_steps=3), run_dir, env={"HF_TOKEN": token, "HUGGING_FACE_HUB_TOKEN": token})
    assert proc.returncode == 0, proc.stderr[-2000:]
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert token not in proc.stdout + proc.stderr


def test_invalid_rows_need_consent(demo_config, tmp_path):
    data = tmp_path / "rows.jsonl"
    good = [{"dialogue": f"राम: नमस्ते {i}\nसीता: कैसे हो?", "summary": f"दोनों मिले {i}।"} for i in range(12)]
    lines = [json.dumps(r, ensure_ascii=False) for r in good]
    lines.insert(2, '{"dialogue": "broken')
    lines.insert(5, json.dumps({"dialogue": "   ", "summary": "x"}))
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    demo_config.data.source = str(data)
    demo_config.data.eval_fraction = 0.0
    demo_config.training.max_steps = 3
    cfg = tmp_path / "rows.toml"
    save_config(demo_config, cfg)
    refused = train_cli(cfg, tmp_path / "runs" / "refused")
    assert refused.returncode == 2
    assert "row 3" in refused.stdout and "row 6" in refused.stdout and "--skip-bad-rows" in refused.stdout
    accepted = train_cli(cfg, tmp_path / "runs" / "accepted", "--skip-bad-rows")
    assert accepted.returncode == 0, accepted.stdout[-2000:]
    assert "Skipping 2 invalid rows" in accepted.stdout


def test_packing_the_attention_cannot_keep_apart_is_reported(small, demo_config, tmp_path):
    """Packing needs the sample mask (model.attention = flex): without it the run trains padded and says so.
    (Packing with it is tested in test_packing.py.)"""
    demo_config.data.packing = True
    demo_config.model.attention = "default"
    config = small(max_steps=2, save_steps=100)
    run = tmp_path / "run"
    result = train_cli(config, run)
    assert result.returncode == 0, result.stderr[-2000:]
    said = [e.message for e in RunDir(run).events() if isinstance(e, Status)]
    assert any("Packing is off" in m and "keeps packed samples apart" in m for m in said), said
    start = next(e for e in RunDir(run).events() if isinstance(e, TrainStart))
    assert start.packed_rows is None and start.attention == "eager"
