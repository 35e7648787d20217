"""The loss curve: raw and smoothed training loss plus eval loss, drawn with textual-plotext.

Every point is kept (the history is the record); only the drawing is downsampled to about two points
per column, so a 10,000-step run stays as cheap to draw as a 200-step one.

Drawing the chart (plotext's build, parsing its ANSI output, and turning that into the widget's lines)
takes 20-35 ms on a 2-core machine, and while training the data changes several times a second. Drawn
on the UI thread, that sat in front of key presses: a switch to the Train pane drew the chart before
its frame, and every redraw while the pane was shown delayed whatever key came next. So a new drawing,
lines included, is made in a thread, and until it is ready the widget keeps showing the previous one
(a few hundred milliseconds old at most). Only when there is no drawing for the widget's size and
theme (first show, resize, theme change) is it drawn at once. The GIL still interleaves the thread with
the UI, but in slices of the interpreter's switch interval (5 ms) instead of one long block.

The controls (zoom to the last N steps, the smoothing weight, a second run's curve to compare) only
change what the next drawing is made of: a key press costs the UI thread a version bump, and the
drawing, title included, follows in the thread like any other change. What is drawn is decided by
`chart_view` (pure: tests assert on its `ChartView`), and plotext only draws it.

The y axis is honest about how much the loss moves: it spans the data, but never less than
`MIN_SPAN_FRACTION` (5%) of the loss's size. Plain autoscaling stretched any range to the full height,
so a run whose loss did not move (a learning rate of zero, a frozen adapter) drew its noise of a few
thousandths as a dramatic curve. Changes in a loss are read relative to its size (2.30 -> 2.29 is
nothing, 0.05 -> 0.04 is a lot), so the floor is relative: a loss that moves less than 5% is drawn
nearly flat, with the axis labels showing the true numbers, and a real descent, or a zoom into a real
trend, still fills the height. Anchoring at zero was rejected: it squashes ordinary curves (7.6 -> 5.9
would use the top quarter). Including the first loss was rejected too: it is already in the range
when the whole run is shown, does not help a run whose first loss is inside the noise, and would undo
every zoom.
"""

from __future__ import annotations

import io
import math
import threading
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.geometry import Region, Size
from textual.message import Message
from textual.strip import Strip
from textual.timer import Timer
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from workbench.runs import RunDir


def downsample(xs: list[float], ys: list[float], target: int) -> tuple[list[float], list[float]]:
    """Average consecutive points into `target` buckets (keeps the first and last point)."""
    n = len(xs)
    if n <= target or target < 2:
        return xs, ys
    out_x: list[float] = []
    out_y: list[float] = []
    size = n / target
    for b in range(target):
        lo, hi = int(b * size), max(int((b + 1) * size), int(b * size) + 1)
        out_x.append(xs[min(hi, n) - 1])
        out_y.append(sum(ys[lo:hi]) / (hi - lo))
    return out_x, out_y


def smooth(values: list[float], weight: float = 0.6) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


WINDOWS: tuple[int | None, ...] = (None, 1000, 200, 50)
"""What the zoom keys step through: all steps, then the last N (+ narrows, - widens)."""
SMOOTHINGS: tuple[float, ...] = (0.6, 0.9, 0.0)
"""The EMA weights the smoothing key cycles through (0.6 first: the default; 0 is off, raw only)."""
MIN_SPAN_FRACTION = 0.05
"""The y axis spans at least this fraction of the loss's size (see the module's docstring)."""

# The active run's main curve is cyan and the compared run's magenta, here and in the Runs list.
ACTIVE_COLOR, RAW_COLOR, COMPARE_COLOR, EVAL_COLOR = "cyan", "gray", "magenta", "orange"


@dataclass(frozen=True)
class Overlay:
    """Another run's loss curve, drawn over the active run's. Immutable: drawings share it, uncopied."""

    name: str
    steps: tuple[float, ...]
    losses: tuple[float, ...]
    note: str = ""
    """Why it has no points (its events could not be read), shown in the title."""


@dataclass(frozen=True)
class ChartData:
    """A copy of the history to draw, owned by whoever draws it (the UI thread keeps appending)."""

    version: int
    steps: list[float]
    losses: list[float]
    eval_steps: list[float]
    eval_losses: list[float]
    window: int | None = None
    """Show only the last this many steps (None: all)."""
    smoothing: float = SMOOTHINGS[0]
    """The EMA weight of the smoothed curves (0: none drawn)."""
    overlay: Overlay | None = None


@dataclass(frozen=True)
class Series:
    label: str
    color: str
    xs: list[float]
    ys: list[float]
    scatter: bool = False


@dataclass(frozen=True)
class ChartView:
    """What a drawing shows: the series handed to plotext (windowed, smoothed, downsampled), the axes'
    ranges and the title that states the controls."""

    title: str
    series: tuple[Series, ...] = ()
    x_range: tuple[float, float] | None = None
    """Set when zoomed: the window's steps."""
    y_range: tuple[float, float] | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(s.label for s in self.series)

    def get(self, label: str) -> Series | None:
        return next((s for s in self.series if s.label == label), None)


def honest_range(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] widened around its middle to at least MIN_SPAN_FRACTION of the values' size, and kept
    at or above zero when the values are (a loss is never negative)."""
    floor = max(abs(lo), abs(hi)) * MIN_SPAN_FRACTION or 1e-6
    if hi - lo >= floor:
        return lo, hi
    mid = (lo + hi) / 2
    new_lo, new_hi = mid - floor / 2, mid + floor / 2
    if lo >= 0 > new_lo:
        new_lo, new_hi = 0.0, floor
    return new_lo, new_hi


def window_text(window: int | None) -> str:
    return "all steps" if window is None else f"last {window} steps"


def smoothing_text(weight: float) -> str:
    return f"smoothing {weight:g}" if weight > 0 else "smoothing off"


def chart_view(data: ChartData, width: int) -> ChartView:
    """The series to draw for `data` on a chart `width` columns wide. Smoothing runs over the whole history
    before the window is cut, so a zoomed smoothed curve goes on from the full one instead of starting
    afresh at the window's edge."""
    target = max(20, width * 2)
    overlay = data.overlay if data.overlay and data.overlay.steps else None
    end = data.steps[-1] if data.steps else (overlay.steps[-1] if overlay else None)
    lo = end - data.window + 1 if data.window is not None and end is not None else None

    def cut(xs: list[float] | tuple[float, ...],
            ys: list[float] | tuple[float, ...]) -> tuple[list[float], list[float]]:
        if lo is None or end is None:
            return list(xs), list(ys)
        kept = [(x, y) for x, y in zip(xs, ys, strict=True) if lo <= x <= end]
        return [x for x, _ in kept], [y for _, y in kept]

    series: list[Series] = []
    weight = data.smoothing
    if data.steps:
        xs, ys = downsample(*cut(data.steps, data.losses), target)
        series.append(Series("raw", RAW_COLOR if weight > 0 else ACTIVE_COLOR, xs, ys))
        if weight > 0:
            sx, sy = downsample(*cut(data.steps, smooth(data.losses, weight)), target)
            series.append(Series("smoothed", ACTIVE_COLOR, sx, sy))
    if overlay is not None:
        oys = smooth(list(overlay.losses), weight) if weight > 0 else overlay.losses
        ox, oy = downsample(*cut(overlay.steps, oys), target)
        if ox:
            series.append(Series(f"vs {overlay.name}", COMPARE_COLOR, ox, oy))
    if data.eval_steps:
        ex, ey = cut(data.eval_steps, data.eval_losses)
        if ex:
            series.append(Series("eval", EVAL_COLOR, ex, ey, scatter=True))
    values = [y for s in series for y in s.ys]
    y_range = honest_range(min(values), max(values)) if values else None
    first_x = min((s.xs[0] for s in series if s.xs), default=None)
    x_range = (max(lo, first_x), end) if lo is not None and end is not None and first_x is not None else None
    title = f"loss · {window_text(data.window)} · {smoothing_text(weight)}"
    if data.overlay is not None:
        title += f" · vs {data.overlay.name}" + ("" if overlay else f" ({data.overlay.note or 'no losses'})")
    return ChartView(title, tuple(series), x_range, y_range)


@dataclass(frozen=True, eq=False)  # compared by identity: render_lines keys its cache on the drawing
class Drawing:
    size: Size
    theme: str
    """The plotext theme name."""
    version: int
    text: Text
    strips: list[Strip]
    """The text as the widget's lines (`size.height` of them, `size.width` cells each)."""
    points_per_series: int
    """How many points each loss series handed to plotext (the downsampled count)."""
    view: ChartView


def to_strips(text: Text, size: Size, base: Style) -> list[Strip]:
    """`text` as `size.height` lines of `size.width` cells, made with a private console so that it can run
    off the UI thread: for a chart of ~3,000 cells, nearly each in its own colour, this is 5-15 ms of the
    drawing. As for any widget's lines, Textual applies the widget's own style (`base`, used here only
    for missing lines) when it composes them."""
    console = Console(width=size.width, height=size.height, color_system="truecolor", force_terminal=True,
                      legacy_windows=False, file=io.StringIO(), highlight=False, markup=False, emoji=False)
    # Text.render, not console.render: plotext's lines are exactly as wide as the widget, and wrapping
    # them (console.render does) would strip their leading spaces.
    lines = Segment.split_and_crop_lines(text.render(console, end=""), size.width, include_new_lines=False,
                                         pad=True)
    strips = [Strip(line, size.width) for line in islice(lines, size.height)]
    blank = Strip.blank(size.width, base)
    return strips + [blank] * (size.height - len(strips))


def draw(plot: Plot, data: ChartData, size: Size, theme: str, base: Style) -> Drawing:
    """The chart for `data` at `size` in plotext theme `theme`, as styled text and as lines on the
    widget's own style `base`. Pure apart from `plot`, which it reuses."""
    plot.clear_data()
    plot.clear_figure()
    view = chart_view(data, size.width)
    plot.title(view.title)
    plot.xlabel("step")
    for series in view.series:
        if series.scatter:
            plot.scatter(series.xs, series.ys, label=series.label, marker="●", color=series.color)
        else:
            plot.plot(series.xs, series.ys, label=series.label, marker="braille", color=series.color)
    if view.x_range is not None:
        plot.xlim(*view.x_range)
    if view.y_range is not None:
        plot.ylim(*view.y_range)
    raw = view.get("raw")
    drawn = len(raw.xs) if raw else 0
    # What textual-plotext's own render does: the size set twice (its issue #5), then the theme.
    plot.plotsize(size.width, size.height)
    plot._set_size(size.width, size.height)
    plot.theme(theme)
    text = Text.from_ansi(plot.build())
    return Drawing(size, theme, data.version, text, to_strips(text, size, base), drawn, view)


class LossChart(PlotextPlot):  # type: ignore[misc]  # textual-plotext has no type information
    DEFAULT_CSS = "LossChart { height: 1fr; min-height: 8; }"

    class Drawn(Message):
        """A drawing made in the background thread is ready (posted from that thread)."""

        def __init__(self, drawing: Drawing | None) -> None:
            super().__init__()
            self.drawing = drawing
            """None when drawing failed: the widget keeps the previous one."""

    class OverlayRead(Message):
        """A compared run's curve was read (posted from the reading thread)."""

        def __init__(self, request: int, overlay: Overlay) -> None:
            super().__init__()
            self.request = request
            self.overlay = overlay

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.eval_steps: list[float] = []
        self.eval_losses: list[float] = []
        self._seen: set[int] = set()
        self.window: int | None = WINDOWS[0]
        self.smoothing: float = SMOOTHINGS[0]
        self.overlay: Overlay | None = None
        self._overlay_path: str | None = None
        self._overlay_request = 0
        self._dirty = True
        self._version = 0  # bumped by replot(): the drawing's input changed
        self._drawn: Drawing | None = None
        self._drawing_in_background = False
        self._draw_timer: Timer | None = None
        self._lines: tuple[object, list[Strip]] | None = None
        # One plotext figure, used by one drawer at a time: the background thread or, when the widget
        # has no drawing for its size, the UI thread.
        self._plot_lock = threading.Lock()

    def on_mount(self) -> None:
        self.set_interval(0.25, self._maybe_replot)  # a few Hz, however fast the points arrive
        self.replot()

    def clear_history(self) -> None:
        self.steps, self.losses, self.eval_steps, self.eval_losses = [], [], [], []
        self._seen = set()
        self._dirty = True

    def add_loss(self, step: int, loss: float | None) -> None:
        if loss is None or not math.isfinite(loss) or step in self._seen:
            return
        self._seen.add(step)
        self.steps.append(float(step))
        self.losses.append(loss)
        self._dirty = True

    def add_eval(self, step: int, loss: float) -> None:
        if math.isfinite(loss) and float(step) not in self.eval_steps:
            self.eval_steps.append(float(step))
            self.eval_losses.append(loss)
            self._dirty = True

    # -- controls (each a version bump on the UI thread; the drawing follows in the thread) ----------
    def zoom(self, steps: int) -> None:
        """Narrow (positive) or widen (negative) the window of steps shown, through WINDOWS."""
        index = WINDOWS.index(self.window) if self.window in WINDOWS else 0
        index = min(max(index + steps, 0), len(WINDOWS) - 1)
        if WINDOWS[index] != self.window:
            self.window = WINDOWS[index]
            self.replot()

    def cycle_smoothing(self) -> None:
        index = SMOOTHINGS.index(self.smoothing) if self.smoothing in SMOOTHINGS else -1
        self.smoothing = SMOOTHINGS[(index + 1) % len(SMOOTHINGS)]
        self.replot()

    def set_overlay(self, overlay: Overlay | None) -> None:
        self.overlay = overlay
        self.replot()

    def compare_with(self, run_dir: str | None) -> None:
        """Overlay another run's loss curve, read from its events.jsonl in a thread (None: no overlay)."""
        if run_dir == self._overlay_path:
            return  # already shown, or being read (the Train pane asks again whenever the active run changes)
        self._overlay_path = run_dir
        self._overlay_request += 1
        if run_dir is None:
            if self.overlay is not None:
                self.set_overlay(None)
            return
        request = self._overlay_request

        def read() -> None:
            name = Path(run_dir).name
            try:
                steps, losses = RunDir(run_dir).loss_curve()
            except OSError as exc:  # said in the chart's title, never a traceback
                self.post_message(self.OverlayRead(request, Overlay(name, (), (), f"unreadable: {exc.strerror or exc}")))
                return
            self.post_message(self.OverlayRead(request, Overlay(name, tuple(steps), tuple(losses))))

        self.run_worker(read, thread=True, group="overlay", exit_on_error=False)

    def on_loss_chart_overlay_read(self, message: OverlayRead) -> None:
        message.stop()
        if message.request != self._overlay_request:
            return  # another run was marked (or the mark removed) since
        self.set_overlay(message.overlay)

    def _maybe_replot(self) -> None:
        if self._dirty:
            self.replot()

    def replot(self) -> None:
        """The history changed: draw it again (in the background; the current drawing stays until then)."""
        self._dirty = False
        self._version += 1
        self.refresh()

    @property
    def drawing(self) -> Drawing | None:
        """What the widget shows now."""
        return self._drawn

    def _data(self) -> ChartData:
        return ChartData(self._version, self.steps[:], self.losses[:], self.eval_steps[:], self.eval_losses[:],
                         self.window, self.smoothing, self.overlay)

    def _theme_name(self) -> str:
        # textual-plotext's "auto" theme: the app theme's surface and foreground colours.
        theme: str = self._get_plotext_theme_name(self.app.theme)
        return theme

    def draw_now(self) -> Drawing:
        """Draw the whole history now, on this thread (first show, resize, tests, screenshots)."""
        if self._dirty:
            self.replot()
        drawing = self._draw_here()
        self.refresh()
        return drawing

    def _draw_here(self) -> Drawing:
        with self._plot_lock:
            self._drawn = draw(self._plot, self._data(), self.size, self._theme_name(), self.rich_style)
        return self._drawn

    def render_lines(self, crop: Region) -> list[Strip]:
        # Textual turns the drawing into lines again whenever the pane is shown (2-3 ms for the chart):
        # the lines of a drawing are kept until the next drawing, size, theme or crop.
        self._ensure_drawing()
        key = (self._drawn, self.size, crop)
        if self._lines is None or self._lines[0] != key:
            self._lines = (key, super().render_lines(crop))
        return self._lines[1]

    def _ensure_drawing(self) -> Drawing:
        drawn = self._drawn
        if drawn is None or drawn.size != self.size or drawn.theme != self._theme_name():
            drawn = self._draw_here()
        elif drawn.version != self._version:
            self._draw_in_background()
        return drawn

    def render(self) -> RenderResult:
        return self._ensure_drawing().text

    def render_line(self, y: int) -> Strip:
        # The drawing's own lines, made where it was drawn (usually the background thread).
        strips = self._ensure_drawing().strips
        return strips[y] if 0 <= y < len(strips) else Strip.blank(self.size.width, self.rich_style)

    # A drawing shares the GIL with the UI thread for 20-35 ms. Started right after a key (a switch to
    # the Train pane shows new points), it slowed the next key's frame (a switch back to Data took 2x as
    # long at the 95th percentile): so it waits until the keyboard has been quiet this long.
    QUIET_AFTER_INPUT_S = 0.15

    def _draw_in_background(self) -> None:
        if self._drawing_in_background or self._draw_timer is not None:
            return  # the one in flight is followed by another if the version moved on (on_loss_chart_drawn)
        wait = getattr(self.app, "last_input", 0.0) + self.QUIET_AFTER_INPUT_S - time.monotonic()
        if wait > 0:
            self._draw_timer = self.set_timer(wait, self._quiet_again)
            return
        self._drawing_in_background = True
        data, size, theme, base = self._data(), self.size, self._theme_name(), self.rich_style

        def work() -> None:
            drawing = None
            try:
                with self._plot_lock:
                    drawing = draw(self._plot, data, size, theme, base)
            finally:  # also on failure: the next change must be able to start another
                self.post_message(self.Drawn(drawing))

        self.run_worker(work, thread=True, group="loss-chart", exit_on_error=False)

    def _quiet_again(self) -> None:
        self._draw_timer = None
        if not self.region:
            return  # hidden (the user went to another pane): drawn when shown again, at its size then
        if self._drawn is not None and self._drawn.version != self._version:
            self._draw_in_background()  # waits again if a key came meanwhile

    def on_loss_chart_drawn(self, message: Drawn) -> None:
        message.stop()
        self._drawing_in_background = False
        drawing, current = message.drawing, self._drawn
        if drawing is None:
            return
        if current is None or drawing.version >= current.version:  # a draw_now meanwhile may be newer
            self._drawn = drawing
            self.refresh()
