"""Shared fixtures. The tiny Gemma-2 is built once per test session into a temporary cache, so tests
never write to the user's ~/.cache and CI starts clean."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_CACHE = tempfile.mkdtemp(prefix="workbench-test-cache-")
os.environ.setdefault("WORKBENCH_CACHE", _CACHE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def demo_config(tmp_path: Path):
    from workbench.config import load_config

    config = load_config(ROOT / "configs" / "demo.toml")
    config.output.runs_dir = str(tmp_path / "runs")
    # The demo's recipe on fewer rows and a smaller micro-batch: the tests exercise behaviour, and CI
    # has 2 cores and a 10-minute budget for the whole suite.
    config.data.max_rows = 48
    config.training.per_device_train_batch_size = 2
    config.eval.generate_steps = 0  # summarizing mid-run is tested where it is the point (test_generation_eval)
    return config
