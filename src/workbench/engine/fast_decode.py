"""Chat at reading speed for Gemma-2: the tuned model as one bf16 copy with the adapter merged in, a static
KV cache, and (on CUDA) each decode step compiled and replayed as one CUDA graph.

Why not `model.generate`: after unsloth's `for_inference` the 9B decodes 13.9 tokens/s on an H200, bound by
host time (a 4-bit matmul, two LoRA matmuls and their launches per linear layer per token). transformers'
static cache with its automatic compile reaches 96.7 tokens/s but compiles the whole model for 107 s in
front of the user, copies the KV heads out to the query heads every token (eager `repeat_kv`) and spends
~2.5 ms per token between graph replays in `generate`'s loop (`../shared/gpu/flex-probe/`). Here:
- the weights are dequantized once and the LoRA delta added (the same function the 4-bit model computes,
  up to bf16 rounding), with q/k/v and gate/up fused into one matmul each;
- attention groups the query heads over their KV head (no copy of the cache), soft-caps the scores and
  applies the sliding window with a mask built from positions, so one code path serves every layer;
- one decoder layer is compiled (`dynamic=False`), and its graph is shared by all layers, so the compile
  costs seconds, not minutes; the whole step (42 layers, norm, output layer) is captured as one CUDA graph
  per key-length bucket, so a token costs one graph replay and a sample;
- prefill runs the same layer code eagerly over the prompt.

The decoder knows Gemma-2 only (`supports` says why another model is not served); the 4-bit path answers
for everything else. Imported only in the engine, after unsloth.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SMALLEST_BUCKET = 512
"""The shortest key length a decode step attends over; longer contexts use the next power of two."""
PREFILL_CHUNK = 1024
"""Prompt tokens per eager pass: a 1,024-token chunk's fp32 scores over 2,048 keys are 128 MiB on the 9B."""
NO_WINDOW = 1 << 30
"""The window of a global-attention layer: further than any position."""


# -- what the decoder reads off the model ---------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    layers: int
    vocab: int
    max_positions: int
    windows: tuple[int, ...]
    """Per layer: the sliding window, or NO_WINDOW for a global layer."""
    scaling: float
    attn_softcap: float | None
    final_softcap: float | None
    eps: float
    rope_theta: float

    @property
    def groups(self) -> int:
        return self.heads // self.kv_heads

    def cache_bytes(self, length: int) -> int:
        """The static KV cache in bf16 for `length` positions."""
        return self.layers * 2 * self.kv_heads * self.head_dim * length * 2

    def weight_bytes(self) -> int:
        """The merged bf16 copy: 7 matrices per layer, 4 norms, the embedding (also the output layer)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        per_layer = self.hidden * (q + 2 * kv) + q * self.hidden + 3 * self.hidden * self.intermediate + 4 * self.hidden
        return 2 * (self.layers * per_layer + self.vocab * self.hidden + self.hidden)


def supports(model: Any) -> str | None:
    """None when the fast decoder can serve `model`, else why not (shown to the user)."""
    config = _text_config(model)
    if getattr(config, "model_type", "") != "gemma2":
        return f"the fast chat path knows Gemma-2 only ({getattr(config, 'model_type', 'unknown')} answers on the standard path)"
    if getattr(config, "hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        return f"unexpected activation {config.hidden_activation}"
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        return f"rope scaling {rope.get('rope_type')} is not handled by the fast chat path"
    for module in model.modules():
        if getattr(module, "use_dora", None) and any(module.use_dora.values()):
            return "DoRA adapters are not merged by the fast chat path"
    return None


def _text_config(model: Any) -> Any:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


def shape_of(model: Any) -> Shape:
    c = _text_config(model)
    layer_types = getattr(c, "layer_types", None) or ["sliding_attention" if i % 2 == 0 else "full_attention"
                                                     for i in range(c.num_hidden_layers)]
    window = c.sliding_window or NO_WINDOW
    rope = getattr(c, "rope_parameters", None) or {}
    return Shape(
        hidden=c.hidden_size, intermediate=c.intermediate_size, heads=c.num_attention_heads, kv_heads=c.num_key_value_heads, head_dim=c.head_dim,
        layers=c.num_hidden_layers, vocab=c.vocab_size, max_positions=c.max_position_embeddings,
        windows=tuple(window if kind == "sliding_attention" else NO_WINDOW for kind in layer_types),
        scaling=c.query_pre_attn_scalar ** -0.5, attn_softcap=c.attn_logit_softcapping,
        final_softcap=c.final_logit_softcapping, eps=c.rms_norm_eps,
        rope_theta=float(rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))))


# -- merging ------------------------------------------------------------------------------------------

def dense_weight(module: Any, dtype: Any) -> Any:
    """The weight a (possibly LoRA-wrapped, possibly 4-bit) linear layer applies, as a dense matrix:
    the base weight dequantized, plus each active adapter's delta unless the adapters are disabled."""
    import torch
    from peft.utils.integrations import dequantize_module_weight

    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    with torch.no_grad():
        weight = dequantize_module_weight(base).detach().to(torch.float32)
        if hasattr(module, "lora_A") and not getattr(module, "disable_adapters", False) and not getattr(module, "merged", False):
            for name in module.active_adapters:
                if name in module.lora_A:
                    weight = weight + module.get_delta_weight(name).to(torch.float32)
        return weight.to(dtype).contiguous()


def quantized_projection(module: Any) -> tuple[Any, Any, tuple[tuple[Any, Any, float], ...]]:
    """A linear layer left as it is: (base weight, its 4-bit quant state or None, ((A, B, scale) per active
    adapter)). Nothing is copied: the decoder reads the model's own tensors."""
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    weight = base.weight
    loras: list[tuple[Any, Any, float]] = []
    if hasattr(module, "lora_A") and not getattr(module, "disable_adapters", False) and not getattr(module, "merged", False):
        for name in module.active_adapters:
            if name in module.lora_A:
                loras.append((module.lora_A[name].weight, module.lora_B[name].weight, float(module.scaling[name])))
    return (weight, getattr(weight, "quant_state", None), tuple(loras))


def _linear(x: Any, item: Any) -> Any:
    """x @ W.T for a dense W, or a 4-bit (or 16-bit) base weight plus its unmerged LoRA updates."""
    if not isinstance(item, tuple):
        return x @ item.t()
    weight, quant_state, loras = item
    if quant_state is not None:
        import bitsandbytes as bnb

        out = bnb.matmul_4bit(x, weight.t(), quant_state=quant_state)
    else:
        out = x @ weight.t()
    for lora_a, lora_b, scale in loras:
        out = out + ((x.to(lora_a.dtype) @ lora_a.t()) @ lora_b.t()).to(out.dtype) * scale
    return out


def _linears(x: Any, items: list[Any]) -> Any:
    import torch

    return _linear(x, items[0]) if len(items) == 1 else torch.cat([_linear(x, item) for item in items], dim=-1)


@dataclass
class LayerWeights:
    qkv: list[Any]
    """The fused q/k/v matrix (merged copy), or q, k and v as they are (4-bit)."""
    o: Any
    gate_up: list[Any]
    down: Any
    norms: Any
    """(4, hidden) fp32: 1 + the weight of the input, post-attention, pre- and post-feed-forward norms."""
    window: Any
    """0-d long tensor: a tensor, not a constant, so every layer shares one compiled graph."""

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.qkv, self.o, self.gate_up, self.down, self.norms, self.window)


def merged_weights(model: Any, shape: Shape, dtype: Any, merge: bool = True) -> tuple[Any, Any, list[LayerWeights]]:
    """(embedding, final norm, layers) of `model`, on the model's device: with its adapter merged into a
    dense copy (`merge`), or its own weights and adapter as they are."""
    import torch

    inner = _text_model(model)
    device = inner.embed_tokens.weight.device
    layers = []
    for index, layer in enumerate(inner.layers):
        attn, mlp = layer.self_attn, layer.mlp
        norms = torch.stack([(1.0 + n.weight.detach().float()) for n in (
            layer.input_layernorm, layer.post_attention_layernorm, layer.pre_feedforward_layernorm,
            layer.post_feedforward_layernorm)])
        qkv: list[Any]
        gate_up: list[Any]
        if merge:
            qkv = [torch.cat([dense_weight(m, dtype) for m in (attn.q_proj, attn.k_proj, attn.v_proj)])]
            gate_up = [torch.cat([dense_weight(mlp.gate_proj, dtype), dense_weight(mlp.up_proj, dtype)])]
            o, down = dense_weight(attn.o_proj, dtype), dense_weight(mlp.down_proj, dtype)
        else:
            qkv = [quantized_projection(m) for m in (attn.q_proj, attn.k_proj, attn.v_proj)]
            gate_up = [quantized_projection(mlp.gate_proj), quantized_projection(mlp.up_proj)]
            o, down = quantized_projection(attn.o_proj), quantized_projection(mlp.down_proj)
        layers.append(LayerWeights(
            qkv=qkv, o=o, gate_up=gate_up, down=down,
            norms=norms.to(device),
            window=torch.tensor(shape.windows[index], device=device)))
    embed = inner.embed_tokens.weight.detach().to(dtype).contiguous()
    final_norm = (1.0 + inner.norm.weight.detach().float()).to(device)
    return embed, final_norm, layers


def embedding_device(model: Any) -> Any:
    return _text_model(model).embed_tokens.weight.device


def _text_model(model: Any) -> Any:
    """The Gemma2Model inside a peft / unsloth wrapper (the module holding embed_tokens and layers)."""
    for module in model.modules():
        if hasattr(module, "embed_tokens") and hasattr(module, "layers"):
            return module
    raise ValueError("no decoder stack (embed_tokens, layers) found in the model")


# -- the computation ------------------------------------------------------------------------------------

def _rms(x: Any, scale: Any, eps: float) -> Any:
    import torch

    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * scale).to(x.dtype)


def _rotate(x: Any, cos: Any, sin: Any) -> Any:
    import torch

    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def layer_forward(h: Any, cos: Any, sin: Any, positions: Any, weights: tuple[Any, ...], k_cache: Any,
                  v_cache: Any, keys: int, shape: Shape) -> Any:
    """One Gemma-2 decoder layer over T new tokens of B rows at `positions` (B, T): their keys and values go
    into the layer's cache (B, kv_heads, length, head_dim), and each row attends over its first `keys`
    positions. h: (B, T, hidden). The same code runs eagerly for a prompt and compiled for a decode step."""
    import torch
    import torch.nn.functional as F

    qkv_w, o_w, gate_up_w, down_w, norms, window = weights
    rows, tokens = h.shape[0], h.shape[1]
    q_size, kv_size = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim

    x = _rms(h, norms[0], shape.eps)
    qkv = _linears(x, qkv_w)
    q = qkv[..., :q_size].view(rows, tokens, shape.heads, shape.head_dim)
    k = qkv[..., q_size:q_size + kv_size].view(rows, tokens, shape.kv_heads, shape.head_dim)
    v = qkv[..., q_size + kv_size:].view(rows, tokens, shape.kv_heads, shape.head_dim)
    q, k = _rotate(q, cos[:, :, None], sin[:, :, None]), _rotate(k, cos[:, :, None], sin[:, :, None])
    # Each row writes at its own positions, in place on the cache itself. Written through a flattened view
    # of the cache instead, the compiled step measured 122 tokens/s against 154 (H200, 9B): the mutation of
    # a view of a graph input costs a copy of the cache, we believe; BENCHMARKS.md has both runs.
    row_index = torch.arange(rows, device=h.device)[:, None, None]
    head_index = torch.arange(shape.kv_heads, device=h.device)[None, :, None]
    where = (row_index, head_index, positions[:, None, :])  # broadcast to (B, kv_heads, T)
    k_cache.index_put_(where, k.transpose(1, 2))
    v_cache.index_put_(where, v.transpose(1, 2))

    # Query head h reads KV head h // groups (repeat_kv's order), without copying the cache per head:
    # (B, kv_heads, groups * T, head_dim) against (B, kv_heads, keys, head_dim).
    grouped = q.transpose(1, 2).reshape(rows, shape.kv_heads, shape.groups * tokens, shape.head_dim)
    scores = torch.matmul(grouped, k_cache[:, :, :keys].transpose(2, 3)).float() * shape.scaling
    if shape.attn_softcap is not None:
        scores = torch.tanh(scores / shape.attn_softcap) * shape.attn_softcap
    key_positions = torch.arange(keys, device=h.device)
    allowed = ((key_positions[None, None, :] <= positions[:, :, None])
               & (key_positions[None, None, :] > positions[:, :, None] - window))  # (B, T, keys)
    scores = scores.masked_fill(~allowed.repeat(1, shape.groups, 1)[:, None], float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(h.dtype)
    out = torch.matmul(probs, v_cache[:, :, :keys])  # (B, kv_heads, groups * T, head_dim)
    out = out.view(rows, shape.heads, tokens, shape.head_dim).transpose(1, 2).reshape(rows, tokens, q_size)
    h = h + _rms(_linear(out, o_w), norms[1], shape.eps)

    x = _rms(h, norms[2], shape.eps)
    gate, up = _linears(x, gate_up_w).chunk(2, dim=-1)
    y = _linear(F.gelu(gate, approximate="tanh") * up, down_w)
    return h + _rms(y, norms[3], shape.eps)


def bucket(length: int) -> int:
    """The key length a step at `length` positions attends over: a power of two from SMALLEST_BUCKET."""
    return max(SMALLEST_BUCKET, 1 << max(0, math.ceil(math.log2(max(length, 1)))))


# -- the decoder ----------------------------------------------------------------------------------------

_COMPILED: list[Callable[..., Any]] = []


def compiled_layer() -> Callable[..., Any]:
    """`layer_forward` compiled once per process: every decoder (chat's, eval's) shares its graphs."""
    import torch

    if not _COMPILED:
        import torch._dynamo

        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        _COMPILED.append(torch.compile(layer_forward, dynamic=False, fullgraph=True))
    return _COMPILED[0]


@dataclass
class FastDecoder:
    shape: Shape
    embed: Any
    final_norm: Any
    layers: list[LayerWeights]
    k_cache: list[Any]
    """Per layer: (rows, kv_heads, capacity, head_dim)."""
    v_cache: list[Any]
    inv_freq: Any
    normalizer: Any
    capacity: int
    rows: int = 1
    """Sequences decoded together: 1 for chat, the eval batch for judging summaries."""
    merged: bool = True
    """A merged dense copy (compiled on CUDA), or the model's own weights (captured eagerly: bitsandbytes'
    4-bit matmul is not traced by dynamo)."""
    compiled: bool = False
    _layer_step: Callable[..., Any] | None = None
    _graphs: dict[int, Any] = field(default_factory=dict)
    _token: Any = None
    _position: Any = None
    _logits: dict[int, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    """One conversation (or eval batch) at a time owns the cache."""

    @classmethod
    def build(cls, model: Any, capacity: int, merge: bool = True, rows: int = 1) -> FastDecoder:
        """The decoder over `model` with a static cache of `capacity` positions per row: with the adapter
        merged into a bf16 copy (`merge`; on a CPU, the model's own dtype), or over the model's own (4-bit)
        weights and unmerged adapter, which costs no memory but the cache."""
        import torch

        shape = shape_of(model)
        own = _text_model(model).embed_tokens.weight
        dtype = torch.bfloat16 if merge and own.device.type == "cuda" and torch.cuda.is_bf16_supported() else own.dtype
        embed, final_norm, layers = merged_weights(model, shape, dtype, merge=merge)
        inv_freq = 1.0 / (shape.rope_theta ** (torch.arange(0, shape.head_dim, 2, dtype=torch.float32,
                                                            device=own.device) / shape.head_dim))
        template = cls(shape=shape, embed=embed, final_norm=final_norm, layers=layers, k_cache=[], v_cache=[],
                       inv_freq=inv_freq, normalizer=torch.tensor(shape.hidden ** 0.5, dtype=dtype), capacity=0,
                       merged=merge)
        return template.sibling(rows, capacity)

    def sibling(self, rows: int, capacity: int) -> FastDecoder:
        """A decoder over the same weights with caches of its own (`rows` x `capacity`), not compiled yet."""
        import torch

        capacity = min(capacity, self.shape.max_positions)
        caches = [torch.zeros(rows, self.shape.kv_heads, capacity, self.shape.head_dim, dtype=self.embed.dtype,
                              device=self.device) for _ in range(2 * self.shape.layers)]
        return FastDecoder(shape=self.shape, embed=self.embed, final_norm=self.final_norm, layers=self.layers,
                           k_cache=caches[::2], v_cache=caches[1::2], inv_freq=self.inv_freq,
                           normalizer=self.normalizer, capacity=capacity, rows=rows, merged=self.merged,
                           _token=torch.zeros(rows, 1, dtype=torch.long, device=self.device),
                           _position=torch.zeros(rows, 1, dtype=torch.long, device=self.device))

    @property
    def device(self) -> Any:
        return self.embed.device

    def _rope(self, positions: Any) -> tuple[Any, Any]:
        import torch

        freqs = positions.float()[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(self.embed.dtype), emb.sin().to(self.embed.dtype)

    def _logits_of(self, h: Any) -> Any:
        import torch

        h = _rms(h, self.final_norm, self.shape.eps)
        logits = (h @ self.embed.t()).float()
        if self.shape.final_softcap is not None:
            logits = torch.tanh(logits / self.shape.final_softcap) * self.shape.final_softcap
        return logits

    def _forward(self, tokens: Any, positions: Any, keys: int, layer: Callable[..., Any],
                 rows: slice | None = None) -> Any:
        """Logits (B, vocab) of the last of T tokens (B, T) at `positions` (B, T), on the cache rows `rows`."""
        h = self.embed[tokens] * self.normalizer
        cos, sin = self._rope(positions)
        pick = rows or slice(None)
        for i, weights in enumerate(self.layers):
            h = layer(h, cos, sin, positions, weights.as_tuple(), self.k_cache[i][pick], self.v_cache[i][pick], keys,
                      self.shape)
        return self._logits_of(h[:, -1])

    def prefill(self, token_ids: list[int], row: int = 0) -> Any:
        """Logits (1, vocab) after the prompt, its keys and values in cache row `row`. Eager, in chunks of
        PREFILL_CHUNK tokens, so the scores of a long prompt never take more than a chunk's worth."""
        import torch

        if not token_ids or len(token_ids) > self.capacity:
            raise ValueError(f"the prompt has {len(token_ids)} tokens; the fast path holds 1-{self.capacity}")
        with torch.inference_mode():
            tokens = torch.tensor([token_ids], dtype=torch.long, device=self.device)
            for start in range(0, len(token_ids), PREFILL_CHUNK):
                end = min(start + PREFILL_CHUNK, len(token_ids))
                positions = torch.arange(start, end, device=self.device)[None]
                logits = self._forward(tokens[:, start:end], positions, min(bucket(end), self.capacity), layer_forward,
                                       rows=slice(row, row + 1))
            return logits

    def step(self, token: int, position: int) -> Any:
        """Logits (1, vocab) for one new token at `position` (its keys and values join the cache)."""
        return self.step_rows([token], [position])

    def step_rows(self, tokens: list[int], positions: list[int]) -> Any:
        """Logits (rows, vocab) for one new token per row, each at its own position."""
        import torch

        keys = min(bucket(max(positions) + 1), self.capacity)
        with torch.inference_mode():
            self._token.copy_(torch.tensor(tokens, dtype=torch.long)[:, None])
            self._position.copy_(torch.tensor(positions, dtype=torch.long)[:, None])
            graph = self._graphs.get(keys)
            if graph is not None:
                graph.replay()
                return self._logits[keys]
            return self._forward(self._token, self._position, keys, self._layer_step or layer_forward)

    # -- compiling ------------------------------------------------------------------------------------
    def compile(self, say: Callable[[str], None] | None = None, buckets: tuple[int, ...] | None = None,
                use_compile: bool | None = None, keep_going: Callable[[], bool] | None = None) -> tuple[int, ...]:
        """CUDA: compile the layer for decode (a merged copy) and capture one graph per key-length bucket
        (from the smallest up to the capacity). Meant for a background thread: `thread_local` capture lets
        other threads use the GPU meanwhile; nothing else may use this decoder until it returns."""
        import torch

        if self.device.type != "cuda":
            return ()
        if self.merged if use_compile is None else use_compile:
            self._layer_step = compiled_layer()
        else:
            self._layer_step = layer_forward
        todo = buckets or self.all_buckets()
        stream = torch.cuda.Stream(device=self.device)  # type: ignore[no-untyped-call]
        for keys in todo:
            if keep_going is not None and not keep_going():
                return tuple(self._graphs)  # abandoned: the engine no longer wants this decoder
            if say:
                say(f"fast chat: compiling the decode step for {keys} keys")
            with torch.inference_mode():
                self._position.fill_(keys - 1)  # the warm-up writes the cache's last slot of the bucket only
                stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(stream):
                    for _ in range(2):  # compile, then run once more as captured code will
                        self._forward(self._token, self._position, keys, self._layer_step)
                torch.cuda.current_stream(self.device).wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                    logits = self._forward(self._token, self._position, keys, self._layer_step)
                torch.cuda.current_stream(self.device).wait_stream(stream)
            self._graphs[keys], self._logits[keys] = graph, logits
        self.compiled = True
        return todo

    def all_buckets(self) -> tuple[int, ...]:
        out, keys = [], SMALLEST_BUCKET
        while keys < self.capacity:
            out.append(keys)
            keys *= 2
        out.append(self.capacity)
        return tuple(dict.fromkeys(out))


# -- sampling and streaming ------------------------------------------------------------------------------

def sample_rows(logits: Any, temperature: float, top_p: float) -> list[int]:
    """One token per row of `logits` (rows, vocab): greedy at temperature 0, else nucleus sampling from the
    global generator (as `generate` does)."""
    import torch

    if temperature <= 0:
        return [int(t) for t in torch.argmax(logits, dim=-1).tolist()]
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p >= 1.0:
        return [int(t) for t in torch.multinomial(probs, 1)[:, 0].tolist()]
    sorted_probs, order = torch.sort(probs, descending=True, dim=-1)
    keep = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) < top_p  # the first token always stays
    sorted_probs = sorted_probs * keep
    choice = torch.multinomial(sorted_probs / sorted_probs.sum(dim=-1, keepdim=True), 1)
    return [int(t) for t in torch.gather(order, 1, choice)[:, 0].tolist()]


def sample(logits: Any, temperature: float, top_p: float) -> int:
    return sample_rows(logits, temperature, top_p)[0]


class TextDelta:
    """Text of a growing token list, handed out as new pieces; a multi-byte character split over
    byte tokens (Devanagari often is) waits until it is whole."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.sent = 0

    def add(self, token: int) -> str:
        self.ids.append(token)
        text: str = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        piece, self.sent = text[self.sent:], len(text)
        return piece


@dataclass
class Decoded:
    token_ids: list[int]
    text: str
    prompt_tokens: int
    time_to_first_token_s: float | None
    decode_tokens_per_s: float | None
    stopped: bool


def decode(decoder: FastDecoder, tokenizer: Any, prompt_ids: list[int], *, max_new_tokens: int, temperature: float,
           top_p: float, stop_ids: list[int], on_text: Callable[[str], None], cancel: threading.Event) -> Decoded:
    """Stream one answer: prefill the prompt, then one step per token until an end token, the limit, the
    cache's capacity or a cancel."""
    started = time.perf_counter()
    budget = min(max_new_tokens, decoder.capacity - len(prompt_ids))
    delta = TextDelta(tokenizer)
    pieces: list[str] = []
    first: float | None = None
    with decoder.lock:
        logits = decoder.prefill(prompt_ids)
        position = len(prompt_ids)
        while budget > 0 and not cancel.is_set():
            token = sample(logits, temperature, top_p)
            if first is None:
                first = time.perf_counter()
            budget -= 1
            if token in stop_ids:
                delta.ids.append(token)
                break
            piece = delta.add(token)
            if piece:
                pieces.append(piece)
                on_text(piece)
            if budget == 0:
                break
            logits = decoder.step(token, position)
            position += 1
    finished = time.perf_counter()
    rate = (len(delta.ids) - 1) / (finished - first) if first is not None and len(delta.ids) > 1 else None
    return Decoded(token_ids=delta.ids, text="".join(pieces), prompt_tokens=len(prompt_ids),
                   time_to_first_token_s=(first - started) if first is not None else None,
                   decode_tokens_per_s=rate, stopped=cancel.is_set())


@dataclass
class RowAnswer:
    token_ids: list[int]
    """The answer's tokens, its end token included when it wrote one."""
    ended: bool


def decode_rows(decoder: FastDecoder, prompts: list[list[int]], *, max_new_tokens: int, temperature: float,
                top_p: float, stop_ids: list[int], cancel: threading.Event) -> list[RowAnswer]:
    """Answers to up to `decoder.rows` prompts decoded together (eval): each prompt prefilled into its own
    cache row, then one graph replay per token for all rows, each at its own position, until every row
    wrote an end token or the limit. Rows beyond the prompts idle on a one-token prompt."""
    import torch

    if not prompts or len(prompts) > decoder.rows:
        raise ValueError(f"{len(prompts)} prompts for a decoder of {decoder.rows} rows")
    padded = prompts + [prompts[0][:1]] * (decoder.rows - len(prompts))
    answers = [RowAnswer([], False) for _ in prompts]
    with decoder.lock:
        logits = torch.cat([decoder.prefill(p, row=r) for r, p in enumerate(padded)])
        positions = [len(p) for p in padded]
        budget = min(max_new_tokens, decoder.capacity - max(positions))
        for step in range(budget):
            if cancel.is_set():
                break
            tokens = sample_rows(logits, temperature, top_p)
            for answer, token in zip(answers, tokens, strict=False):
                if not answer.ended:
                    answer.token_ids.append(token)
                    answer.ended = token in stop_ids
            if all(a.ended for a in answers) or step == budget - 1:
                break
            logits = decoder.step_rows(tokens, positions)
            positions = [p + 1 for p in positions]
    return answers
