"""Which decoder answers in Chat, and the fast one's build in the background.

The model loaded for chat is the 4-bit one (the model trained, or a run's base + adapter). Beside it the
engine builds a `fast_decode.FastDecoder` in a thread: a merged bf16 copy where the card has the memory
(`model.chat_path = auto` or `merged`), else a decoder over the 4-bit weights themselves (`4bit`, no copy).
Until it is ready, the standard path (`generate.generate_stream`) answers, so nothing waits for a compile;
an answer asked for while the build has a few seconds left waits for it (a warm compile cache makes the
whole build about 1.5 s on the 9B). The fast decoder is dropped when the model it was built from changes
or a training run starts (its memory is the run's). Imported only in the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from workbench.engine.model import Loaded

FastState = Literal["off", "building", "ready", "unavailable"]
WAIT_FOR_BUILD_S = 3.0
"""How long an answer waits for a build under way before the standard path takes it."""
HEADROOM_BYTES = 2 * 1024**3
"""Kept free beside the merged copy and its cache: prefill scores, sampling, the allocator's slack."""


@dataclass(frozen=True)
class FastStatus:
    state: FastState
    path: str = ""
    """What answers once ready: "bf16 merged, compiled" / "4-bit, CUDA graphs" / "merged copy (CPU)"."""
    detail: str = ""
    """Why the fast path is off or unavailable, or what the build took."""

    def line(self) -> str:
        if self.state == "ready":
            return f"fast chat ready: {self.path}" + (f" ({self.detail})" if self.detail else "")
        if self.state == "building":
            return f"fast chat building ({self.path}): the standard path answers meanwhile"
        if self.state == "unavailable":
            return f"standard chat path: {self.detail}"
        return "standard chat path" + (f": {self.detail}" if self.detail else "")


def capacity_for(max_seq_length: int, max_positions: int) -> int:
    """The static cache's length: room for a full-length prompt and as long an answer, in a power of two."""
    from workbench.engine.fast_decode import bucket

    return min(max_positions, 2 * bucket(max_seq_length))


def free_bytes(device: Any) -> int:
    """Memory a new allocation can get: the card's free memory plus what torch holds but does not use."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    import os

    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError):
        return 0


def choose(loaded: Loaded, wanted: str, capacity: int) -> tuple[bool | None, str]:
    """(merge?, why) for `loaded` and `model.chat_path` = `wanted`; merge None: the standard path answers."""
    from workbench.engine import fast_decode as fd

    if wanted == "standard":
        return None, "model.chat_path = standard"
    reason = fd.supports(loaded.model)
    if reason is not None:
        return None, reason
    shape = fd.shape_of(loaded.model)
    device = fd.embedding_device(loaded.model)
    free = free_bytes(device)
    cache = shape.cache_bytes(capacity)
    copy = shape.weight_bytes() + cache + HEADROOM_BYTES
    if wanted in ("auto", "merged") and copy <= free:
        return True, ""
    short = f"a merged bf16 copy needs {copy / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"
    if wanted == "merged":
        return None, short
    if device.type != "cuda":
        return None, short + " (the 4-bit decoder needs CUDA)"
    if cache + HEADROOM_BYTES > free:
        return None, f"the static cache needs {(cache + HEADROOM_BYTES) / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"
    return False, short if wanted == "auto" else ""


class FastChat:
    """The fast decoder of the model loaded for chat: built once per model and adapter, in a thread."""

    def __init__(self, tell: Callable[[FastStatus], None]) -> None:
        self.tell = tell
        """Hears every change of the status (the engine sends it on as a `ChatPath` event)."""
        self._lock = threading.Lock()
        self._decoder: Any = None
        self._key: tuple[Any, ...] | None = None
        self._status = FastStatus("off")
        self._generation = 0
        self._built = threading.Event()
        self._rows: tuple[tuple[Any, ...], Any] | None = None
        """The eval's batched decoder and what it was built for."""

    @staticmethod
    def key_of(loaded: Loaded) -> tuple[Any, ...]:
        return (id(loaded.model), loaded.key, loaded.adapter_path, loaded.has_lora)

    @property
    def status(self) -> FastStatus:
        return self._status

    def offer(self, loaded: Loaded, wanted: str, max_seq_length: int) -> FastStatus:
        """Start building for `loaded` unless built or building for it already; the status either way."""
        from workbench.engine import fast_decode as fd

        key = (*self.key_of(loaded), wanted, max_seq_length)
        with self._lock:
            if self._key == key and self._status.state != "off":
                return self._status
            self._drop_locked()
            self._key = key
            if fd.supports(loaded.model) is None:
                capacity = capacity_for(max_seq_length, fd.shape_of(loaded.model).max_positions)
            else:
                capacity = 0
            merge, why = choose(loaded, wanted, capacity)
            if merge is None:
                self._status = FastStatus("unavailable", detail=why)
                self.tell(self._status)
                return self._status
            device = fd.embedding_device(loaded.model)
            path = ("bf16 merged, compiled" if device.type == "cuda" else "merged copy") if merge else "4-bit, CUDA graphs"
            self._status = FastStatus("building", path=path, detail=why)
            self.tell(self._status)
            self._built = threading.Event()
            generation = self._generation
            threading.Thread(target=self._build, args=(loaded, merge, capacity, path, generation, self._built),
                             name="fast-chat-build", daemon=True).start()
            return self._status

    def _build(self, loaded: Loaded, merge: bool, capacity: int, path: str, generation: int,
               built: threading.Event) -> None:
        from workbench.engine import fast_decode as fd

        started = time.perf_counter()
        try:
            decoder = fd.FastDecoder.build(loaded.model, capacity=capacity, merge=merge)
            decoder.compile(keep_going=lambda: self._generation == generation)
        except Exception as exc:  # the standard path keeps answering; the user hears why
            with self._lock:
                if self._generation == generation:
                    self._status = FastStatus("unavailable", detail=f"the fast path failed to build: {exc}"[:300])
                    self.tell(self._status)
            built.set()
            return
        took = time.perf_counter() - started
        with self._lock:
            if self._generation == generation:
                self._decoder = decoder
                self._status = FastStatus("ready", path=path, detail=f"built in {took:.1f} s")
                self.tell(self._status)
        built.set()

    def decoder_for(self, loaded: Loaded, wait_s: float = WAIT_FOR_BUILD_S) -> Any:
        """The ready decoder for `loaded`, waiting up to `wait_s` for a build under way; else None."""
        with self._lock:
            if self._key is None or self._key[:4] != self.key_of(loaded):
                return None
            key, built, building = self._key, self._built, self._status.state == "building"
        if building:
            built.wait(wait_s)
        with self._lock:
            return self._decoder if self._key == key else None

    def rows_decoder(self, loaded: Loaded, wanted: str, rows: int, capacity: int,
                     say: Callable[[str], None] | None = None) -> Any:
        """A decoder of `rows` rows for judging summaries (eval), on the merged copy only (a batch over 4-bit
        weights would dequantize every matrix every step); None when it cannot be had. Built and compiled
        here, in the eval's own thread (a batch job: the compile is seconds of minutes), and kept for the
        eval's later batches. Shares the chat decoder's merged weights when they are there."""
        from workbench.engine import fast_decode as fd

        if wanted in ("standard", "4bit") or fd.supports(loaded.model) is not None:
            return None
        key = (*self.key_of(loaded), "rows", rows, capacity)
        with self._lock:
            if self._rows is not None and self._rows[0] == key:
                return self._rows[1]
            chat = self._decoder if self._key is not None and self._key[:4] == self.key_of(loaded) else None
            self._rows = None
        shape = fd.shape_of(loaded.model)
        device = fd.embedding_device(loaded.model)
        cache = rows * shape.cache_bytes(capacity)
        needed = cache + HEADROOM_BYTES + (0 if chat is not None and chat.merged else shape.weight_bytes())
        if needed > free_bytes(device):
            if say:
                say(f"Eval generates on the standard path: the batched decoder needs {needed / 2**30:.1f} GiB, "
                    f"{free_bytes(device) / 2**30:.1f} GiB free.")
            return None
        started = time.perf_counter()
        if chat is not None and chat.merged:
            decoder = chat.sibling(rows, capacity)
        else:
            decoder = fd.FastDecoder.build(loaded.model, capacity=capacity, merge=True, rows=rows)
        decoder.compile()
        if say:
            say(f"Eval generates with the batched fast decoder ({rows} rows, built in {time.perf_counter() - started:.1f} s).")
        with self._lock:
            self._rows = (key, decoder)
        return decoder

    def drop(self) -> None:
        """Forget the decoder (its memory goes) and abandon a build under way."""
        with self._lock:
            self._drop_locked()

    def _drop_locked(self) -> None:
        had = self._decoder is not None or self._rows is not None or self._status.state == "building"
        self._generation += 1
        self._decoder = None
        self._rows = None
        self._key = None
        self._status = FastStatus("off")
        if had:
            self.tell(self._status)
            from workbench.engine.model import release_memory

            release_memory()
