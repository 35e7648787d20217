"""Packed and padded training see the same thing: through the engine's real plan, TRL trainer and collator
on the tiny model, each sample's loss is the same packed (several samples per row, positions restarting,
the sample mask) as padded (one sample per row), and so is the number of trained tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import warm

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict:
    runs = tmp_path_factory.mktemp("runs")
    # A process of its own, forked warm (tests/warm.py: the imports done once per worker, not ~15 s each).
    proc = warm.python(str(ROOT / "tests/engine/scripts/packing_probe.py"), str(ROOT / "configs/demo.toml"), str(runs),
                       timeout=600, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("PROBE "):])


def test_each_sample_has_the_same_loss_packed_and_padded(probe: dict) -> None:
    padded, packed = probe["padded"], probe["packed"]
    assert packed["samples"] == padded["samples"] == 11
    assert packed["rows"] < padded["rows"]  # it did pack
    assert packed["trained_tokens"] == padded["trained_tokens"] == packed["label_tokens"] == padded["label_tokens"]
    assert packed["losses"] == pytest.approx(padded["losses"], abs=1e-4)


def test_positions_restart_at_every_packed_sample(probe: dict) -> None:
    lengths = probe["seq_lengths_row0"]
    assert len(lengths) >= 2
    want = [p for n in lengths for p in range(n)]
    assert probe["positions_row0"][: len(want)] == want


def test_the_sample_mask_served_the_forward(probe: dict) -> None:
    assert "sample-masked" in probe["packed"]["attention"]
    assert probe["packed"]["flex_calls"] > 0


def test_the_installed_unsloth_has_the_function_the_cuda_path_replaces(probe: dict) -> None:
    assert probe["unsloth_patch"] is None


def test_default_attention_turns_the_sample_mask_off_on_the_same_model(probe: dict) -> None:
    assert probe["default"] == {"path": "eager", "packing_ok": False, "flex_calls_after": 0,
                                "attn_implementation": "eager"}
