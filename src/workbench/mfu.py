"""Model FLOPs utilisation for LoRA fine-tuning, from the model's shape alone.

FLOPs per trained token ~= 4 N + 3 A:
  N = parameters that take part in matrix multiplies: per layer the attention projections
      (q, k, v, o) and the MLP (gate, up, down), plus the output head (tied to the embedding in Gemma).
      Forward costs 2 N; backward computes gradients with respect to activations only (the base is
      frozen, LoRA's own weights are negligible), another 2 N; no weight-gradient pass (which full
      fine-tuning would add as a third 2 N).
  A = attention scores and values per token: 2 * layers * context * (heads * head_dim) for causal
      attention (QK^T and AV are 2 * context * width each; causality halves the work). Forward A,
      backward 2 A.
For Gemma-2-9B (hidden 3584, intermediate 14336, 42 layers, 16 x 256 attention, 8 KV heads, vocab
256000) at context 2048: N = 9.24e9, A = 0.70e9, so 39.1 GFLOP per token; an H100 (989 TFLOP/s dense
bf16) would then process ~25,300 tokens/s at 100% MFU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def matmul_params(cfg: Mapping[str, Any]) -> int:
    d = int(cfg["hidden_size"])
    inter = int(cfg["intermediate_size"])
    layers = int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or d // heads)
    vocab = int(cfg["vocab_size"])
    attn = d * heads * head_dim * 2 + d * kv * head_dim * 2
    mlp = 3 * d * inter
    return layers * (attn + mlp) + vocab * d


def attention_term(cfg: Mapping[str, Any], context: float) -> float:
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
    return 2.0 * int(cfg["num_hidden_layers"]) * context * heads * head_dim


def lora_flops_per_token(cfg: Mapping[str, Any], context: float) -> float:
    return 4.0 * matmul_params(cfg) + 3.0 * attention_term(cfg, context)


def mfu(tokens_per_s: float, flops_per_token: float, peak_tflops: float) -> float:
    """Fraction (0..1) of the card's dense bf16 peak."""
    return tokens_per_s * flops_per_token / (peak_tflops * 1e12)
