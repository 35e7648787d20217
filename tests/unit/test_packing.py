"""Best-fit-decreasing packing: every sample once, rows within the limit, first tokens never targets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from workbench import packing


@dataclass
class Sample:
    row: int
    input_ids: list[int]
    trained: list[bool]


def samples(lengths: list[int]) -> list[Sample]:
    return [Sample(i, [100 + i] * n, [False] * (n // 2) + [True] * (n - n // 2)) for i, n in enumerate(lengths)]


def test_every_sample_lands_once_within_the_limit() -> None:
    data = samples([900, 120, 400, 600, 80, 1000, 24, 510, 300])
    rows = packing.pack(data, 1024, seed=1)
    assert sorted(r for row in rows for r in row.rows) == list(range(len(data)))
    assert all(len(row) <= 1024 for row in rows)
    assert all(sum(row.seq_lengths) == len(row) for row in rows)
    assert len(rows) == 4  # 3,934 tokens: best fit needs no more than the 4 rows the total demands


def test_a_packed_sample_keeps_its_tokens_and_mask_but_its_first_token_is_no_target() -> None:
    data = samples([6, 4])
    (row,) = packing.pack(data, 16, seed=0)
    at = 0
    for n, r in zip(row.seq_lengths, row.rows, strict=True):
        assert row.input_ids[at:at + n] == data[r].input_ids
        assert row.trained[at:at + n] == [False, *data[r].trained[1:]]
        at += n


def test_packing_is_the_same_for_the_same_seed() -> None:
    data = samples([50, 50, 50, 50, 30, 30, 70])
    first = [row.rows for row in packing.pack(data, 128, seed=7)]
    assert first == [row.rows for row in packing.pack(data, 128, seed=7)]


def test_a_sample_longer_than_a_row_is_refused_by_row() -> None:
    with pytest.raises(ValueError, match="row 1: 40 tokens"):
        packing.pack(samples([10, 40]), 32, seed=0)


def test_summary() -> None:
    rows = packing.pack(samples([500, 500, 24, 600]), 1024, seed=0)
    summary = packing.summarize(rows, 1024)
    assert (summary.samples, summary.rows, summary.tokens) == (4, 2, 1624)
    assert summary.describe() == "Packed 4 samples into 2 rows of up to 1024 tokens (79% full)."
