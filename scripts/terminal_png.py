"""Draw a terminal screen, rows of Rich segments, as a PNG the way a terminal shows it.

Textual's SVG export (Rich's `export_svg`) stretches every text run over its cells with `textLength`, so
the vowel signs and conjuncts of Devanagari come apart, and SVG renderers collapse runs of spaces. This
renderer works on the cell grid instead:
- every cell's background is a rectangle at its column;
- text is drawn a word at a time (the runs between spaces, within one style), each word shaped as a
  whole by HarfBuzz (Pillow's raqm layout) and placed at the column of its first cell, as a terminal
  places it; a word wider than its cells and the spaces after it is narrowed to fit, never drawn over
  the next word or a border;
- Devanagari words use Noto Sans Devanagari; everything else DejaVu Sans Mono, whose advance is exactly
  one cell here; characters neither has come from DejaVu Sans or Noto's symbol fonts, centred in their
  cells;
- box-drawing, block and braille characters are drawn as shapes filling their cells, as terminals draw
  them, so borders join from row to row and the bars of charts and gauges line up.

Cell widths are Rich's, with `workbench.textwidth.align_indic_widths()` applied (the app applies it at
import): spacing vowel signs take one column, as terminals draw them.

Needs Pillow >= 10.1 with raqm (the PyPI wheels have it built in and load FriBiDi at run time), fontTools
and the fonts. Debian / Ubuntu:

    apt-get install fonts-dejavu-core fonts-noto-core libfribidi0
    pip install -e ".[screenshots]"

`check()` says which of these is missing.
"""

from __future__ import annotations

import math
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

INSTALL_FONTS = "apt-get install fonts-dejavu-core fonts-noto-core"
INSTALL_PY = 'pip install -e ".[screenshots]"'

CELL_W = 11  # pixels; the monospace font is sized so that its advance is exactly this
CELL_H = 23
PAD = 12  # around the screen, inside the window
BAR_H = 34  # the window's title bar
RADIUS = 10  # of the window's corners
# Noto Sans Devanagari at the monospace font's size draws Hindi words about 0.8 of their cells wide
# (spacing vowel signs are narrow glyphs but take a cell each): a little larger, they fill their cells
# about as Latin text does and the gaps between words stay near one cell
DEVA_SCALE = 1.2
MIN_GAP = CELL_W // 2  # pixels kept blank before the next word when a word is wider than its cells
MISSING: set[str] = set()  # characters no font had, drawn as the monospace font's missing-glyph box

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts",
             "/Library/Fonts", "~/Library/Fonts")
FONT_FILES = {  # role: file name, searched under FONT_DIRS
    "mono": "DejaVuSansMono.ttf",
    "mono-bold": "DejaVuSansMono-Bold.ttf",
    "deva": "NotoSansDevanagari-Regular.ttf",
    "deva-bold": "NotoSansDevanagari-Bold.ttf",
}
OPTIONAL_FONT_FILES = {
    "mono-italic": "DejaVuSansMono-Oblique.ttf",  # fonts-dejavu-extra; without it italic is upright
    "mono-bold-italic": "DejaVuSansMono-BoldOblique.ttf",
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "symbols2": "NotoSansSymbols2-Regular.ttf",
    "symbols": "NotoSansSymbols-Regular.ttf",
    "math": "NotoSansMath-Regular.ttf",
}
FALLBACKS = ("sans", "symbols2", "symbols", "math")


class MissingPiece(RuntimeError):
    """Something the renderer needs is not installed; the message names it and how to install it."""


# ---------------------------------------------------------------------------------------------------
# Requirements and fonts


def _find_font(name: str) -> Path | None:
    for folder in FONT_DIRS:
        root = Path(folder).expanduser()
        if root.is_dir():
            for found in root.rglob(name):
                return found
    return None


@cache
def font_paths() -> dict[str, Path]:
    paths: dict[str, Path] = {}
    missing = []
    for role, name in FONT_FILES.items():
        found = _find_font(name)
        if found is None:
            missing.append(name)
        else:
            paths[role] = found
    if missing:
        raise MissingPiece(f"font {', '.join(missing)} not found under {', '.join(FONT_DIRS)}. "
                           f"Debian / Ubuntu: {INSTALL_FONTS}")
    for role, name in OPTIONAL_FONT_FILES.items():
        found = _find_font(name)
        if found is not None:
            paths[role] = found
    return paths


def check() -> None:
    """Raise MissingPiece naming the first missing package or font."""
    try:
        import PIL
        from PIL import ImageFont, features
    except ImportError:
        raise MissingPiece(f"Pillow is not installed: {INSTALL_PY}") from None
    version = tuple(int(p) for p in PIL.__version__.split(".")[:2])
    if version < (10, 1):
        raise MissingPiece(f"Pillow {PIL.__version__} is too old (10.1 or newer): {INSTALL_PY}")
    if not features.check_feature("raqm"):
        raise MissingPiece(
            "Pillow has no raqm text layout, so Devanagari can't be shaped. The PyPI wheels have it and load "
            "FriBiDi at run time: apt-get install libfribidi0 (a Pillow built from source needs libraqm-dev "
            "when it is built)")
    if not hasattr(ImageFont, "Layout"):
        raise MissingPiece(f"Pillow {PIL.__version__} has no ImageFont.Layout: {INSTALL_PY}")
    try:
        import fontTools  # noqa: F401
    except ImportError:
        raise MissingPiece(f"fontTools is not installed: {INSTALL_PY}") from None
    font_paths()


@cache
def _cmap(role: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(font_paths()[role], lazy=True) as font:
        return frozenset(font.getBestCmap())


@cache
def _mono_size() -> float:
    """The point size at which the monospace font advances exactly CELL_W pixels a character."""
    from fontTools.ttLib import TTFont

    with TTFont(font_paths()["mono"], lazy=True) as font:
        advance = font["hmtx"]["M"][0]
        return CELL_W * font["head"].unitsPerEm / advance


@cache
def _font(role: str, size: float | None = None) -> Any:
    from PIL import ImageFont

    size = size or _mono_size() * (DEVA_SCALE if role.startswith("deva") else 1)
    return ImageFont.truetype(str(font_paths()[role]), size, layout_engine=ImageFont.Layout.RAQM)


def _has(role: str, text: str) -> bool:
    if role not in font_paths():
        return False
    cmap = _cmap(role)
    return all(ord(ch) in cmap for ch in text if not _ignorable(ch))


def _ignorable(ch: str) -> bool:
    return ch in "\u200c\u200d\ufe0e\ufe0f"


def _mono_role(bold: bool, italic: bool) -> str:
    role = "mono" + ("-bold" if bold else "") + ("-italic" if italic else "")
    if role in font_paths():
        return role
    return "mono-bold" if bold else "mono"


# ---------------------------------------------------------------------------------------------------
# Styles


RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Look:
    fg: RGB
    bg: RGB
    bold: bool = False
    italic: bool = False
    underline: bool = False
    strike: bool = False


def _look(style: Any, theme: Any) -> Look:
    """Colours as Rich's SVG export resolves them (default colours from the theme, reverse, dim)."""
    from rich.color import blend_rgb

    fg = theme.foreground_color
    bg = theme.background_color
    if style is None:
        return Look(tuple(fg), tuple(bg))
    if style.color is not None and not style.color.is_default:
        fg = style.color.get_truecolor(theme)
    if style.bgcolor is not None and not style.bgcolor.is_default:
        bg = style.bgcolor.get_truecolor(theme, foreground=False)
    if style.reverse:
        fg, bg = bg, fg
    if style.dim:
        fg = blend_rgb(fg, bg, 0.4)
    return Look(tuple(fg), tuple(bg), bool(style.bold), bool(style.italic), bool(style.underline),
                bool(style.strike))


# ---------------------------------------------------------------------------------------------------
# Cells to pieces of text


def is_devanagari(ch: str) -> bool:
    cp = ord(ch)
    return 0x0900 <= cp <= 0x097F or 0xA8E0 <= cp <= 0xA8FF or 0x1CD0 <= cp <= 0x1CFF


def is_drawn(ch: str) -> bool:
    """Box drawing, block elements and braille: drawn as shapes, not glyphs."""
    cp = ord(ch)
    return (0x2500 <= cp <= 0x257F and _box_arms(ch) is not None) or 0x2580 <= cp <= 0x259F or 0x2800 <= cp <= 0x28FF


@dataclass
class Cluster:
    col: int
    width: int
    text: str


@dataclass
class Piece:
    col: int
    span: int  # cells
    text: str
    role: str
    centred: bool = False  # a fallback glyph, centred in its cells
    limit: int = 0  # cells it may use before it is narrowed


@dataclass
class Run:
    """One segment of a row: consecutive cells of one style."""

    col: int
    width: int
    look: Look
    clusters: list[Cluster] = field(default_factory=list)


def _clusters(text: str, col: int) -> list[Cluster]:
    from rich.cells import get_character_cell_size

    out: list[Cluster] = []
    for ch in text:
        width = get_character_cell_size(ch)
        if width == 0 and out:
            out[-1].text += ch
        else:
            out.append(Cluster(col, width, ch))
            col += width
    return out


def _words(run: Run) -> list[tuple[list[Cluster], int]]:
    """The run's words (clusters between blanks and drawn characters), each with the column where the
    next thing in the run starts, or the run's end: a word may spread over the blank cells up to there."""
    words: list[list[Cluster]] = []
    word: list[Cluster] = []
    for cluster in run.clusters:
        if cluster.text.isspace() or is_drawn(cluster.text[0]):
            if word:
                words.append(word)
            word = []
        else:
            word.append(cluster)
    if word:
        words.append(word)
    taken = [c.col for c in run.clusters if not c.text.isspace()]
    out = []
    for word in words:
        end = word[-1].col + word[-1].width
        out.append((word, next((col for col in taken if col >= end), run.col + run.width)))
    return out


def _role(cluster: Cluster, look: Look) -> tuple[str, bool]:
    """The font for one cluster, and whether it is a fallback glyph to centre in its cells."""
    deva = "deva-bold" if look.bold else "deva"
    if is_devanagari(cluster.text[0]) and _has(deva, cluster.text):
        return deva, False
    mono = _mono_role(look.bold, look.italic)
    if _has(mono, cluster.text):
        return mono, False
    for fallback in ("sans-bold",) * look.bold + FALLBACKS + (deva,):
        if _has(fallback, cluster.text):
            return fallback, True
    MISSING.update(ch for ch in cluster.text if not _ignorable(ch))
    return mono, False


def _pieces(run: Run) -> list[Piece]:
    """The run's text as pieces to draw: a word at a time, split where the font changes (a Devanagari
    word with its punctuation and digits is one piece, shaped whole)."""
    pieces: list[Piece] = []
    deva = "deva-bold" if run.look.bold else "deva"
    for word, next_col in _words(run):
        text = "".join(c.text for c in word)
        word_pieces: list[Piece] = []
        if any(is_devanagari(ch) for ch in text) and _has(deva, text):
            word_pieces.append(Piece(word[0].col, 0, text, deva))
        else:
            for cluster in word:
                role, centred = _role(cluster, run.look)
                last = word_pieces[-1] if word_pieces else None
                if last and last.role == role and not centred and not last.centred:
                    last.text += cluster.text
                else:
                    word_pieces.append(Piece(cluster.col, 0, cluster.text, role, centred))
        ends = [p.col for p in word_pieces[1:]] + [word[-1].col + word[-1].width]
        for piece, end in zip(word_pieces, ends, strict=True):
            piece.span = end - piece.col
            piece.limit = (next_col if piece is word_pieces[-1] else end) - piece.col
        pieces.extend(word_pieces)
    return pieces


# ---------------------------------------------------------------------------------------------------
# Box drawing, blocks, braille


_WEIGHTS = {"LIGHT": 1, "SINGLE": 1, "HEAVY": 2, "DOUBLE": 3}
_DIRS = {"UP": "u", "DOWN": "d", "LEFT": "l", "RIGHT": "r", "VERTICAL": "ud", "HORIZONTAL": "lr"}


@cache
def _box_arms(ch: str) -> tuple[dict[str, int], str] | None:
    """For a box-drawing character: the weight of each arm from the centre (1 light, 2 heavy, 3 double)
    and its kind ('' plain, 'arc', 'dash2'/'dash3'/'dash4'), read from its Unicode name; None for the
    diagonals and any name not understood (drawn from a font then)."""
    name = unicodedata.name(ch, "")
    if not name.startswith("BOX DRAWINGS ") or "DIAGONAL" in name:
        return None
    words = name[len("BOX DRAWINGS "):].split()
    kind = ""
    if "ARC" in words:
        kind, words = "arc", [w for w in words if w != "ARC"]
    if "DASH" in words:  # "LIGHT DOUBLE DASH HORIZONTAL": this DOUBLE counts the dashes
        i = words.index("DASH")
        kind = "dash" + str({"DOUBLE": 2, "TRIPLE": 3, "QUADRUPLE": 4}[words[i - 1]])
        words = words[:i - 1] + words[i + 1:]
    parts: list[tuple[str, int | None]] = []
    for part in " ".join(words).split(" AND "):
        tokens = part.split()
        weights = [_WEIGHTS[t] for t in tokens if t in _WEIGHTS]
        dirs = "".join(_DIRS[t] for t in tokens if t in _DIRS)
        if not dirs or any(t not in _WEIGHTS and t not in _DIRS for t in tokens):
            return None
        parts.append((dirs, weights[0] if weights else None))
    arms: dict[str, int] = {}
    for i, (dirs, weight) in enumerate(parts):
        if weight is None:  # "LIGHT DOWN AND RIGHT": the weight is said once, for all
            weight = next((w for _, w in parts[i::-1] if w), None) or next((w for _, w in parts if w), 1)
        for d in dirs:
            arms[d] = weight
    return arms, kind


def _draw_cell(draw: Any, ch: str, x: int, y: int, look: Look) -> bool:
    """Draw a box, block or braille character filling the cell at (x, y); False if it isn't one."""
    fg = look.fg
    cp = ord(ch)
    w, h = CELL_W, CELL_H
    if 0x2800 <= cp <= 0x28FF:
        bits = cp - 0x2800
        dots = [(0, 0, 0x01), (0, 1, 0x02), (0, 2, 0x04), (1, 0, 0x08), (1, 1, 0x10), (1, 2, 0x20),
                (0, 3, 0x40), (1, 3, 0x80)]
        r = max(1.0, w / 7)
        for col, row, bit in dots:
            if bits & bit:
                cx = x + w * (col * 2 + 1) / 4
                cy = y + h * (row * 2 + 1) / 8
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
        return True
    if 0x2580 <= cp <= 0x259F:
        _draw_block(draw, cp, x, y, look)
        return True
    found = _box_arms(ch)
    if found is None:
        return False
    arms, kind = found
    light = max(1, round(w / 9))
    heavy = light * 2 + 1
    cx, cy = x + w // 2, y + h // 2
    if kind == "arc":
        r = w // 2
        vy, hx = (-1 if "u" in arms else 1), (-1 if "l" in arms else 1)
        ox, oy = cx + hx * r, cy + vy * r  # the circle's centre
        start = {(1, 1): 180, (-1, 1): 270, (-1, -1): 0, (1, -1): 90}[(hx, vy)]
        draw.arc((ox - r, oy - r, ox + r, oy + r), start, start + 90, fill=fg, width=light)
        _line(draw, "u" if vy < 0 else "d", cx, oy, x, y, light, fg)
        _line(draw, "l" if hx < 0 else "r", ox, cy, x, y, light, fg)
        return True
    gap = light + 1  # half the distance between the two strokes of a double line
    for d, weight in arms.items():
        if weight != 3:
            _line(draw, d, cx, cy, x, y, light if weight == 1 else heavy, fg,
                  dashes=int(kind[4:]) if kind.startswith("dash") else 0, overlap=gap if 3 in arms.values() else 0)
            continue
        sides = "lr" if d in "ud" else "ud"
        for side, offset in zip(sides, (-gap, gap), strict=True):
            # a stroke stops short where an arm leaves on its side (the inner corner), else runs past the centre
            back = -gap if side in arms else gap
            if d in "ud":
                _line(draw, d, cx + offset, cy, x, y, light, fg, overlap=back)
            else:
                _line(draw, d, cx, cy + offset, x, y, light, fg, overlap=back)
    return True


def _line(draw: Any, d: str, cx: float, cy: float, x: int, y: int, width: int, fg: RGB, *,
          dashes: int = 0, overlap: int = 0) -> None:
    """A stroke from the centre line (cx, cy) to the cell's edge in direction d, starting `overlap` pixels
    behind the centre (negative: ahead of it) so that arms meet without gaps."""
    lo = -(width // 2)
    hi = lo + width - 1  # the stroke covers [lo, hi] pixels across the centre line
    back = overlap if overlap else -lo
    if d == "l":
        rect = (x, cy + lo, cx + back, cy + hi)
    elif d == "r":
        rect = (cx - back, cy + lo, x + CELL_W - 1, cy + hi)
    elif d == "u":
        rect = (cx + lo, y, cx + hi, cy + back)
    else:
        rect = (cx + lo, cy - back, cx + hi, y + CELL_H - 1)
    if dashes:
        _dashed(draw, rect, d in "lr", dashes, fg)
    else:
        draw.rectangle(rect, fill=fg)


def _dashed(draw: Any, rect: tuple[float, float, float, float], horizontal: bool, count: int, fg: RGB) -> None:
    x0, y0, x1, y1 = rect
    length = (x1 - x0) if horizontal else (y1 - y0)
    step = length / count
    for i in range(count):
        a, b = i * step, i * step + step * 0.6
        draw.rectangle((x0 + a, y0, x0 + b, y1) if horizontal else (x0, y0 + a, x1, y0 + b), fill=fg)


def _draw_block(draw: Any, cp: int, x: int, y: int, look: Look) -> None:
    w, h = CELL_W, CELL_H

    def box(fx0: float, fy0: float, fx1: float, fy1: float, colour: RGB = look.fg) -> None:
        x0, x1 = x + round(fx0 * w), x + round(fx1 * w)
        y0, y1 = y + round(fy0 * h), y + round(fy1 * h)
        if x1 > x0 and y1 > y0:
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=colour)

    if cp == 0x2580:
        box(0, 0, 1, 0.5)
    elif 0x2581 <= cp <= 0x2588:  # lower 1/8 .. full
        box(0, 1 - (cp - 0x2580) / 8, 1, 1)
    elif 0x2589 <= cp <= 0x258F:  # left 7/8 .. 1/8
        box(0, 0, (0x2590 - cp) / 8, 1)
    elif cp == 0x2590:
        box(0.5, 0, 1, 1)
    elif 0x2591 <= cp <= 0x2593:  # shades
        from rich.color import blend_rgb
        from rich.color_triplet import ColorTriplet

        share = (cp - 0x2590) / 4
        box(0, 0, 1, 1, tuple(blend_rgb(ColorTriplet(*look.bg), ColorTriplet(*look.fg), share)))
    elif cp == 0x2594:
        box(0, 0, 1, 1 / 8)
    elif cp == 0x2595:
        box(7 / 8, 0, 1, 1)
    else:  # quadrants 2596..259F: upper left, upper right, lower left, lower right
        quads = {0x2596: "ll", 0x2597: "lr", 0x2598: "ul", 0x2599: "ul ll lr", 0x259A: "ul lr",
                 0x259B: "ul ur ll", 0x259C: "ul ur lr", 0x259D: "ur", 0x259E: "ur ll", 0x259F: "ur ll lr"}[cp]
        for q in quads.split():
            fx, fy = (0.5 if q[1] == "r" else 0), (0.5 if q[0] == "l" else 0)
            box(fx, fy, fx + 0.5, fy + 0.5)


# ---------------------------------------------------------------------------------------------------
# The picture


def render(rows: Sequence[Iterable[tuple[str, Any]]], target: Path | str, *, title: str = "",
           theme: Any = None) -> Path:
    """Write rows of (text, Rich style) segments, one list per screen row, as a PNG at `target`."""
    from PIL import Image, ImageDraw
    from rich.terminal_theme import SVG_EXPORT_THEME

    theme = theme or SVG_EXPORT_THEME
    screen_bg = tuple(theme.background_color)
    runs_by_row: list[list[Run]] = []
    for row in rows:
        # Textual splits a line into many segments of the same style: join them into runs first, so
        # that a word is shaped whole
        joined: list[tuple[str, Look]] = []
        for text, style, *_ in row:
            look = _look(style, theme)
            if joined and joined[-1][1] == look:
                joined[-1] = (joined[-1][0] + text, look)
            elif text:
                joined.append((text, look))
        runs: list[Run] = []
        col = 0
        for text, look in joined:
            clusters = _clusters(text, col)
            width = sum(c.width for c in clusters)
            runs.append(Run(col, width, look, clusters))
            col += width
        runs_by_row.append(runs)
    cols = max((r[-1].col + r[-1].width for r in runs_by_row if r), default=0)
    width = cols * CELL_W + 2 * PAD
    height = BAR_H + len(runs_by_row) * CELL_H + 2 * PAD
    image = Image.new("RGB", (width, height), screen_bg)
    draw = ImageDraw.Draw(image)
    _window(draw, width, title)
    left, top = PAD, BAR_H + PAD
    ascent, descent = _font("mono").getmetrics()
    baseline = (CELL_H - ascent - descent) // 2 + ascent

    # backgrounds first, then the drawn characters, then text: tall marks may reach into the row above
    for y_index, runs in enumerate(runs_by_row):
        y = top + y_index * CELL_H
        for run in runs:
            if run.width > 0:
                draw.rectangle((left + run.col * CELL_W, y, left + (run.col + run.width) * CELL_W - 1, y + CELL_H - 1),
                               fill=run.look.bg)
    for y_index, runs in enumerate(runs_by_row):
        y = top + y_index * CELL_H
        for run in runs:
            for cluster in run.clusters:
                if is_drawn(cluster.text[0]):
                    _draw_cell(draw, cluster.text[0], left + cluster.col * CELL_W, y, run.look)
    for y_index, runs in enumerate(runs_by_row):
        y = top + y_index * CELL_H
        for run in runs:
            for piece in _pieces(run):
                _text(image, draw, piece, left + piece.col * CELL_W, y + baseline, run.look.fg)
            _lines(draw, run, left, y, baseline)
    corners = Image.new("L", image.size, 0)  # the window's rounded corners are transparent
    ImageDraw.Draw(corners).rounded_rectangle((0, 0, width - 1, height - 1), radius=RADIUS, fill=255)
    image.putalpha(corners)
    target = Path(target)
    image.save(target, optimize=True)
    if MISSING:
        names = ", ".join(f"U+{ord(ch):04X} {ch}" for ch in sorted(MISSING))
        print(f"terminal_png: no font has {names}; drawn as missing-glyph boxes in {target.name}", file=sys.stderr)
        MISSING.clear()
    return target


def _text(image: Any, draw: Any, piece: Piece, x: int, baseline_y: int, fg: RGB) -> None:
    font = _font(piece.role)
    language = "hi" if piece.role.startswith("deva") else None
    natural = font.getlength(piece.text, language=language)
    # its own cells, and the blank cells after it but for a gap before whatever comes next
    room = piece.span * CELL_W + max(0, (piece.limit - piece.span) * CELL_W - MIN_GAP)
    if piece.centred:
        room = piece.span * CELL_W
        if natural <= room:
            draw.text((x + (room - natural) / 2, baseline_y), piece.text, font=font, fill=fg, anchor="ls",
                      language=language)
            return
    elif natural <= room + 0.5:
        draw.text((x, baseline_y), piece.text, font=font, fill=fg, anchor="ls", language=language)
        return
    _narrowed(image, piece.text, font, language, x, baseline_y, natural, room, fg)


def _narrowed(image: Any, text: str, font: Any, language: str | None, x: int, baseline_y: int,
              natural: float, room: float, fg: RGB) -> None:
    """Draw text squeezed horizontally into `room` pixels (a word wider than the cells it may use)."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(text, anchor="ls", language=language)
    margin = max(0, -int(left))
    w = math.ceil(max(right, natural)) + margin + 1
    h = int(bottom - top) + 2
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).text((margin, -top + 1), text, font=font, fill=255, anchor="ls", language=language)
    scale = room / natural
    new_w = max(1, round(w * scale))
    mask = mask.resize((new_w, h), Image.Resampling.LANCZOS)
    image.paste(fg, (round(x - margin * scale), int(baseline_y + top - 1)), mask)


def _lines(draw: Any, run: Run, left: int, y: int, baseline: int) -> None:
    x0, x1 = left + run.col * CELL_W, left + (run.col + run.width) * CELL_W - 1
    if run.look.underline:
        draw.rectangle((x0, y + baseline + 2, x1, y + baseline + 2), fill=run.look.fg)
    if run.look.strike:
        mid = y + baseline - round(CELL_H * 0.27)
        draw.rectangle((x0, mid, x1, mid), fill=run.look.fg)


def _window(draw: Any, width: int, title: str) -> None:
    """The window around the screen, as in Rich's SVG export: a frame, three dots and the title."""
    draw.rounded_rectangle((0, 0, width - 1, draw.im.size[1] - 1), radius=RADIUS, outline=(64, 64, 64))
    for i, colour in enumerate(((255, 95, 87), (254, 188, 46), (40, 200, 64))):
        cx, cy = 20 + i * 22, BAR_H // 2 + 1
        draw.ellipse((cx - 6, cy - 6, cx + 6, cy + 6), fill=colour)
    if title:
        font = _font("sans-bold" if "sans-bold" in font_paths() else "mono-bold", 15)
        draw.text((width / 2, BAR_H // 2 + 1), title, font=font, fill=(200, 200, 200), anchor="mm")
