"""Shared fixtures. The tiny Gemma-2 is built once per test session into a temporary cache, so tests
never write to the user's ~/.cache and CI starts clean."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Set in pytest's main process, before pytest-xdist starts its workers: they inherit it and share one
# cache (the tiny model is built once, under a file lock, by whichever worker asks first).
if not os.environ.get("WORKBENCH_CACHE"):
    os.environ["WORKBENCH_CACHE"] = tempfile.mkdtemp(prefix="workbench-test-cache-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers run side by side, one per core: a torch of one thread each (and in every engine and
    # `workbench train` a worker starts). With a thread per core in each, OpenMP's threads wait for each
    # other at every barrier whenever one is preempted (boot.limit_cpu_threads has the measurement).
    os.environ.setdefault("OMP_NUM_THREADS", "1")

MAX_WORKERS = 4
"""`-n auto` takes one worker per core up to this: each worker's engines hold about 1 GB."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


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


LONGEST_FIRST = (
    "tests/engine/test_ranks_fsdp2.py",
    "tests/ui/test_config_form.py",  # needs no model: runs while the first file builds the tiny one (~1 min)
    "tests/engine/test_ranks_faults.py",
    "tests/engine/test_ranks_ddp.py",
    "tests/engine/test_engine.py",
    "tests/ui/test_snapshots.py",
    "tests/ui/test_snapshots_eval.py",
    "tests/engine/test_ranks.py",
)
"""The files that take longest (seconds of worker time in a full run, --junitxml), handed out first.

pytest-xdist gives a worker a whole file at a time (--dist loadfile) and, left to itself, hands out the
files with the most tests first: the rank tests, one or four tests of one to two minutes each, came last,
and one worker ran them alone for the last two minutes. With --no-loadscope-reorder (pyproject) the files go
in this order, then the rest in collection order."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def position(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=position)  # stable: the order within a file, and of the other files, is kept
