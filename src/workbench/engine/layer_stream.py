"""Frozen decoder-layer weights kept in host memory while a run trains, each layer brought to the GPU just
before it runs, the next one copied ahead on a side stream (lora.stream_layers).

Why: in QLoRA the base model's layers never change, yet they are most of the card's memory at a small
micro-batch (9B: 3.9 GiB of nf4 layers against ~1.6 GiB of everything else at micro-batch 2). Training with
checkpointing touches them in a fixed order: layers 0..n-1 forward, then n-1..0 in the backward, where each
layer is recomputed and differentiated before the one below it starts. So two layers' weights on the card
suffice: the one running and the next, whose copy (100 MB a layer on the 9B, ~2 ms over PCIe 5) overlaps the
running layer's compute.

How:
- Every frozen matrix of a decoder layer (the base linear weights; for 4-bit, their packed data: the
  quantization state is small and stays, as do vectors such as the norms) is copied into one pinned host buffer per
  layer, and its `.data` becomes an empty tensor: a use this module did not foresee fails on a shape,
  never computes on stale memory.
- Two GPU slots, each the size of the largest layer. A forward pre-hook on each layer (it fires for the
  forward and for checkpointing's recompute alike) makes the compute stream wait for that layer's copy,
  points its parameters at its slot, and starts copying the next layer (up or down, by the order seen)
  into the other slot once the compute stream has finished with what that slot held.
- Inference mid-training (probes, the generation eval) goes through unsloth's decoding, which reads the
  weights without calling the layers: `resident` puts every layer back for its duration. `close` puts
  them back for good when the run ends, so chat, evals and exports see an ordinary model: the card needs
  the whole model's memory again then, as it did to load it. Streaming lowers the training's peak, not the
  model's size.

Only with checkpointing (config validation): without it, the backward would reuse every layer's weights
long after its forward. Only in one process: DDP broadcasts every parameter when it wraps the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.engine.model import release_memory

ALIGN = 256
"""Each piece starts at a multiple of this in its buffers: views of any dtype, aligned copies."""
SLOTS = 2
"""Layers on the device at once: the one running and the next one, being copied."""
ATTRIBUTE = "_workbench_layer_stream"
"""Where a model's first decoder layer carries its stream (`of`): found through any wrapper (peft, trainer)."""


@dataclass
class _Piece:
    """One streamed parameter: where its bytes sit in its layer's host buffer and in a slot."""

    param: Any
    offset: int
    nbytes: int
    dtype: Any
    shape: tuple[int, ...]


@dataclass
class _Layer:
    pieces: list[_Piece]
    host: Any
    """uint8, pinned where there is a GPU: every piece's bytes, back to back."""

    @property
    def nbytes(self) -> int:
        return int(self.host.numel())


@dataclass
class StreamStats:
    layers: int
    streamed_bytes: int
    """Bytes of frozen weights moved to host memory."""
    slot_bytes: int
    """Bytes the slots take on the device (two layers' worth)."""
    loads: int = 0
    """Layer copies made so far."""
    misses: int = 0
    """Layers that were not already copied (prefetched) when they ran: each one a wait for its copy."""

    @property
    def saved_bytes(self) -> int:
        return self.streamed_bytes - self.slot_bytes


def decoder_layers(model: Any) -> Sequence[Any] | None:
    """The model's decoder layers: the first ModuleList whose entries are all one class of layer or block."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            kinds = {type(m).__name__ for m in module}
            if len(kinds) == 1 and any(word in next(iter(kinds)) for word in ("Layer", "Block")):
                return list(module)
    return None


class LayerStream:
    """The frozen weights of `layers` in host memory, two layers at a time on `device` while training."""

    def __init__(self, layers: Sequence[Any], device: Any) -> None:
        import torch

        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.layers = [self._take(layer) for layer in layers]
        largest = max(layer.nbytes for layer in self.layers)
        self.slots = [torch.empty(largest, dtype=torch.uint8, device=self.device) for _ in range(SLOTS)]
        self.held: list[int | None] = [None] * SLOTS
        """Which layer each slot holds."""
        self.slot_of: dict[int, int] = {}
        self.last: int | None = None
        """The layer entered last: the next one is above it going up, below it coming back."""
        self.suspended = False
        self.closed = False
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None  # type: ignore[no-untyped-call]
        self.ready = [torch.cuda.Event() for _ in range(SLOTS)] if self.cuda else []  # type: ignore[no-untyped-call]
        self.released = [torch.cuda.Event() for _ in range(SLOTS)] if self.cuda else []  # type: ignore[no-untyped-call]
        self.hooks = [module.register_forward_pre_hook(self._hook(i)) for i, module in enumerate(layers)]
        self.stats = StreamStats(layers=len(self.layers), streamed_bytes=sum(x.nbytes for x in self.layers),
                                 slot_bytes=largest * SLOTS)
        release_memory()  # emptied parameters' memory back to the device, not kept reserved

    # -- set-up ------------------------------------------------------------------------------------------
    def _take(self, module: Any) -> _Layer:
        """Copy the layer's frozen weight matrices into one host buffer and empty them on the device."""
        import torch

        params = [p for p in module.parameters() if not p.requires_grad and p.device == self.device
                  and p.dim() >= 2 and p.is_contiguous()]
        pieces, offset = [], 0
        for p in params:
            nbytes = p.numel() * p.element_size()
            pieces.append(_Piece(p, offset, nbytes, p.dtype, tuple(p.shape)))
            offset += -(-nbytes // ALIGN) * ALIGN
        host = torch.empty(offset, dtype=torch.uint8, pin_memory=self.cuda)
        for piece in pieces:
            host[piece.offset:piece.offset + piece.nbytes].copy_(_bytes_of(piece.param.data))
            piece.param.data = torch.empty(0, dtype=piece.dtype, device=self.device)
        return _Layer(pieces, host)

    # -- the hook ----------------------------------------------------------------------------------------
    def _hook(self, index: int) -> Any:
        def enter(module: Any, args: Any) -> None:
            if not self.suspended:
                self.enter(index)

        return enter

    def enter(self, index: int) -> None:
        """Layer `index` is about to run: its weights in a slot (waited for), the next layer's on the way."""
        going_down = self.last is not None and self.last >= index
        self.last = index
        slot = self.slot_of.get(index)
        if slot is None:  # not foreseen (the first layer of a pass, or a jump): loaded now, waited for
            self.stats.misses += 1
            slot = self._load(index, self._free_slot(keep=None))
        if self.cuda:
            import torch

            torch.cuda.current_stream(self.device).wait_event(self.ready[slot])
        following = index - 1 if going_down else index + 1
        if 0 <= following < len(self.layers) and following not in self.slot_of:
            self._load(following, self._free_slot(keep=slot))

    def _free_slot(self, keep: int | None) -> int:
        """A slot to load into: an empty one, else the one not in use (`keep` is the running layer's)."""
        for slot, layer in enumerate(self.held):
            if layer is None and slot != keep:
                return slot
        return next(slot for slot in range(SLOTS) if slot != keep)

    def _load(self, index: int, slot: int) -> int:
        """Copy layer `index` into `slot` (after the compute stream is done with what it held) and point its
        parameters there."""
        import torch

        old = self.held[slot]
        if old is not None:
            self._empty(old)
            del self.slot_of[old]
        layer = self.layers[index]
        target = self.slots[slot][:layer.nbytes]
        if self.cuda:
            assert self.copy_stream is not None
            self.released[slot].record(torch.cuda.current_stream(self.device))
            self.copy_stream.wait_event(self.released[slot])
            with torch.cuda.stream(self.copy_stream):
                target.copy_(layer.host, non_blocking=True)
                self.ready[slot].record(self.copy_stream)
        else:
            target.copy_(layer.host)
        for piece in layer.pieces:
            piece.param.data = target[piece.offset:piece.offset + piece.nbytes].view(piece.dtype).view(piece.shape)
        self.held[slot] = index
        self.slot_of[index] = slot
        self.stats.loads += 1
        return slot

    def _empty(self, index: int) -> None:
        import torch

        for piece in self.layers[index].pieces:
            piece.param.data = torch.empty(0, dtype=piece.dtype, device=self.device)

    # -- leaving the streamed state ----------------------------------------------------------------------
    def _all_on_device(self) -> None:
        """Every layer's weights in tensors of their own on the device, as they were before streaming."""
        for layer in self.layers:
            for piece in layer.pieces:
                data = layer.host[piece.offset:piece.offset + piece.nbytes].to(self.device)
                piece.param.data = data.view(piece.dtype).view(piece.shape)
        self.held = [None] * SLOTS
        self.slot_of.clear()
        self.last = None

    @contextlib.contextmanager
    def resident(self) -> Iterator[None]:
        """Every layer on the device for a moment (inference mid-training reads weights without the hooks),
        then streamed again."""
        if self.closed or self.suspended:
            yield
            return
        self._synchronize()
        self.suspended = True
        self._all_on_device()
        try:
            yield
        finally:
            self._synchronize()
            for index in range(len(self.layers)):
                self._empty(index)
            self.suspended = False
            release_memory()  # emptied parameters' memory back to the device, not kept reserved

    def close(self) -> None:
        """Every layer back on the device for good, the hooks and the host copies gone."""
        if self.closed:
            return
        self._synchronize()
        release_memory()  # what the run freed (its optimizer state), before the layers return
        self._all_on_device()
        for hook in self.hooks:
            hook.remove()
        self.closed = True
        self.layers = []
        self.slots = []
        release_memory()  # emptied parameters' memory back to the device, not kept reserved

    def _synchronize(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)

    def describe(self) -> str:
        where = "pinned host memory" if self.cuda else "host memory"
        saved = f"{_size(self.stats.saved_bytes)} less on the GPU" if self.cuda else "no GPU here, so nothing is saved"
        return (f"Layer streaming: {_size(self.stats.streamed_bytes)} of frozen weights of {self.stats.layers} "
                f"layers in {where}, two layers on the device at a time ({saved}).")


def _size(nbytes: int) -> str:
    return f"{nbytes / 1024**3:.2f} GiB" if nbytes >= 1024**3 / 10 else f"{nbytes / 1024**2:.1f} MiB"


def _bytes_of(tensor: Any) -> Any:
    import torch

    flat = tensor.reshape(-1)
    return flat if flat.dtype == torch.uint8 else flat.view(torch.uint8)




# -- the engine's entry points -------------------------------------------------------------------------------

def install(model: Any) -> LayerStream | str:
    """Stream `model`'s decoder layers; the stream, or why not (the run says so and trains as before)."""
    from workbench import distributed

    if distributed.current().distributed:
        return ("Layer streaming is off on several ranks: DDP and FSDP copy every parameter when they wrap the "
                "model.")
    existing = of(model)
    if existing is not None and not existing.closed:
        return existing
    layers = decoder_layers(model)
    if not layers:
        return "Layer streaming is off: no decoder layers found in this model."
    device = _device_of(layers)
    stream = LayerStream(layers, device)
    if stream.stats.streamed_bytes == 0:
        stream.close()
        return "Layer streaming is off: the layers have no frozen weight matrices."
    layers[0].__dict__[ATTRIBUTE] = stream
    return stream


def of(model: Any) -> LayerStream | None:
    layers = decoder_layers(model)
    stream = layers[0].__dict__.get(ATTRIBUTE) if layers else None
    return stream if isinstance(stream, LayerStream) else None


def resident(model: Any) -> contextlib.AbstractContextManager[None]:
    """Every layer on the device for the block, where `model` streams its layers; else nothing to do."""
    stream = of(model)
    return stream.resident() if stream is not None else contextlib.nullcontext()


def close(model: Any) -> None:
    stream = of(model)
    if stream is not None:
        stream.close()
        layers = decoder_layers(model)
        if layers:
            layers[0].__dict__.pop(ATTRIBUTE, None)


def _device_of(layers: Sequence[Any]) -> Any:
    for layer in layers:
        for p in layer.parameters():
            return p.device
    raise ValueError("layers without parameters")
