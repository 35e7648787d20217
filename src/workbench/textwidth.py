"""Make Rich / Textual measure Indic text the way terminals draw it.

Rich's width table gives the spacing vowel signs of Devanagari and the other Indic scripts (Unicode
category Mc, e.g. ा ि ी ो U+093E-0940, U+0949-094C) zero columns. glibc's wcwidth (used by tmux,
xterm, VTE terminals and most others) gives them one, and terminals advance the cursor by one. With
Rich's figure every Hindi line is wider on screen than Textual planned: borders shift, words fall off
the end and text is drawn over neighbouring panes. `align_indic_widths()` gives those characters
width 1 in Rich's table, once, before anything is rendered.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from typing import Any

INDIC_BLOCKS = (0x0900, 0x0DFF)  # Devanagari, Bengali, Gurmukhi, Gujarati, Oriya, Tamil, Telugu, Kannada, Malayalam, Sinhala
_applied = False


def _spacing_marks() -> set[int]:
    lo, hi = INDIC_BLOCKS
    return {cp for cp in range(lo, hi + 1) if unicodedata.category(chr(cp)) == "Mc"}


def _without(widths: Any, codepoints: set[int]) -> list[tuple[int, int, int]]:
    """The width ranges with `codepoints` removed from zero-width ranges (unlisted characters are 1 wide)."""
    out: list[tuple[int, int, int]] = []
    for start, end, width in widths:
        if width != 0:
            out.append((start, end, width))
            continue
        run_start = None
        for cp in range(start, end + 1):
            if cp in codepoints:
                if run_start is not None:
                    out.append((run_start, cp - 1, 0))
                    run_start = None
            elif run_start is None:
                run_start = cp
        if run_start is not None:
            out.append((run_start, end, 0))
    return out


def align_indic_widths() -> None:
    global _applied
    if _applied:
        return
    import rich.cells as cells

    # `load_cell_table` is not in rich.cells' exports: an internal, listed in ui/textual_internals.py
    original = cells.load_cell_table  # type: ignore[attr-defined]
    marks = _spacing_marks()

    @cache
    def load(unicode_version: str = "auto") -> Any:
        table = original(unicode_version)
        return table._replace(widths=_without(table.widths, marks))

    cells.load_cell_table = load  # type: ignore[attr-defined]
    cells.get_character_cell_size.cache_clear()
    cells.cached_cell_len.cache_clear()
    _applied = True
