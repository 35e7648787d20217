"""The loss chart draws new data in a thread and shows the previous drawing until then; it draws at once
only when it has nothing for its size. The drawing is real plotext output. And the Train pane does not
redraw itself for nothing while idle."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.widgets import ProgressBar
from textual.widgets._progress_bar import Bar

from tests.ui.conftest import wait_for
from tests.ui.scenarios import T0
from tests.ui.scripted import scripted_app_factory
from workbench import requests as rq
from workbench.protocol import Error, Log, TrainStart
from workbench.runs import RunDir
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.train_pane import TrainPane
from workbench.ui.widgets import loss_chart
from workbench.ui.widgets.loss_chart import ChartData, LossChart, chart_view, downsample, honest_range, smooth


class ChartApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LossChart(id="chart")


@pytest.fixture
def drawn_on(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread of every drawing the chart makes, in order."""
    names: list[str] = []
    real_draw = loss_chart.draw

    def recording_draw(*args, **kwargs):
        names.append(threading.current_thread().name)
        return real_draw(*args, **kwargs)

    monkeypatch.setattr(loss_chart, "draw", recording_draw)
    return names


def braille_cells(chart: LossChart) -> int:
    drawing = chart.drawing
    assert drawing is not None
    return sum(0x2800 < ord(ch) <= 0x28FF for ch in drawing.text.plain)


async def test_new_points_are_drawn_off_the_ui_thread(drawn_on: list[str]):
    app = ChartApp()
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one(LossChart)
        await pilot.pause()
        first = chart.drawing
        assert first is not None and first.points_per_series == 0, "an empty chart is drawn on first show"
        assert drawn_on == [threading.main_thread().name], "with nothing for its size, it draws at once"
        for step in range(1, 301):
            chart.add_loss(step, 3.0 / step)
        chart.replot()
        # The frame right after the change still shows the old drawing (nothing is drawn on this thread) ...
        assert chart.render() is first.text
        # ... and the new one arrives from the worker thread.
        await wait_for(pilot, lambda: chart.drawing is not None and chart.drawing.version == chart._version, 10,
                       "the background drawing")
        assert len(drawn_on) >= 2 and all(name != threading.main_thread().name for name in drawn_on[1:])
        assert chart.drawing.points_per_series == 200, "300 points downsampled to two per column"
        assert braille_cells(chart) > 50, "the curves are drawn"
        strips = chart.drawing.strips  # the widget's lines, made in the thread too
        assert len(strips) == chart.size.height and {s.cell_length for s in strips} == {chart.size.width}
        assert sum(0x2800 < ord(ch) <= 0x28FF for s in strips for ch in s.text) == braille_cells(chart)


async def test_a_resize_draws_at_once_and_draw_now_takes_unreplotted_points():
    app = ChartApp()
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one(LossChart)
        for step in range(1, 51):
            chart.add_loss(step, 1.0 + 1 / step)
        drawing = chart.draw_now()  # not replotted yet: draw_now includes the new points anyway
        assert drawing.points_per_series == 50 and drawing.version == chart._version
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        assert chart.render() is chart.drawing.text and chart.drawing.size == chart.size
        assert chart.drawing.size.width < 100


async def test_a_failed_background_drawing_keeps_the_old_one(monkeypatch: pytest.MonkeyPatch):
    app = ChartApp()
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one(LossChart)
        await pilot.pause()
        first = chart.drawing

        def broken(*args, **kwargs):
            raise ValueError("plotext failed")

        monkeypatch.setattr(loss_chart, "draw", broken)
        chart.add_loss(1, 2.0)
        chart.replot()
        await wait_for(pilot, lambda: not chart._drawing_in_background, 10, "the failed drawing to report")
        assert chart.drawing is first, "the old drawing stays"
        monkeypatch.undo()
        chart.add_loss(2, 1.5)
        chart.replot()
        await wait_for(pilot, lambda: chart.drawing is not first, 10, "the next drawing after the failure")
        assert chart.drawing.points_per_series == 2


async def test_the_train_progress_bar_animates_only_while_a_run_starts(demo_config_path: Path):
    # An indeterminate bar redraws 15 times a second (bytes over SSH) for as long as the pane is open.
    factory, engines = scripted_app_factory({rq.Train: lambda args, rid, emit: None})  # left unanswered
    app = WorkbenchApp(config_path=demo_config_path, engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await pilot.press("3")
        bar = app.query_one("#train-progress", ProgressBar)
        assert bar.total is not None and bar.query_one(Bar).auto_refresh is None, "idle: a still bar"
        await wait_for(pilot, lambda: app.engine_ready, 10, "the engine's hello")
        await pilot.press("t")
        await pilot.pause()
        engine = engines[0]
        assert engine.requests(rq.Train) and bar.total is None and bar.query_one(Bar).auto_refresh, "starting: busy"
        rid = next(r for r, a in engine.ids.items() if isinstance(a, rq.Train))
        engine.answer(rid, Error(type="model_load", message="no such model", hint="fix model.name"))
        await pilot.pause()
        assert bar.total is not None and bar.query_one(Bar).auto_refresh is None, "failed: still again"
        assert "no such model" in str(app.query_one("#train-phase").render())


async def test_a_new_drawing_waits_for_a_pause_in_the_typing():
    app = ChartApp()
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one(LossChart)
        await pilot.pause()
        first = chart.drawing
        app.last_input = time.monotonic()  # what WorkbenchApp records on every key and click
        chart.add_loss(1, 2.0)
        chart.replot()
        await pilot.pause(0.05)
        assert chart.drawing is first and not chart._drawing_in_background, "no drawing right after a key"
        await wait_for(pilot, lambda: chart.drawing is not first, 10, "the drawing once the keys pause")
        assert time.monotonic() - app.last_input >= LossChart.QUIET_AFTER_INPUT_S


async def test_a_postponed_drawing_is_made_when_shown_not_while_hidden(drawn_on: list[str]):
    # Drawn while hidden, it would have the hidden size, and showing it would then draw it again on the
    # UI thread (what rapid pane switches did).
    app = ChartApp()
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one(LossChart)
        await pilot.pause()
        app.last_input = time.monotonic()
        chart.add_loss(1, 2.0)
        chart.replot()
        await pilot.pause(0.05)
        chart.display = False  # the user switched to another pane
        await pilot.pause(LossChart.QUIET_AFTER_INPUT_S + 0.2)
        assert drawn_on == [threading.main_thread().name], "nothing drawn while hidden"
        chart.display = True
        await wait_for(pilot, lambda: chart.drawing is not None and chart.drawing.version == chart._version, 10,
                       "the drawing once shown")
        assert drawn_on[1:] and threading.main_thread().name not in drawn_on[1:], drawn_on
        assert chart.drawing.size == chart.size


# -- the chart's controls and its y axis ---------------------------------------------------------------

def fresh(chart: LossChart) -> bool:
    return chart.drawing is not None and chart.drawing.version == chart._version


async def test_zoom_and_smoothing_keys_change_what_is_drawn(demo_config_path: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    losses = [3.0 / (1 + s / 50) + 0.05 * ((s * 37) % 11 - 5) / 5 for s in range(1, 501)]
    run = RunDir.create(Path("runs"), "five-hundred")
    run.append(TrainStart(t=T0, run=run.name, total_steps=500, run_dir=str(run.path), train_rows=8, effective_batch=1))
    for step, loss in enumerate(losses, start=1):
        run.append(Log(t=T0 + step, run=run.name, step=step, total_steps=500, loss=loss))
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        app.query_one(TrainPane).replay(run.path)
        await pilot.press("3")
        chart = app.query_one(LossChart)
        await wait_for(pilot, lambda: fresh(chart) and chart.drawing.points_per_series > 0, 10, "the run drawn")
        view = chart.drawing.view
        assert view.title == "loss · all steps · smoothing 0.6" and view.x_range is None
        target = 2 * chart.drawing.size.width  # two points per column
        assert target < 500 and len(view.get("raw").xs) == target and view.get("raw").xs[-1] == 500.0

        await pilot.press("plus", "plus")  # all -> last 1000 -> last 200
        await wait_for(pilot, lambda: fresh(chart), 10, "the zoomed drawing")
        view = chart.drawing.view
        assert view.title.startswith("loss · last 200 steps") and view.x_range == (301.0, 500.0)
        window = [float(s) for s in range(301, 501)]
        assert (view.get("raw").xs, view.get("raw").ys) == downsample(window, losses[300:], target)
        # smoothed over the whole run, then cut: the curve goes on from step 300's average, not afresh
        assert view.get("smoothed").ys == downsample(window, smooth(losses, 0.6)[300:], target)[1]
        assert "last 200 steps" in chart.drawing.text.plain, "the title on the chart says so"

        await pilot.press("plus", "plus")  # to 50, then nothing narrower
        await wait_for(pilot, lambda: fresh(chart), 10, "the narrowest drawing")
        assert chart.drawing.view.get("raw").xs == [float(s) for s in range(451, 501)], "50 points: all drawn"
        assert chart.drawing.view.get("raw").ys == losses[450:]
        await pilot.press("minus", "minus", "minus", "minus")
        await wait_for(pilot, lambda: fresh(chart), 10, "all steps again")
        assert chart.drawing.view.x_range is None and len(chart.drawing.view.get("raw").xs) == target

        await pilot.press("s")  # 0.6 -> 0.9
        await wait_for(pilot, lambda: fresh(chart), 10, "smoother")
        view = chart.drawing.view
        assert "smoothing 0.9" in view.title
        assert view.get("smoothed").ys == downsample([float(s) for s in range(1, 501)], smooth(losses, 0.9), target)[1]
        await pilot.press("s")  # -> off: the raw curve alone, in the active run's colour
        await wait_for(pilot, lambda: fresh(chart), 10, "unsmoothed")
        view = chart.drawing.view
        assert "smoothing off" in view.title and view.labels == ("raw",) and view.get("raw").color == "cyan"
        await pilot.press("s")
        await wait_for(pilot, lambda: fresh(chart), 10, "back to 0.6")
        assert chart.drawing.view.labels == ("raw", "smoothed")


def test_a_loss_that_barely_moves_is_drawn_flat():
    # 2.000 +- 0.002: autoscaled, this noise would fill the chart's height
    flat = [2.0 + 0.002 * ((s * 37) % 11 - 5) / 5 for s in range(1, 201)]
    view = chart_view(ChartData(1, [float(s) for s in range(1, 201)], flat, [], []), 100)
    lo, hi = view.y_range
    assert hi - lo >= 0.05 * 2.002 - 1e-9, "at least 5% of the loss's size"
    assert lo < min(flat) and hi > max(flat) and abs((lo + hi) / 2 - (min(flat) + max(flat)) / 2) < 1e-9
    # a real descent keeps its own range: the data's
    falling = [7.6 - 0.01 * s for s in range(200)]
    view = chart_view(ChartData(1, [float(s) for s in range(200)], falling, [], []), 100)
    assert view.y_range == (min(falling), max(falling))


def test_honest_range_stays_at_or_above_zero():
    assert honest_range(0.0, 0.0) == (0.0, 1e-6), "an all-zero loss: a small range from zero, not below it"
    lo, hi = honest_range(0.01, 0.0101)  # a small loss that barely moves: relative, like any other
    assert lo >= 0 and hi - lo >= 0.0101 * 0.05 - 1e-12
    assert honest_range(0.04, 0.05) == (0.04, 0.05), "0.05 -> 0.04 is a 20% move: drawn as it is"
