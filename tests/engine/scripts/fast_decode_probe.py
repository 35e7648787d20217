"""Run by tests/engine/test_fast_decode.py in a process of its own (unsloth first, as the engine does): the fast
chat decoder against the model it was merged from.

1. The tiny demo model loaded by the engine's own loader, a LoRA adapter with random (non-zero) B on every
   linear layer: the merged decoder's logits after a prompt and after each decoded token equal the peft
   model's own forward over the whole sequence; greedy decoding writes the same tokens as `generate`.
2. A random Gemma-2 with a sliding window of 8 and prompts longer than it, eager attention as reference:
   the window and the soft-caps are applied as transformers applies them.

Prints one JSON object."""

from __future__ import annotations

import json
import threading

from workbench.engine import boot

boot.boot()

import torch  # noqa: E402

from workbench.config import load_config  # noqa: E402
from workbench.engine import fast_decode as fd  # noqa: E402
from workbench.engine.generate import eos_ids, generate_stream  # noqa: E402
from workbench.engine.model import add_lora, load_base  # noqa: E402
from workbench.templates import render_prompt  # noqa: E402


def randomize_lora(model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def set_attention(model, name: str) -> None:
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = name


def logits_gap(model, decoder, ids: list[int], decoded: int) -> dict[str, float]:
    """Largest |difference| of the last-position logits, prefill and each decode step, relative to the
    logits' scale."""
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
    prompt = ids[: len(ids) - decoded]
    gaps = []
    out = decoder.prefill(prompt)
    gaps.append(float((out[0] - full[len(prompt) - 1]).abs().max()))
    for i in range(decoded):
        pos = len(prompt) + i
        out = decoder.step(ids[pos], pos)
        gaps.append(float((out[0] - full[pos]).abs().max()))
    return {"max_abs": max(gaps), "scale": float(full.abs().max())}


def tiny_checks() -> dict[str, object]:
    config = load_config("configs/demo.toml")
    loaded = load_base(config, lambda _m: None)
    add_lora(loaded, config)
    randomize_lora(loaded.model, 0)
    model, tok = loaded.model, loaded.tokenizer
    model.eval()
    reason = fd.supports(model)
    decoder = fd.FastDecoder.build(model, capacity=1024)
    prompt = render_prompt(config.data.template, config.data.instruction, "राम: नमस्ते, आज बाज़ार चलें?\nसीता: हाँ, शाम को।",
                           bos=tok.bos_token)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    extended = ids + tok("राम ने सीता से पूछा कि", add_special_tokens=False)["input_ids"]
    loaded_attention = model.config._attn_implementation
    set_attention(model, "eager")  # the reference: SDPA, which the CPU load picks, drops Gemma-2's soft-cap
    gap = logits_gap(model, decoder, extended, len(extended) - len(ids))
    set_attention(model, loaded_attention)

    set_attention(model, "sdpa")  # as the CPU load leaves it; the standard path must not answer with it
    reference = generate_stream(loaded, template=config.data.template, instruction=config.data.instruction,
                                conversation="राम: नमस्ते, आज बाज़ार चलें?\nसीता: हाँ, शाम को।", on_text=lambda _t: None,
                                cancel=threading.Event(), max_new_tokens=24, temperature=0.0)
    pieces: list[str] = []
    fast = fd.decode(decoder, tok, ids, max_new_tokens=24, temperature=0.0, top_p=1.0, stop_ids=eos_ids(tok),
                     on_text=pieces.append, cancel=threading.Event())
    # Eval's batched decode: prompts of different lengths in one decoder of 4 rows (one idles), each
    # answer equal to the same prompt decoded alone.
    prompts = [ids, ids[: len(ids) // 2], extended]
    alone = [fd.decode(decoder, tok, p, max_new_tokens=16, temperature=0.0, top_p=1.0, stop_ids=eos_ids(tok),
                       on_text=lambda _t: None, cancel=threading.Event()).token_ids for p in prompts]
    batched = fd.decode_rows(decoder.sibling(4, 512), prompts, max_new_tokens=16, temperature=0.0, top_p=1.0,
                             stop_ids=eos_ids(tok), cancel=threading.Event())
    cancelled = threading.Event()
    cancelled.set()
    stopped = fd.decode(decoder, tok, ids, max_new_tokens=24, temperature=0.0, top_p=1.0, stop_ids=eos_ids(tok),
                        on_text=pieces.append, cancel=cancelled)
    return {"supports": reason, "gap": gap, "reference_tokens": reference.token_ids, "fast_tokens": fast.token_ids,
            "reference_text": reference.text, "fast_text": fast.text, "streamed": "".join(pieces[: len(pieces)]),
            "cancelled_tokens": len(stopped.token_ids), "cancelled_flag": stopped.stopped,
            "bytes_estimate": decoder.shape.weight_bytes(),
            "bytes_actual": 2 * (sum(t.numel() for w in decoder.layers for t in (*w.qkv, w.o, *w.gate_up, w.down, w.norms))
                                 + decoder.embed.numel() + decoder.final_norm.numel()),
            "element_size": decoder.embed.element_size(),
            "alone": alone, "batched": [a.token_ids for a in batched],
            "attention_after_standard_path": model.config._attn_implementation}


def window_checks() -> dict[str, object]:
    from peft import LoraConfig, get_peft_model
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(3)
    config = Gemma2Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=8,
                          max_position_embeddings=256, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                          query_pre_attn_scalar=16, pad_token_id=0, eos_token_id=1, bos_token_id=2,
                          attn_implementation="eager")
    base = Gemma2ForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, p in base.named_parameters():
            if "norm" in name:
                p.normal_(0, 0.3)  # Gemma's norms start at zero (weight 1 + w): give them something to apply
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                                 "gate_proj", "up_proj", "down_proj"]))
    randomize_lora(model, 1)
    model.eval()
    decoder = fd.FastDecoder.build(model, capacity=64)
    g = torch.Generator().manual_seed(5)
    ids = [2, *torch.randint(3, 300, (30,), generator=g).tolist()]
    gap = logits_gap(model, decoder, ids, 12)
    # Rows at different positions in one step, across the window: each row's logits as the model's own.
    rows = decoder.sibling(3, 64)
    starts = [20, 9, 27]
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
    for r, n in enumerate(starts):
        rows.prefill(ids[:n], row=r)
    row_gaps = []
    for i in range(3):
        out = rows.step_rows([ids[n + i] for n in starts], [n + i for n in starts])
        row_gaps += [float((out[r] - full[n + i]).abs().max()) for r, n in enumerate(starts)]
    with model.disable_adapter():
        plain = fd.FastDecoder.build(model, capacity=64)
        base_gap = logits_gap(model, plain, ids, 4)
    return {"gap": gap, "base_gap": base_gap, "windows": list(decoder.shape.windows), "row_gap": max(row_gaps)}


if __name__ == "__main__":
    print(json.dumps({"tiny": tiny_checks(), "window": window_checks()}, ensure_ascii=False))
