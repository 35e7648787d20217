"""The command-line contract: exit codes, SIGINT, messages without tracebacks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import warm

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`workbench ARGS…` forked warm (tests/warm.py): the command as `python -m workbench.cli` runs it."""
    return warm.run(*args, timeout=timeout)


def fresh_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter: for what the warm start skips (what importing prints, the whole start)."""
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_bad_config_exits_2_naming_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[lora]\nr = -3\n[training]\noptim = "adam"\n', encoding="utf-8")
    proc = run_cli("train", "--config", str(bad))
    assert proc.returncode == 2
    assert "lora.r" in proc.stderr and "training.optim" in proc.stderr and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_config_exits_2(tmp_path):
    proc = run_cli("preview", "--config", str(tmp_path / "nope.toml"))
    assert proc.returncode == 2 and "no such config file" in proc.stderr


def test_gpus_without_nvidia_says_so():
    proc = run_cli("gpus")
    assert proc.returncode == 0
    assert "GPU" in proc.stdout


@pytest.mark.engine
def test_preview_prints_rendered_rows_and_statistics():
    proc = run_cli("preview", "--config", "configs/demo.toml", "--rows", "1", timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<bos>" in proc.stdout and "### सारांश:" in proc.stdout
    assert "tokens / max 1024" in proc.stdout and "rows over max_seq_length" in proc.stdout


@pytest.mark.engine
def test_offline_hub_dataset_is_a_clear_message(tmp_path):
    proc = run_cli("preview", "--config", "configs/demo.toml", "--data", "someone/not-cached-dataset", timeout=180)
    assert proc.returncode == 2
    assert "someone/not-cached-dataset" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.engine
def test_sigint_stops_at_step_boundary_with_checkpoint(tmp_path):
    run_dir = tmp_path / "runs" / "sigint"
    # Forked warm (the CLI's own SIGINT handler stops the run; the interpreter's start is not what this
    # tests). Output (stdout and stderr) to a file opened for appending, read by name while it runs.
    out_path = tmp_path / "out.log"
    with open(out_path, "ab") as out:
        proc = warm.server().popen(["train", "--config", "configs/demo.toml", "--run-dir", str(run_dir),
                                    "--max-steps", "5000"], merge_stderr=True, out=out)
    deadline = time.monotonic() + 240
    seen = 0  # characters of the output up to the line of step 3

    def reached_step_3() -> bool:
        nonlocal seen
        text = out_path.read_text(encoding="utf-8", errors="replace")
        position = 0
        for line in text.splitlines(keepends=True):
            position += len(line)
            if line.startswith("step ") and line.endswith("\n") and int(line.split()[1].split("/")[0]) >= 3:
                seen = position
                return True
        return False

    while not reached_step_3():
        assert proc.poll() is None and time.monotonic() < deadline, out_path.read_text(errors="replace")[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    rest = out_path.read_text(encoding="utf-8", errors="replace")[seen:]
    assert proc.returncode == 130, rest[-2000:]
    from workbench.runs import RunDir

    run = RunDir(run_dir)
    assert run.newest_checkpoint() is not None
    assert "stopped" in rest


def test_offline_hub_model_is_a_clear_message():
    proc = run_cli("preview", "--config", "configs/gemma2-9b-hindi.toml", "--rows", "1", timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "unsloth/gemma-2-9b" in proc.stderr and "offline" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.engine
def test_headless_training_prints_one_line_per_step_and_nothing_else(tmp_path):
    run_dir = tmp_path / "runs" / "quiet"
    proc = fresh_cli("train", "--config", "configs/demo.toml", "--run-dir", str(run_dir), "--max-steps", "3",
                   timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    steps = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["1/3", "2/3", "3/3"]
    assert "{'loss'" not in proc.stdout and "Unsloth" not in proc.stdout, proc.stdout
    assert proc.stderr.strip() == "", proc.stderr[-2000:]  # library chatter went to the run's train.log
    assert (run_dir / "train.log").stat().st_size > 0
    assert proc.stdout.splitlines()[-1].startswith("completed at step 3/3")


@pytest.mark.engine
def test_export_command_exports_a_run_and_refuses_bad_input(tmp_path):
    run_dir = tmp_path / "runs" / "to-export"
    trained = run_cli("train", "--config", "configs/demo.toml", "--run-dir", str(run_dir), "--max-steps", "2",
                      timeout=300)
    assert trained.returncode == 0, trained.stdout[-2000:]
    out = tmp_path / "merged"
    proc = run_cli("export", str(run_dir), "--as", "merged_16bit", "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Saved merged_16bit" in proc.stdout and "proven:" in proc.stdout
    assert (out / "model.safetensors").exists() and (out / "workbench.json").exists()
    again = run_cli("export", str(run_dir), "--as", "merged_16bit", "--out", str(out), timeout=300)
    assert again.returncode == 2 and "already exists" in again.stdout + again.stderr
    bad_kind = run_cli("export", str(run_dir), "--as", "onnx")
    assert bad_kind.returncode == 2 and "onnx" in bad_kind.stderr
    bad_run = run_cli("export", str(tmp_path / "nope"))
    assert bad_run.returncode == 2 and "not a run folder" in bad_run.stderr
    bad_step = run_cli("export", str(run_dir), "--checkpoint", "3", "--out", str(tmp_path / "c3"), timeout=300)
    assert bad_step.returncode == 2 and "no complete checkpoint at step 3" in bad_step.stdout
