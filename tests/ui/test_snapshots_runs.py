"""Snapshots of the Train pane's chart controls, the overlay of a second run and the log search, reached
with keys (deterministic as test_snapshots.py's: scripted engine, fake NVML, the chart drawn in place)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.ui import scenarios
from tests.ui.conftest import FakeNvml, wait_for
from tests.ui.test_snapshots import _ready, snap_app  # noqa: F401  (snap_app is a fixture)
from workbench.config import RunConfig, save_config
from workbench.gpu import sample_gpus
from workbench.protocol import Done, Log, TrainStart
from workbench.runs import RunDir
from workbench.ui.panes.save_pane import SavePane
from workbench.ui.panes.train_pane import TrainPane
from workbench.ui.widgets.gpu_panel import HISTORY, GpuGauge, GpuPanel
from workbench.ui.widgets.loss_chart import LossChart

T0 = scenarios.T0


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # The replay's last log line says when it was read ("replayed 152 events ... at HH:MM:SS").
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "12:00:00")


def curve_run(runs: Path, name: str, losses: list[float]) -> RunDir:
    run = RunDir.create(runs, name)
    config = RunConfig()
    config.model.name = "builtin:tiny-gemma2"
    save_config(config, run.config_path)
    n = len(losses)
    run.append(TrainStart(t=T0, run=name, total_steps=n, run_dir=str(run.path), train_rows=194, effective_batch=4))
    for step, loss in enumerate(losses, start=1):
        run.append(Log(t=T0 + step, run=name, step=step, total_steps=n, loss=loss))
    run.append(Done(t=T0 + n + 1, run=name, status="completed", step=n, total_steps=n, final_loss=losses[-1],
                    message="Training finished; adapter saved."))
    return run


async def _settle(pilot) -> None:
    """One GPU sample, no poller, the chart drawn here (not in its thread): the same frame every time."""
    app = pilot.app
    pane = app.query_one(TrainPane)
    pane._gpu_stop.set()
    await pilot.pause(0.2)
    for gauge in pane.query(GpuGauge):
        gauge.util_history.extend([0.0] * HISTORY)
        gauge.mem_history.extend([0.0] * HISTORY)
    pane.query_one(GpuPanel).show(*sample_gpus(FakeNvml()))
    app.query_one(LossChart).draw_now()
    await pilot.pause()


def test_train_pane_comparing_two_runs_and_searching_the_log(snap_compare, snap_app):  # noqa: F811
    async def before(pilot):
        runs = Path("runs")
        scenarios.finished_run(runs)
        # a run with half the learning rate: slower down the same slope, and noisier
        curve_run(runs, "half-lr", [7.6 - 1.2 * (1 - 0.985**s) + 0.06 * ((s * 53) % 13 - 6) / 6 for s in range(1, 151)])
        app = await _ready(pilot)
        await pilot.press("5")
        pane = app.query_one(SavePane)
        await wait_for(pilot, lambda: len(pane.runs_shown()) == 2, 10, "the runs list")
        await pilot.press("home")
        for _ in range(pane.runs_shown().index("tiny-gemma2-20261128-101500")):
            await pilot.press("down")
        await pilot.press("enter")  # open it: the active run
        train = app.query_one(TrainPane)
        await wait_for(pilot, lambda: train.last_done is not None, 10, "its history")
        await pilot.press("5", "home")
        for _ in range(pane.runs_shown().index("half-lr")):
            await pilot.press("down")
        await pilot.press("c", "3", "s", "plus", "plus")  # compare; smoothing 0.9; last 200 steps
        chart = app.query_one(LossChart)
        await wait_for(pilot, lambda: chart.overlay is not None, 10, "the other run's curve")
        await pilot.press("slash", *"eval at", "enter", "N")
        await _settle(pilot)
    assert snap_compare(snap_app(), terminal_size=(160, 45), run_before=before)


def test_a_loss_that_does_not_move_is_drawn_flat(snap_compare, snap_app):  # noqa: F811
    async def before(pilot):
        # a learning rate of zero: 2.3026 give or take a few thousandths, the whole run
        curve_run(Path("runs"), "lr-zero", [2.3026 + 0.003 * ((s * 37) % 11 - 5) / 5 for s in range(1, 151)])
        app = await _ready(pilot)
        await pilot.press("5")
        pane = app.query_one(SavePane)
        await wait_for(pilot, lambda: pane.runs_shown() == ["lr-zero"], 10, "the runs list")
        await pilot.press("enter")
        train = app.query_one(TrainPane)
        await wait_for(pilot, lambda: train.last_done is not None, 10, "its history")
        await _settle(pilot)
    assert snap_compare(snap_app(), terminal_size=(160, 45), run_before=before)
