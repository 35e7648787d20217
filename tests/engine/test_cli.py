"""The command-line contract: exit codes, SIGINT, messages without tracebacks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
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
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "train", "--config", "configs/demo.toml", "--run-dir", str(run_dir),
         "--max-steps", "5000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step ") and int(line.split()[1].split("/")[0]) >= 3:
            break
        assert time.monotonic() < deadline, "".join(lines[-20:])
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
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
