"""Peak GPU memory of a LoRA / QLoRA run, forecast before anything is loaded, and the two profiles built on it.

peak reserved = weights + adapter state + fixed overhead + tokens of the largest micro-batch x bytes per token

- weights: the matmul parameters (`workbench.mfu.matmul_params`, minus the embedding) at 4.125 bits each
  for nf4 with double quant (0.5 byte + one 8-bit absmax per 64 values + the second level), the embedding
  (tied to the output head in Gemma) and the norms in 16-bit; 2 bytes per parameter unquantized.
- adapter state: LoRA's A and B for every target module of every layer, fp32 weights + fp32 gradients + two
  8-bit Adam moments (10 bytes per parameter; 16 with a 32-bit optimizer).
- per token, by checkpointing mode: unsloth's (layer inputs offloaded to the host) keeps one layer's working
  set on the GPU; standard checkpointing keeps every layer's input as well; none keeps every layer's whole
  working set. A layer's working set is counted in units of (hidden + intermediate) x 2 bytes.
- streamed layers (lora.stream_layers, with checkpointing): the layers' weight matrices wait in host memory
  and two layers' worth sit on the GPU (`engine/layer_stream.py`); for nf4 the quantization state stays.
  A generation eval mid-run brings every layer back while it runs: then the whole model counts again.
- tokens: micro-batch x the longest row, as the attention computes it (FlexAttention pads to a power of two
  on CUDA, `engine/flex_attention.bucket`; packed rows are max_seq_length long).
- unsloth's own Gemma-2 attention (model.attention = default) also materializes the scores, batch x heads x
  length^2: one layer's at a time with checkpointing, every layer's without.

The per-token units and the overhead were fitted on an H200 to Gemma-2-9B runs (BENCHMARKS.md, "Memory
forecast") and checked against runs they were not fitted on, 2B shape included. Pure arithmetic: the Config
pane and `workbench forecast` use it without torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from workbench.mfu import matmul_params
from workbench.packing import bucket

GIB = 1024**3
NF4_BYTES = 4.125 / 8
NF4_PACKED_BYTES = 0.5
"""Of NF4_BYTES, the packed 4-bit values: what layer streaming moves to host memory."""
STREAM_SLOTS = 2
"""Layers on the GPU at once when streaming (`engine/layer_stream.SLOTS`)."""
ADAPTER_BYTES = {"8bit": 10, "32bit": 16}
LAYER_UNITS = {"unsloth": 4.5, "true": 4.5, "false": 2.75}
"""Working set per token, in (hidden + intermediate) x 2 bytes: one layer's for the checkpointing modes (the
recompute), per layer for none. Fitted: 9B flex runs at micro-batch 2 and 8 (unsloth), 4 (none)."""
OVERHEAD_GIB = 0.32
"""CUDA context, cuBLAS workspaces, the allocator's rounding, the loss's chunks (fitted, same runs)."""
SCORES_BYTES = 6
"""unsloth's dense Gemma-2 attention, one layer: the 16-bit scores and their fp32 softmax."""
SCORES_KEPT_BYTES = 5.35
"""The same, per layer kept for the backward without checkpointing (fitted: 9B, micro-batch 2 and 8)."""
PACKED_LOGITS_KEPT_BYTES = 6.6
"""Per token and vocabulary entry, packed rows without checkpointing: every position of a packed row is a
real token, and the loss's logits (16-bit, and their fp32 upcast) stay alive for the backward. Fitted on the
9B at micro-batch 4 and 8 (51.1 and 95.35 GiB; the forecast without it said 38.1 and 69.7: -27%)."""
PACKED_OFFLOADED_BYTES = 0.30
"""Per token, hidden unit and layer, packed rows under unsloth's offloaded checkpointing: measured above
what the same padded length takes (9B: +0.17 GiB at micro-batch 2, +0.69 at 8, 45 KB per token either way).
Empirical: fitted on those two rows; checked on the 2B's packed micro-batch 8 (4.44 GiB forecast, 4.39
measured; 4.17 without it) and the 9B's streamed rows, which it was not fitted on."""
HEADROOM = 0.9
"""A forecast above this share of the free memory is a warning: the allocator's fragmentation varies."""

Checkpointing = Literal["unsloth", "true", "false"]
Attention = Literal["flex", "default"]


@dataclass(frozen=True)
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    matmul_params: int

    @classmethod
    def of(cls, cfg: Mapping[str, Any]) -> Shape:
        heads = int(cfg["num_attention_heads"])
        return cls(hidden=int(cfg["hidden_size"]), intermediate=int(cfg["intermediate_size"]),
                   layers=int(cfg["num_hidden_layers"]), heads=heads,
                   kv_heads=int(cfg.get("num_key_value_heads") or heads),
                   head_dim=int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads),
                   vocab=int(cfg["vocab_size"]), matmul_params=matmul_params(cfg))

    def module_sizes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear module LoRA can target."""
        d, q, kv, m = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {"q_proj": (d, q), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (q, d),
                "gate_proj": (d, m), "up_proj": (d, m), "down_proj": (m, d)}


@dataclass(frozen=True)
class Setting:
    """What the forecast depends on: everything else of the run config is irrelevant to memory."""

    load_in_4bit: bool = True
    lora_r: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    micro_batch: int = 2
    longest: int = 2048
    """The longest sample in tokens (after truncation)."""
    max_seq_length: int = 2048
    packing: bool = False
    checkpointing: Checkpointing = "unsloth"
    attention: Attention = "flex"
    optimizer_8bit: bool = True
    stream_layers: bool = False
    generates_mid_run: bool = False
    """A generation eval during training (eval.generate_steps): it brings streamed layers back meanwhile."""


@dataclass(frozen=True)
class Forecast:
    weights_gib: float
    adapter_gib: float
    activations_gib: float
    attention_gib: float
    overhead_gib: float
    tokens: int
    """Tokens of the largest micro-batch as computed (padding included)."""
    host_gib: float = 0.0
    """Host memory the streamed layers wait in (pinned), 0 without streaming."""

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.adapter_gib + self.activations_gib + self.attention_gib + self.overhead_gib

    def verdict(self, free_gib: float | None) -> str:
        if free_gib is None:
            return f"forecast peak {self.total_gib:.1f} GiB"
        if self.total_gib > free_gib:
            return f"forecast peak {self.total_gib:.1f} GiB > {free_gib:.1f} GiB free: out of memory expected"
        if self.total_gib > HEADROOM * free_gib:
            return f"forecast peak {self.total_gib:.1f} GiB of {free_gib:.1f} GiB free: tight"
        return f"forecast peak {self.total_gib:.1f} GiB of {free_gib:.1f} GiB free"

    def breakdown(self) -> str:
        streamed = f" (layers streamed: {self.host_gib:.2f} GiB in host memory)" if self.host_gib else ""
        return (f"weights {self.weights_gib:.2f}{streamed} + adapter {self.adapter_gib:.2f} + activations "
                f"{self.activations_gib:.2f} + attention {self.attention_gib:.2f} + overhead {self.overhead_gib:.2f} "
                f"GiB ({self.tokens:,} tokens per micro-batch)")


def computed_length(setting: Setting) -> int:
    """The row length the attention computes: packed rows fill max_seq_length; flex pads to a bucket."""
    length = setting.max_seq_length if setting.packing else min(setting.longest, setting.max_seq_length)
    return bucket(length) if setting.attention == "flex" else length


def layer_weights(shape: Shape, setting: Setting) -> tuple[float, float]:
    """Bytes of the layers' weight matrices: (what stays on the GPU in any case, what streaming can move)."""
    matrices = shape.matmul_params - shape.vocab * shape.hidden
    if setting.load_in_4bit:
        return matrices * (NF4_BYTES - NF4_PACKED_BYTES), matrices * NF4_PACKED_BYTES
    return 0.0, matrices * 2.0


def forecast(shape: Shape, setting: Setting) -> Forecast:
    embedding = shape.vocab * shape.hidden
    per_layer_norms = 4 * shape.hidden
    fixed, movable = layer_weights(shape, setting)
    host = 0.0
    if setting.stream_layers and setting.checkpointing != "false":
        slots = movable * STREAM_SLOTS / shape.layers
        # a generation eval mid-run brings every layer back for its duration: no saving at that peak
        host, movable = movable, (movable + slots) if setting.generates_mid_run else slots
    weights = fixed + movable + (embedding + per_layer_norms * shape.layers) * 2
    sizes = shape.module_sizes()
    lora_params = shape.layers * setting.lora_r * sum(sum(sizes[m]) for m in setting.target_modules if m in sizes)
    adapter = lora_params * ADAPTER_BYTES["8bit" if setting.optimizer_8bit else "32bit"]
    length = computed_length(setting)
    tokens = setting.micro_batch * length
    unit = (shape.hidden + shape.intermediate) * 2
    per_token = LAYER_UNITS[setting.checkpointing] * unit
    if setting.checkpointing == "false":
        per_token *= shape.layers
    elif setting.checkpointing == "true":
        per_token += shape.layers * shape.hidden * 2  # every layer's input stays on the GPU
    if setting.packing and setting.checkpointing == "false":
        per_token += shape.vocab * PACKED_LOGITS_KEPT_BYTES
    elif setting.packing and setting.checkpointing == "unsloth":
        per_token += shape.hidden * shape.layers * PACKED_OFFLOADED_BYTES
    attention = 0.0
    if setting.attention == "default":
        scores = setting.micro_batch * shape.heads * length * length
        # one layer's scores at a time when checkpointed; every layer's, kept for the backward, when not
        attention = scores * (SCORES_BYTES if setting.checkpointing != "false" else shape.layers * SCORES_KEPT_BYTES)
    return Forecast(weights_gib=weights / GIB, adapter_gib=adapter / GIB, activations_gib=tokens * per_token / GIB,
                    attention_gib=attention / GIB, overhead_gib=OVERHEAD_GIB, tokens=tokens, host_gib=host / GIB)


@dataclass(frozen=True)
class Profile:
    name: Literal["fits", "fast"]
    setting: Setting
    forecast: Forecast
    why: str


def profiles(shape: Shape, base: Setting, free_gib: float, largest_batch: int = 64) -> list[Profile]:
    """The two profiles for this card: "fits" (least memory: 4-bit, unsloth's offloaded checkpointing, layers
    streamed from host memory, the user's micro-batch) and "fast" (the most throughput that fits, layers on
    the card: no checkpointing at the largest micro-batch under the headroom, else checkpointing at the
    largest micro-batch that fits). Both pack the samples where the attention keeps them apart (flex): exact,
    and on the H200 1.7x the tokens/s for +8% memory."""
    from dataclasses import replace

    base = replace(base, packing=base.packing or base.attention == "flex")
    packed = ", packed" if base.packing else ""
    fits_setting = replace(base, load_in_4bit=True, checkpointing="unsloth", stream_layers=True)
    fits = Profile("fits", fits_setting, forecast(shape, fits_setting),
                   f"least memory: 4-bit, offloaded checkpointing, layers streamed{packed}")
    base = replace(base, stream_layers=False)  # "fast" keeps the layers on the card
    budget = HEADROOM * free_gib
    fast: Profile | None = None
    for checkpointing in ("false", "unsloth"):
        batch = _largest_batch(shape, replace(base, checkpointing=checkpointing), budget, largest_batch)
        if batch:
            setting = replace(base, checkpointing=checkpointing, micro_batch=batch)
            mode = "no checkpointing" if checkpointing == "false" else "offloaded checkpointing"
            fast = Profile("fast", setting, forecast(shape, setting), f"most tokens/s that fits: {mode}, "
                           f"micro-batch {batch}{packed}")
            break
    return [fits] if fast is None else [fits, fast]


def _largest_batch(shape: Shape, setting: Setting, budget_gib: float, largest: int) -> int:
    from dataclasses import replace

    best = 0
    batch = 1
    while batch <= largest:
        if forecast(shape, replace(setting, micro_batch=batch)).total_gib > budget_gib:
            break
        best = batch
        batch *= 2
    return best


def setting_for(config: Any, lengths: Sequence[int], cuda_attention: bool = True) -> Setting:
    """The forecast's inputs from a RunConfig and the token lengths of its training samples."""
    return Setting(load_in_4bit=config.model.load_in_4bit, lora_r=config.lora.r,
                   target_modules=tuple(config.lora.target_modules),
                   micro_batch=config.training.per_device_train_batch_size,
                   longest=max(lengths) if lengths else config.model.max_seq_length,
                   max_seq_length=config.model.max_seq_length, packing=config.data.packing,
                   checkpointing=config.lora.gradient_checkpointing,
                   attention=config.model.attention if cuda_attention else "default",
                   optimizer_8bit="8bit" in config.training.optim, stream_layers=config.lora.stream_layers,
                   generates_mid_run=config.eval.generate_steps > 0)
