"""The adapter the engine saves reloads with plain peft (safetensors) and generates."""

from __future__ import annotations

import pytest

from tests import warm

pytestmark = pytest.mark.engine

SCRIPT = r"""
import sys
from pathlib import Path
from workbench.engine.boot import boot
boot()
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from workbench.engine.tiny import build_tiny_model
from workbench.templates import render_prompt
adapter = Path(sys.argv[1])
base = AutoModelForCausalLM.from_pretrained(build_tiny_model(), attn_implementation="eager")
model = PeftModel.from_pretrained(base, adapter, use_safetensors=True)
tok = AutoTokenizer.from_pretrained(adapter)
assert tok.chat_template, "the tokenizer keeps its chat template"
ids = tok(render_prompt("instruction", "सारांश लिखिए।", "राम: नमस्ते", bos=tok.bos_token), add_special_tokens=False, return_tensors="pt")
assert (ids["input_ids"][0] == tok.bos_token_id).sum() == 1
out = model.generate(**ids, max_new_tokens=5, do_sample=False)
assert out.shape[-1] > ids["input_ids"].shape[-1]
print("OK", out.shape[-1] - ids["input_ids"].shape[-1])
"""


def test_trained_adapter_reloads_with_peft(tmp_path):
    from workbench.cli import main

    run_dir = tmp_path / "runs" / "reload"
    code = warm.run("train", "--config", "configs/demo.toml", "--run-dir", str(run_dir), "--max-steps", "2",
                    timeout=300)
    assert code.returncode == 0, code.stdout[-2000:] + code.stderr[-2000:]
    assert "completed" in code.stdout
    proc = warm.python("-c", SCRIPT, str(run_dir / "adapter"), timeout=300)  # a process of its own, forked warm
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout
    assert main is not None


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]
