"""workbench.mfu: FLOPs per token for LoRA fine-tuning and model FLOPs utilisation."""

from __future__ import annotations

import pytest

from workbench.mfu import attention_term, lora_flops_per_token, matmul_params, mfu

GEMMA2_9B = {
    "hidden_size": 3584,
    "intermediate_size": 14336,
    "num_hidden_layers": 42,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "vocab_size": 256000,
}


def test_gemma2_9b_matmul_params() -> None:
    n = matmul_params(GEMMA2_9B)
    assert n == pytest.approx(9.24e9, rel=0.01)
    # exact: 42 x (q,o: 3584x4096 each; k,v: 3584x2048 each; gate, up, down: 3584x14336 each) + head 256000x3584
    assert n == 42 * (2 * 3584 * 4096 + 2 * 3584 * 2048 + 3 * 3584 * 14336) + 256000 * 3584


def test_gemma2_9b_flops_per_token_at_2048() -> None:
    a = attention_term(GEMMA2_9B, 2048)
    assert a == pytest.approx(0.70e9, rel=0.01)
    assert a == 2 * 42 * 2048 * 16 * 256
    flops = lora_flops_per_token(GEMMA2_9B, 2048)
    assert flops == pytest.approx(39.1e9, rel=0.01)
    assert flops == 4 * matmul_params(GEMMA2_9B) + 3 * a
    # the docstring's H100 figure: ~25,300 tokens/s at 100% MFU
    assert 989e12 / flops == pytest.approx(25_300, rel=0.01)


def test_attention_grows_linearly_with_context() -> None:
    assert attention_term(GEMMA2_9B, 4096) == 2 * attention_term(GEMMA2_9B, 2048)
    assert lora_flops_per_token(GEMMA2_9B, 0) == 4 * matmul_params(GEMMA2_9B)


def test_defaults_for_missing_head_fields() -> None:
    cfg = {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
           "vocab_size": 1000}
    # kv heads default to heads, head_dim to hidden / heads: attention is 4 square 64x64 projections
    assert matmul_params(cfg) == 2 * (4 * 64 * 64 + 3 * 64 * 256) + 1000 * 64
    assert matmul_params({**cfg, "num_key_value_heads": None, "head_dim": None}) == matmul_params(cfg)
    assert attention_term(cfg, 10) == 2 * 2 * 10 * 64


def test_mfu_formula() -> None:
    assert mfu(1000.0, 1e9, 1.0) == pytest.approx(1.0)
    assert mfu(12_650.0, lora_flops_per_token(GEMMA2_9B, 2048), 989.0) == pytest.approx(0.5, rel=0.01)
    assert mfu(0.0, 1e9, 989.0) == 0.0
    assert mfu(2000.0, 3e9, 100.0) == pytest.approx(2000 * 3e9 / 100e12)
