"""`workbench eval` and `workbench score` on the tiny model: complete, well-formed files; a stopped eval
resumed gives the same rows as one that ran straight through (greedy); bad input is refused clearly."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests import warm
from workbench import evaluation as ev
from workbench.config import load_config, save_config

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("eval") / "runs" / "judged"
    trained = warm.run("train", "--config", "configs/demo.toml", "--run-dir", str(folder), "--max-steps", "3")
    assert trained.returncode == 0, trained.stdout[-2000:]
    return folder


def content(records: list[ev.RowRecord]) -> list[dict[str, object]]:
    """What an eval made, without its clock (when, and how long each row took)."""
    out = []
    for r in records:
        data = r.model_dump(exclude={"t"})
        for output in data["outputs"].values():
            output.pop("seconds")
        out.append(data)
    return out


def test_eval_writes_complete_well_formed_files(run: Path) -> None:
    proc = warm.run("eval", "--run", str(run), "--rows", "4", "--base", "--max-new-tokens", "24", "--name", "whole")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ROUGE-L F1" in proc.stdout and "tuned − base" in proc.stdout
    # The tuned answers come from the batched fast decoder (its greedy tokens equal `generate`'s:
    # test_fast_decode.py); the base model's from `generate` with the adapter off.
    assert "batched fast decoder" in proc.stdout, proc.stdout[-2000:]
    folder = run / "evals" / "whole"
    records = ev.read_records(folder / "eval.jsonl")
    assert [r.row for r in records] == [1, 2, 3, 4]  # the bundled held-out split's first rows
    assert all(set(r.outputs) == {"tuned", "base"} and r.reference and r.input for r in records)
    assert all(r.outputs["tuned"].tokens <= 24 + 1 for r in records)
    report = json.loads((folder / "eval.json").read_text(encoding="utf-8"))
    assert report["complete"] is True and report["rows_done"] == 4
    assert report["plan"]["rows"] == [1, 2, 3, 4] and report["plan"]["decoding"]["max_new_tokens"] == 24
    assert len(report["plan"]["config_fingerprint"]) == 64 and report["plan"]["template"] == "instruction"
    assert set(report["models"]) == {"tuned", "base"} and len(report["differences"]) == 4
    assert "transformers" in report["versions"]


def test_a_stopped_eval_resumed_equals_one_run_straight(run: Path) -> None:
    common = ["eval", "--run", str(run), "--rows", "6", "--max-new-tokens", "16", "--batch-size", "2"]
    straight = warm.run(*common, "--name", "straight")
    assert straight.returncode == 0, straight.stdout[-2000:]
    folder = run / "evals" / "stopped"
    proc = warm.popen(*common, "--name", "stopped")
    deadline = time.monotonic() + 300
    while len(ev.read_records(folder / "eval.jsonl")) < 2:  # the first batch is written
        assert proc.poll() is None and time.monotonic() < deadline, proc.output()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-2000:]
    assert "--resume continues" in out
    kept = ev.read_records(folder / "eval.jsonl")
    assert 2 <= len(kept) < 6 and json.loads((folder / "eval.json").read_text())["complete"] is False
    again = warm.run(*common, "--name", "stopped")
    assert again.returncode == 2 and "--resume" in again.stderr + again.stdout  # never silently replaced
    resumed = warm.run(*common, "--name", "stopped", "--resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    assert content(ev.read_records(folder / "eval.jsonl")) == content(
        ev.read_records(run / "evals" / "straight" / "eval.jsonl"))
    finished = json.loads((folder / "eval.json").read_text(encoding="utf-8"))
    reference = json.loads((run / "evals" / "straight" / "eval.json").read_text(encoding="utf-8"))
    assert finished["complete"] and finished["models"] == reference["models"]


def test_an_adapter_of_another_template_is_refused(run: Path, tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "runs" / "other"
    shutil.copytree(run, other, ignore=shutil.ignore_patterns("evals"))
    saved = other / "adapter" / "workbench-config.toml"
    config = load_config(saved)
    config.data.template = "gemma_chat"
    save_config(config, saved)
    proc = warm.run("eval", "--run", str(other), "--rows", "2")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "data.template 'gemma_chat'" in proc.stdout + proc.stderr


def test_score_two_files_as_eval_does(tmp_path: Path) -> None:
    refs = tmp_path / "refs.txt"
    preds = tmp_path / "preds.jsonl"
    refs.write_text("राम और सीता कल बाज़ार जाएँगे।\n", encoding="utf-8")
    preds.write_text(json.dumps({"summary": "राम कल बाज़ार जाएगा।"}, ensure_ascii=False) + "\n", encoding="utf-8")
    proc = warm.run("score", "--references", str(refs), "--predictions", str(preds), "--prediction-column", "summary",
               "--rows", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = json.loads(proc.stdout)
    assert document["models"]["tuned"]["rouge_f1"]["rouge1"] == pytest.approx(0.6)  # see tests/unit/test_scores.py
    assert document["rows"][0]["rouge1"] == 60.0
    uneven = warm.run("score", "--references", str(refs), "--predictions", str(refs), timeout=120)
    assert uneven.returncode == 0
    refs2 = tmp_path / "two.txt"
    refs2.write_text("a\nb\n", encoding="utf-8")
    mismatch = warm.run("score", "--references", str(refs2), "--predictions", str(refs), timeout=120)
    assert mismatch.returncode == 2 and "2 references but 1 predictions" in mismatch.stderr
