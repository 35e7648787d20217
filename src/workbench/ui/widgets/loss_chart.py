"""The loss curve: raw and smoothed training loss plus eval loss, drawn with textual-plotext.

Every point is kept (the history is the record); only the drawing is downsampled to about two points
per column, so a 10,000-step run stays as cheap to draw as a 200-step one.
"""

from __future__ import annotations

import math

from textual.app import RenderResult
from textual_plotext import PlotextPlot


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


class LossChart(PlotextPlot):
    DEFAULT_CSS = "LossChart { height: 1fr; min-height: 8; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.eval_steps: list[float] = []
        self.eval_losses: list[float] = []
        self._seen: set[int] = set()
        self._dirty = True
        self._version = 0  # bumped by replot(): the drawing's input changed
        self._drawn: tuple[object, RenderResult] | None = None

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

    def _maybe_replot(self) -> None:
        if self._dirty:
            self.replot()

    def render(self) -> RenderResult:
        # Building the plot and parsing its ANSI output takes 10-20 ms; Textual asks again whenever the
        # widget is shown or laid out (every switch to the Train pane), mostly for the same picture.
        key = (self.size, self._version, self.app.theme)
        if self._drawn is None or self._drawn[0] != key:
            self._drawn = (key, super().render())
        return self._drawn[1]

    def replot(self) -> None:
        self._dirty = False
        self._version += 1
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.theme("textual-design-dark")
        plt.title("loss")
        plt.xlabel("step")
        if not self.steps:
            self.refresh()
            return
        width = max(20, self.size.width * 2)
        xs, ys = downsample(self.steps, self.losses, width)
        plt.plot(xs, ys, label="raw", marker="braille", color="gray")
        sx, sy = downsample(self.steps, smooth(self.losses), width)
        plt.plot(sx, sy, label="smoothed", marker="braille", color="cyan")
        if self.eval_steps:
            plt.scatter(self.eval_steps, self.eval_losses, label="eval", marker="●", color="orange")
        self.refresh()
