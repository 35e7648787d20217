"""Padding-free packing: samples laid end to end in rows of at most max_seq_length tokens.

A packed row keeps every sample apart: each has its own positions (they restart at 0, which is how the
attention's sample mask finds where a sample starts, `engine/flex_attention.py`), its own loss mask, and
its first token is never a target (in a padded batch nothing predicts a sample's first token; packed, the
previous sample's last token would). So the loss over a packed batch is the loss over the same samples
padded: the same trained tokens, the same predictions.

Rows are filled best-fit-decreasing after a seeded shuffle, so a run packs the same way every time.
Also here: the length a row is computed at (`bucket`), which the attention and the memory forecast share.
Pure Python: the forecast and the tests use it without torch.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Packable(Protocol):
    @property
    def row(self) -> int: ...
    @property
    def input_ids(self) -> list[int]: ...
    @property
    def trained(self) -> list[bool]: ...


@dataclass
class PackedRow:
    input_ids: list[int] = field(default_factory=list)
    trained: list[bool] = field(default_factory=list)
    seq_lengths: list[int] = field(default_factory=list)
    """The length of each sample in the row, in order (TRL's collator makes the positions from them)."""
    rows: list[int] = field(default_factory=list)
    """The data rows the samples came from."""

    def add(self, sample: Packable) -> None:
        self.input_ids.extend(sample.input_ids)
        # the first token is a target only if the previous token is the same sample's
        self.trained.extend([False, *sample.trained[1:]])
        self.seq_lengths.append(len(sample.input_ids))
        self.rows.append(sample.row)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class PackingSummary:
    samples: int
    rows: int
    tokens: int
    capacity: int
    """rows x max_length: the tokens a padded-to-max batch would hold."""

    @property
    def fill(self) -> float:
        return self.tokens / self.capacity if self.capacity else 0.0

    def describe(self) -> str:
        return (f"Packed {self.samples} samples into {self.rows} rows of up to {self.capacity // max(self.rows, 1)} "
                f"tokens ({self.fill:.0%} full).")


def pack(samples: Sequence[Packable], max_length: int, seed: int) -> list[PackedRow]:
    """Pack samples (each at most max_length tokens) into rows of at most max_length tokens."""
    order = list(samples)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda s: len(s.input_ids), reverse=True)  # stable: ties keep the shuffled order
    rows: list[PackedRow] = []
    room: list[tuple[int, int]] = []  # (free tokens, row index), sorted: the best fit is the first that fits
    for sample in order:
        n = len(sample.input_ids)
        if n > max_length:
            raise ValueError(f"row {sample.row}: {n} tokens, more than max_length {max_length}")
        at = bisect.bisect_left(room, (n, -1))
        if at == len(room):
            rows.append(PackedRow())
            index, free = len(rows) - 1, max_length
        else:
            free, index = room.pop(at)
        rows[index].add(sample)
        if free - n > 0:
            bisect.insort(room, (free - n, index))
    return rows


def summarize(rows: Sequence[PackedRow], max_length: int) -> PackingSummary:
    return PackingSummary(samples=sum(len(r.seq_lengths) for r in rows), rows=len(rows),
                          tokens=sum(len(r) for r in rows), capacity=len(rows) * max_length)


# -- the length a row is computed at --------------------------------------------------------------

SMALLEST_BUCKET = 256
"""On CUDA, FlexAttention (`engine/flex_attention.py`) pads sequences up to a power of two from this
(256, 512, 1024, 2048, …), and the memory forecast counts them so: the compiled kernel has static shapes, and each new length compiles again (5-8 s for Gemma-2-9B's shape on an H200).
Measured there: padding to multiples of 256 gave so many lengths that a run at micro-batch 8 spent more
time compiling than training (2,957 tokens/s against unsloth's 3,600). Blocks of the padding are skipped
by the block mask; only the copy costs."""


def bucket(length: int) -> int:
    """The padded length a sequence is computed at on CUDA: the next power of two from SMALLEST_BUCKET."""
    padded = SMALLEST_BUCKET
    while padded < length:
        padded *= 2
    return padded
