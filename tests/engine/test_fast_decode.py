"""The fast chat decoder (merged bf16 copy, static cache, grouped attention) computes what the model it was
merged from computes: logits after a prompt and after each decoded token, greedy tokens, the sliding
window and both soft-caps, with and without the adapter. Run in a process of its own
(scripts/fast_decode_probe.py), since unsloth patches transformers for the whole process.

The compiled CUDA-graph step is the same `layer_forward` compiled; it is checked against this eager path
on the GPU machine (`benchmarks/gpu_chat.py`, BENCHMARKS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import warm

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def probe() -> dict:
    # A process of its own, forked warm (tests/warm.py: the imports done once per worker, not ~15 s each).
    proc = warm.python(str(ROOT / "tests/engine/scripts/fast_decode_probe.py"), cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_merged_logits_equal_the_adapter_model(probe):
    gap = probe["tiny"]["gap"]
    assert probe["tiny"]["supports"] is None
    assert gap["max_abs"] < 1e-4 * max(1.0, gap["scale"]), gap


def test_greedy_answer_is_the_generate_answer(probe):
    tiny = probe["tiny"]
    assert len(tiny["fast_tokens"]) > 5
    assert tiny["fast_tokens"] == tiny["reference_tokens"]
    assert tiny["fast_text"] == tiny["reference_text"]
    assert tiny["streamed"].startswith(tiny["fast_text"])  # streamed pieces add up to the text


def test_a_cancel_stops_before_the_first_token(probe):
    assert probe["tiny"]["cancelled_tokens"] == 0 and probe["tiny"]["cancelled_flag"] is True


def test_memory_estimate_is_the_copy_it_makes(probe):
    tiny = probe["tiny"]
    assert tiny["bytes_estimate"] == tiny["bytes_actual"]


def test_sliding_window_and_soft_caps_as_transformers_applies_them(probe):
    window = probe["window"]
    assert window["windows"][0] == 8 and window["windows"][1] > 1000
    assert window["gap"]["max_abs"] < 1e-4, window["gap"]
    assert window["base_gap"]["max_abs"] < 1e-4, window["base_gap"]  # the adapter off: the base weights alone


def test_rows_decoded_together_answer_as_each_alone(probe):
    tiny = probe["tiny"]
    assert tiny["batched"] == tiny["alone"]
    assert len({len(a) for a in tiny["alone"]}) >= 1 and all(tiny["alone"])


def test_rows_at_different_positions_across_the_window(probe):
    assert probe["window"]["row_gap"] < 1e-4, probe["window"]


def test_the_standard_path_on_the_cpu_applies_the_soft_cap(probe):
    """SDPA, which the CPU load picks for Gemma-2, drops the attention soft-cap; generation switches to
    eager attention, which applies it (the fast decoder always does)."""
    assert probe["tiny"]["attention_after_standard_path"] == "eager"
