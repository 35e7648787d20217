"""Every rank's memory report reaches rank 0 (which alone writes events): gathered over real gloo ranks started
by torchrun, and shown per rank by the CLI, the run history and the Train pane's report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.engine.rank_memory import memory_events, visible_gpu
from workbench.formatting import memory_report
from workbench.protocol import Memory
from workbench.ui.history import event_key, fold
from workbench.ui.widgets.gpu_panel import memory_report_markup

ROOT = Path(__file__).resolve().parents[2]


def reading(**overrides: object) -> dict[str, object]:
    base = {"gpu_name": "NVIDIA H200", "gpu_index": 0, "total_gib": 139.8, "reserved_before_gib": 6.0,
            "reserved_gib": 8.0, "peak_gib": 9.5, "lora_gib": 3.5}
    return {**base, **overrides}


def test_two_gloo_ranks_gather_their_readings_in_rank_order():
    script = ROOT / "tests" / "engine" / "scripts" / "gather_memory.py"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(script)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [Memory.model_validate(json.loads(line)) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(e.rank, e.ranks, e.gpu_name, e.gpu_index, e.peak_gib) for e in events] == [
        (0, 2, "card-0", 2, 10.0), (1, 2, "card-1", 3, 11.0)]


def test_one_process_reports_itself_without_a_collective():
    [event] = memory_events("run", "before", 6.0, reading=reading())
    assert (event.rank, event.ranks, event.phase) == (0, 1, "before")


@pytest.mark.parametrize(("visible", "local", "expected"), [
    (None, 1, 1), ("2,3", 1, 3), ("2,3", 0, 2), ("GPU-5d1c-uuid", 0, None), ("", 0, None)])
def test_the_gpu_index_is_nvmls_through_cuda_visible_devices(monkeypatch, visible, local, expected):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert visible_gpu(local) == expected


def rank_events(phase: str = "step") -> list[Memory]:
    return [Memory(run="r", phase=phase, rank=0, ranks=2, **reading(gpu_index=2)),
            Memory(run="r", phase=phase, rank=1, ranks=2, **reading(gpu_index=3, peak_gib=31.0))]


def test_the_cli_line_names_the_rank_and_its_gpu():
    first, second = (memory_report(e) for e in rank_events())
    assert first.startswith("rank 0 on GPU 2: GPU memory (NVIDIA H200")
    assert second.startswith("rank 1 on GPU 3:") and "peak 31.00 GiB" in second
    assert memory_report(Memory(run="r", phase="after", **reading())).startswith("GPU memory (NVIDIA H200")


def test_the_train_pane_report_has_a_line_per_rank():
    text = memory_report_markup(rank_events())
    lines = text.splitlines()
    assert "2 ranks" in lines[0]
    assert lines[1].strip().startswith("rank 0 · GPU 2 NVIDIA H200") and "9.50 GiB" in lines[1]
    assert lines[2].strip().startswith("rank 1 · GPU 3") and "31.00 GiB (22.2%)" in lines[2]
    single = memory_report_markup([Memory(run="r", phase="after", **reading())])
    assert "\n" not in single and "peak 9.50 GiB" in single


def test_the_history_keeps_each_ranks_newest_report_and_forgets_ranks_a_later_run_lacks():
    events = rank_events("before") + rank_events("step")
    history = fold(events, 100)
    assert sorted(history.memory) == [0, 1] and history.memory[1].phase == "step"
    history = fold([*events, Memory(run="r", phase="before", **reading())], 100)  # the next run: one GPU
    assert list(history.memory) == [0] and history.memory[0].ranks == 1


def test_reports_of_two_ranks_made_at_the_same_instant_are_two_events():
    first, second = rank_events()
    second = second.model_copy(update={"t": first.t})
    assert event_key(first) != event_key(second)
