"""scripts/terminal_png.py, the screenshots' PNG renderer: box drawing read from Unicode names, and where
its packages and fonts are installed, Devanagari words shaped whole at their cells on the cell grid."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from workbench.textwidth import align_indic_widths

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "terminal_png.py"


@pytest.fixture(scope="module")
def tp():
    spec = importlib.util.spec_from_file_location("terminal_png", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["terminal_png"] = module
    spec.loader.exec_module(module)
    align_indic_widths()
    return module


@pytest.fixture(scope="module")
def ready(tp):
    try:
        tp.check()
    except tp.MissingPiece as missing:  # the renderer's optional extra and fonts; CI has neither
        pytest.skip(str(missing))
    return tp


def test_box_drawing_characters_are_read_from_their_names(tp):
    unread = [hex(cp) for cp in range(0x2500, 0x2580) if tp._box_arms(chr(cp)) is None]
    assert unread == ["0x2571", "0x2572", "0x2573"]  # the diagonals, left to a font
    assert tp._box_arms("┌") == ({"d": 1, "r": 1}, "")
    assert tp._box_arms("╬") == ({"u": 3, "d": 3, "l": 3, "r": 3}, "")
    assert tp._box_arms("┽") == ({"l": 2, "r": 1, "u": 1, "d": 1}, "")
    assert tp._box_arms("╒") == ({"d": 1, "r": 3}, "")
    assert tp._box_arms("╌") == ({"l": 1, "r": 1}, "dash2")
    assert tp._box_arms("╭")[1] == "arc"


def test_check_names_what_is_missing_or_passes(tp):
    try:
        tp.check()
    except tp.MissingPiece as missing:
        assert "install" in str(missing)


def test_devanagari_words_are_shaped_whole_at_their_columns(ready):
    look = ready.Look((255, 255, 255), (0, 0, 0))
    text = "माँ: नेहा, 14 फरवरी"
    run = ready.Run(3, 0, look, ready._clusters(text, 3))
    pieces = ready._pieces(run)
    assert [(p.text, p.col, p.role) for p in pieces] == [
        ("माँ:", 3, "deva"), ("नेहा,", 7, "deva"), ("14", 12, "mono"), ("फरवरी", 15, "deva")]
    assert [p.span for p in pieces] == [3, 4, 2, 5]  # ा takes a column, ँ and े none (textwidth.py)


def test_borders_stay_on_the_cell_grid(ready, tmp_path):
    from PIL import Image
    from rich.cells import cell_len
    from rich.style import Style

    border = Style(color="#ff0000")
    hindi = "पिताजी: शर्मा गार्डन वालों"  # 23 columns, as a terminal draws it
    rows = [
        [("│", border), (hindi.ljust(25 - cell_len(hindi) + len(hindi)), None), ("│", border)],
        [("│", border), ("abcdefghijklmnopqrstuvwxy", None), ("│", border)],
    ]
    assert cell_len(hindi) == 23
    out = Image.open(ready.render(rows, tmp_path / "grid.png")).convert("RGB")
    x = ready.PAD + 26 * ready.CELL_W + ready.CELL_W // 2  # the middle of column 26
    for row in range(2):
        y = ready.BAR_H + ready.PAD + row * ready.CELL_H + ready.CELL_H // 2
        assert out.getpixel((x, y)) == (255, 0, 0)
