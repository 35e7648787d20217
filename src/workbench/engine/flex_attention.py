"""FlexAttention for Gemma-2 training: soft-capped scores, causal within each sample, never across samples.

Why: without flash-attn, unsloth runs Gemma-2's training attention as a compiled dense path that
materializes the scores, attends to padding and copies the KV heads out (46% of a 9B step on an H200,
`BENCHMARKS.md`). torch's FlexAttention takes the soft-capping as a `score_mod` and skips every 128x128
block a block mask rules out: padding, the other samples of a packed row, keys outside the sliding window.

One piece of per-batch state is needed, because neither unsloth's attention function nor transformers'
attention interface sees where samples start: a forward pre-hook on the decoder (`Gemma2Model`) reads the
batch's attention mask and position ids into a `FlexState` shared by that model's attention layers
(attributes on the modules, no module globals). The block masks are built once per forward, for all
layers; gradient checkpointing's recompute, which runs in the backward right after its forward, reuses
them.

Where it applies (`install` returns an `AttentionChoice` that says which path runs and why):
- Gemma-2 models only, in training, self-attention without a KV cache. Eval, generation and everything
  else take the path they took before (unsloth's, or transformers' eager attention on the CPU).
- On CUDA it replaces `unsloth.models.gemma2.slow_attention_softcapping`, the function unsloth's Gemma-2
  attention looks up on every call when flash-attn is absent; compiled, with the sequence length padded
  up to a bucket so a handful of kernels serve every batch. When that function is gone (another unsloth),
  nothing is patched and the choice says so.
- On the CPU (unsloth's CPU backend runs transformers' own Gemma-2) it is registered with transformers'
  attention interface, uncompiled: exact, and cheaper than compiling for a model that small.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from workbench.packing import bucket

ATTENTION_NAME = "workbench_flex"
"""The name this attention is registered under in transformers' AttentionInterface (the CPU path)."""
RECOMPILE_LIMIT = 64
"""Compiled variants dynamo keeps before falling back to the (very slow) uncompiled flex: lengths x batch
sizes x sliding / global masks, with room to spare (its default is 8)."""
UNSLOTH_TARGET = "unsloth.models.gemma2.slow_attention_softcapping"
UNSLOTH_PARAMETERS = ("Q", "K", "V", "causal_mask", "self", "bsz")
"""The first parameters the patched function must have: what unsloth's Gemma-2 attention passes it."""
KERNEL_OPTIONS: dict[str, Any] = {"BLOCK_M1": 32, "BLOCK_N1": 32, "BLOCK_M2": 32, "BLOCK_N2": 32,
                                  "num_stages": 1, "num_warps": 4}
"""Backward kernel tiles measured ~8% faster than the defaults for head_dim 256 on an H200
(`../shared/gpu/flex-probe`); used on CUDA only."""

AttentionPath = Literal["flex", "sample-masked eager", "unsloth", "eager", "flash", "default"]


@dataclass(frozen=True)
class AttentionChoice:
    """Which attention the training runs, and why: the run's log shows `describe()`, the Train pane's start
    line the path."""

    path: AttentionPath
    reason: str
    packing_ok: bool = False
    """Whether samples may be packed into one row (the attention keeps them apart)."""

    def describe(self) -> str:
        return f"attention: {self.path} ({self.reason})"


@dataclass
class FlexState:
    """The current batch's layout, shared by one model's attention layers; set by the decoder's pre-hook."""

    documents: Any = None
    """[batch, length] int32: 0 for padding, k >= 1 for the k-th sample of a row; None outside a forward."""
    masks: dict[tuple[int, int, int | None], Any] = field(default_factory=dict)
    compiled: bool = False
    enabled: bool = True
    """Off when a later run of the same loaded model asks for model.attention = default."""
    calls: int = 0
    """Attention calls served by flex (the tests and the benchmark read it)."""


# -- the layout of a batch --------------------------------------------------------------------------

def document_ids(attention_mask: Any, position_ids: Any, batch: int, length: int, device: Any) -> Any:
    """Which sample every token belongs to: [batch, length] int32, 0 for padding.

    A sample starts at a row's first real token (right or left padding) and wherever the position ids
    restart at 0 (a packed row: each sample has its own positions). Padding is a sample of its own (0),
    so a pad query attends to pads only and no row of the scores is empty."""
    import torch

    if attention_mask is not None and attention_mask.dim() == 2:
        real = attention_mask[:, -length:].to(device=device) != 0
    else:
        real = torch.ones(batch, length, dtype=torch.bool, device=device)
    before = torch.nn.functional.pad(real, (1, 0), value=False)[:, :-1]
    starts = real & ~before
    if position_ids is not None and position_ids.dim() == 2 and position_ids.shape[-1] == length:
        starts = starts | (position_ids.to(device=device) == 0)
    starts = starts & real
    return (starts.to(torch.int32).cumsum(-1, dtype=torch.int32) * real).to(torch.int32)


def sample_mask_mod(documents: Any, window: int | None) -> Any:
    """The mask as FlexAttention's `mask_mod`: a query sees the earlier keys of its own sample (and only
    the last `window` of them on a sliding layer)."""

    def same_sample_causal(b: Any, h: Any, q: Any, kv: Any) -> Any:
        return (documents[b, q] == documents[b, kv]) & (q >= kv)

    def same_sample_causal_window(b: Any, h: Any, q: Any, kv: Any) -> Any:
        return same_sample_causal(b, h, q, kv) & (q - kv < window)

    return same_sample_causal if window is None else same_sample_causal_window


def block_mask(state: FlexState, length: int, window: int | None, device: Any) -> Any:
    """The block mask for this batch, padded length and sliding window (cached for the forward)."""
    from torch.nn.attention.flex_attention import create_block_mask

    documents = state.documents
    batch = documents.shape[0]
    if window is not None and window >= length:
        window = None  # the window reaches past the sequence: the same mask as a global layer
    key = (batch, length, window)
    if key not in state.masks:
        if documents.shape[1] < length:  # bucket padding: a sample of its own, like padding
            documents = _pad_right(documents, length)
        state.masks[key] = create_block_mask(sample_mask_mod(documents, window), batch, None, length, length,
                                             device=device)
    return state.masks[key]


def _pad_right(documents: Any, length: int) -> Any:
    import torch

    return torch.nn.functional.pad(documents, (0, length - documents.shape[1]), value=0)


# -- the attention ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def softcap_score_mod(cap: float) -> Any:
    import torch

    def score_mod(score: Any, b: Any, h: Any, q: Any, kv: Any) -> Any:
        return cap * torch.tanh(score / cap)

    return score_mod


@functools.lru_cache(maxsize=1)
def _compiled_flex() -> Any:
    import torch
    import torch._dynamo.config as dynamo_config
    from torch.nn.attention.flex_attention import flex_attention

    for name in ("recompile_limit", "cache_size_limit"):  # the name changed across torch versions
        if hasattr(dynamo_config, name) and getattr(dynamo_config, name) < RECOMPILE_LIMIT:
            setattr(dynamo_config, name, RECOMPILE_LIMIT)
    return torch.compile(flex_attention, dynamic=False)


def flex_softcap_attention(query: Any, key: Any, value: Any, state: FlexState, scale: float, softcap: float | None,
                           window: int | None) -> Any:
    """Soft-capped, sample-masked attention: query [B, H, L, D], key / value [B, H_kv, L, D] (grouped-query
    heads are not copied out) -> [B, H, L, D]."""
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    length = query.shape[-2]
    if query.device.type == "cpu" and torch.is_grad_enabled() and query.requires_grad:
        return dense_softcap_attention(query, key, value, state, scale, softcap, window)
    padded = bucket(length) if state.compiled else length
    if padded != length:
        pad = (0, 0, 0, padded - length)
        query, key, value = (torch.nn.functional.pad(t, pad) for t in (query, key, value))
    mask = block_mask(state, padded, window, query.device)
    score_mod = softcap_score_mod(float(softcap)) if softcap else None
    state.calls += 1
    if state.compiled:
        out = _compiled_flex()(query, key, value, score_mod=score_mod, block_mask=mask, scale=scale,
                               enable_gqa=True, kernel_options=KERNEL_OPTIONS)
    else:
        with warnings.catch_warnings():  # "without torch.compile": intended on the CPU (see the module doc)
            warnings.simplefilter("ignore")
            out = flex_attention(query, key, value, score_mod=score_mod, block_mask=mask, scale=scale,
                                 enable_gqa=True)
    return out[:, :, :length] if padded != length else out


def dense_softcap_attention(query: Any, key: Any, value: Any, state: FlexState, scale: float,
                            softcap: float | None, window: int | None) -> Any:
    """The same attention with the scores materialized: torch's FlexAttention has no backward on the CPU
    (torch 2.14), so CPU training takes this path, with the very mask `mask_mod` FlexAttention gets."""
    import torch
    from torch.nn.attention.flex_attention import create_mask

    batch, heads, length, _ = query.shape
    groups = heads // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    allowed = create_mask(sample_mask_mod(state.documents, window), batch, None, length, length,
                          device=query.device)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if softcap:
        scores = softcap * torch.tanh(scores / softcap)
    scores = scores.masked_fill(~allowed, float("-inf"))
    state.calls += 1
    upcast = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    weights = torch.softmax(scores, dim=-1, dtype=upcast).to(query.dtype)
    return torch.matmul(weights, value)


def sliding_window_of(module: Any) -> int | None:
    """The window of this attention layer (None for a global layer), as Gemma-2 alternates them."""
    config = module.config
    window = getattr(config, "sliding_window", None)
    if window is None:
        return None
    layer_types = getattr(config, "layer_types", None)
    index = getattr(module, "layer_idx", None)
    if layer_types is not None and index is not None:
        return int(window) if layer_types[index] == "sliding_attention" else None
    return int(window) if index is not None and index % 2 == 0 else None


def _applies(module: Any, query: Any, key: Any) -> FlexState | None:
    state: FlexState | None = module.__dict__.get("_workbench_flex")
    if state is None or not state.enabled or state.documents is None or not module.training:
        return None
    if query.shape[-2] != key.shape[-2] or state.documents.shape[-1] != query.shape[-2]:
        return None  # a KV cache, or a batch the pre-hook did not see
    return state


# -- the CUDA path: unsloth's Gemma-2 attention ------------------------------------------------------

def _unsloth_dispatch(original: Any) -> Any:
    def slow_attention_softcapping(Q: Any, K: Any, V: Any, causal_mask: Any, self: Any, bsz: int,
                                   *rest: Any) -> Any:
        state = _applies(self, Q, K)
        if state is None:
            return original(Q, K, V, causal_mask, self, bsz, *rest)
        scale = float(self.config.query_pre_attn_scalar) ** -0.5
        out = flex_softcap_attention(Q, K, V, state, scale, self.config.attn_logit_softcapping,
                                     sliding_window_of(self))
        length = Q.shape[-2]
        return out.transpose(1, 2).reshape(bsz, length, -1)

    slow_attention_softcapping.workbench_flex = True  # type: ignore[attr-defined]
    slow_attention_softcapping.original = original  # type: ignore[attr-defined]
    return slow_attention_softcapping


def patch_unsloth(unsloth_gemma2: Any = None) -> str | None:
    """Put the dispatcher in place of unsloth's Gemma-2 training attention; None when done, else why not.
    `unsloth_gemma2`: the module to patch (unsloth.models.gemma2 unless the tests pass another)."""
    if unsloth_gemma2 is None:
        try:
            import unsloth.models.gemma2 as installed

            unsloth_gemma2 = installed
        except Exception as exc:
            return f"unsloth's Gemma-2 module does not import ({type(exc).__name__}: {exc})"
    original = getattr(unsloth_gemma2, "slow_attention_softcapping", None)
    if original is None:
        return f"this unsloth has no {UNSLOTH_TARGET} to replace"
    if getattr(original, "workbench_flex", False):
        return None
    try:
        names = tuple(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        names = ()
    if names[: len(UNSLOTH_PARAMETERS)] != UNSLOTH_PARAMETERS:
        return f"{UNSLOTH_TARGET} takes ({', '.join(names)}), not the ({', '.join(UNSLOTH_PARAMETERS)}, …) it is patched for"
    if getattr(unsloth_gemma2, "HAS_FLASH_ATTENTION_SOFTCAPPING", False):
        return "flash-attn >= 2.6.3 is installed: unsloth's flash path is used"
    unsloth_gemma2.slow_attention_softcapping = _unsloth_dispatch(original)
    return None


# -- the CPU path: transformers' attention interface ------------------------------------------------

def _transformers_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                            dropout: float = 0.0, scaling: float | None = None, softcap: float | None = None,
                            sliding_window: int | None = None, **kwargs: Any) -> tuple[Any, Any]:
    from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward

    state = _applies(module, query, key)
    if state is None or dropout:
        eager: tuple[Any, Any] = eager_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                                         scaling=scaling, softcap=softcap, **kwargs)
        return eager
    scale = scaling if scaling is not None else module.head_dim ** -0.5
    out = flex_softcap_attention(query, key, value, state, scale, softcap, sliding_window)
    return out.transpose(1, 2).contiguous(), None


def register_transformers() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, _transformers_attention)
    # the eager fallback (eval, generation) needs the additive float mask eager attention takes
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


# -- installing it on a model -----------------------------------------------------------------------

def decoder_of(model: Any) -> Any:
    """The Gemma2Model inside a (PEFT-wrapped) Gemma2ForCausalLM, or None."""
    for module in model.modules():
        if type(module).__name__ == "Gemma2Model":
            return module
    return None


def _state_hook(state: FlexState) -> Any:
    def before_forward(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        reference = ids if ids is not None else embeds
        state.masks.clear()
        state.documents = None
        if reference is None or (kwargs.get("past_key_values") is not None and _cache_length(kwargs) > 0):
            return
        batch, length = reference.shape[0], reference.shape[1]
        state.documents = document_ids(kwargs.get("attention_mask"), kwargs.get("position_ids"), batch, length,
                                       reference.device)

    return before_forward


def _cache_length(kwargs: dict[str, Any]) -> int:
    cache: Any = kwargs.get("past_key_values")
    try:
        return int(cache.get_seq_length())
    except AttributeError:
        return 1  # a legacy tuple cache: generation, never training


def install(model: Any, enabled: bool, cuda: bool) -> AttentionChoice:
    """Choose the training attention for `model` and put it in place; say which runs and why."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", "")
    default: AttentionPath = "unsloth" if cuda else "eager"
    if not model_type.startswith("gemma2"):
        return AttentionChoice("default", f"FlexAttention is wired for Gemma-2; {model_type or 'this model'} "
                               "keeps its own attention", packing_ok=False)
    state = state_of(model)
    why_not = _flex_unavailable(model, cuda) if enabled else "model.attention = default"
    if why_not is not None:
        if state is not None:
            state.enabled = False  # the same loaded model, flex for an earlier run
        if not cuda:
            model.set_attn_implementation("eager")  # the reference: transformers' SDPA path drops the soft-cap
        return AttentionChoice("flash" if "flash-attn" in why_not else default, why_not)
    if not cuda:
        register_transformers()
        model.set_attn_implementation(ATTENTION_NAME)
    if state is None:
        state = FlexState(compiled=cuda)
        decoder = decoder_of(model)
        for module in decoder.modules():
            if type(module).__name__.endswith("Attention") and hasattr(module, "q_proj"):
                module.__dict__["_workbench_flex"] = state
        decoder.register_forward_pre_hook(_state_hook(state), with_kwargs=True)
    state.enabled = True
    if cuda:
        return AttentionChoice("flex", "FlexAttention, compiled, soft-capping score_mod; blocks of padding and of "
                               "other samples skipped", packing_ok=True)
    return AttentionChoice("sample-masked eager", "FlexAttention's sample mask with the scores materialized: torch "
                           "has no FlexAttention backward on the CPU", packing_ok=True)


def _flex_unavailable(model: Any, cuda: bool) -> str | None:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return "this torch has no FlexAttention"
    if decoder_of(model) is None:
        return "no Gemma2Model found inside the loaded model"
    return patch_unsloth() if cuda else None


def state_of(model: Any) -> FlexState | None:
    decoder = decoder_of(model)
    if decoder is None:
        return None
    for module in decoder.modules():
        state = module.__dict__.get("_workbench_flex")
        if state is not None:
            return state  # type: ignore[no-any-return]
    return None
