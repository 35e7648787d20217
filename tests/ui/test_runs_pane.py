"""The Runs list, driven with keys: delete (asked first, cancel keeps the run), rename (the active run
follows), both refused for a live run, and a second run's curve overlaid on the active run's chart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tests.ui import scenarios
from tests.ui.conftest import wait_for
from workbench.config import RunConfig, save_config
from workbench.protocol import Done, Log, TrainStart
from workbench.runs import RunDir
from workbench.ui.app import WorkbenchApp
from workbench.ui.commands import PANE_ACTIONS
from workbench.ui.panes.save_pane import SavePane
from workbench.ui.panes.train_pane import TrainPane
from workbench.ui.widgets.confirm import Confirm
from workbench.ui.widgets.key_bar import KeyBar
from workbench.ui.widgets.loss_chart import LossChart, smooth
from workbench.ui.widgets.runs_list import RenameRun

T0 = scenarios.T0


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An opened run brings its own config, whose runs_dir is the default, relative "runs": the list then
    # reads ./runs, which is the same folder as the demo config's tmp_path/runs only from here.
    monkeypatch.chdir(tmp_path)


def curve_run(runs: Path, name: str, losses: list[float]) -> RunDir:
    run = RunDir.create(runs, name)
    save_config(RunConfig(), run.config_path)
    n = len(losses)
    run.append(TrainStart(t=T0, run=name, total_steps=n, run_dir=str(run.path), train_rows=8, effective_batch=1))
    for step, loss in enumerate(losses, start=1):
        run.append(Log(t=T0 + step, run=name, step=step, total_steps=n, loss=loss))
    run.append(Done(t=T0 + n + 1, run=name, status="completed", step=n, total_steps=n, final_loss=losses[-1],
                    message="Training finished; adapter saved."))
    return run


def message(app: WorkbenchApp) -> str:
    return str(app.query_one("#runs-message", Static).render())


def same(a: str | Path | None, b: str | Path) -> bool:
    return a is not None and Path(a).absolute() == Path(b).absolute()


async def open_runs(pilot, count: int) -> SavePane:
    app: WorkbenchApp = pilot.app
    await app.panes_mounted()
    await pilot.press("5")
    pane = app.query_one(SavePane)
    await wait_for(pilot, lambda: len(pane.runs_shown()) == count, 10, f"{count} runs listed")
    return pane


async def select(pilot, pane: SavePane, name: str) -> None:
    """Put the list's cursor on `name` with the arrow keys (the runs' order is by start time)."""
    await pilot.press("home")
    for _ in range(pane.runs_shown().index(name)):
        await pilot.press("down")
    await pilot.pause()


async def test_delete_asks_first_and_cancel_keeps_the_run(demo_config_path: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    doomed, kept = scenarios.finished_run(runs, "doomed"), scenarios.finished_run(runs, "kept")
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(140, 40)) as pilot:
        pane = await open_runs(pilot, 2)
        assert "Delete" in [k.description for k in app.query_one(KeyBar).keys], "the list's keys are in the key bar"
        await select(pilot, pane, "doomed")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 10, "the question")
        question = app.screen.question
        assert "doomed" in question and str(doomed.path) in question
        assert "150 steps" in question and "1 checkpoint" in question and "final adapter" in question
        await pilot.press("escape")  # cancel
        await wait_for(pilot, lambda: not isinstance(app.screen, Confirm), 10, "the question closed")
        await pilot.pause(0.3)
        assert doomed.path.is_dir() and "Not deleted" in message(app)
        assert sorted(pane.runs_shown()) == ["doomed", "kept"]

        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 10, "the question again")
        await pilot.press("enter")  # Enter answers the focused button: Cancel, the safe one
        await wait_for(pilot, lambda: not isinstance(app.screen, Confirm), 10, "the question closed")
        await pilot.pause(0.3)
        assert doomed.path.is_dir()

        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 10, "the question, a third time")
        await pilot.press("shift+tab", "enter")  # to "Delete doomed", and press it
        await wait_for(pilot, lambda: pane.runs_shown() == ["kept"], 10, "the list without it")
        assert not doomed.path.exists() and kept.path.is_dir()
        assert sorted(p.name for p in runs.iterdir()) == ["kept"], "nothing left aside"
        assert "Deleted doomed" in message(app)


async def test_deleting_the_active_run_lets_go_of_it(demo_config_path: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    run = scenarios.finished_run(runs, "only")
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_runs(pilot, 1)
        await pilot.press("enter")  # open it: the active run
        await wait_for(pilot, lambda: same(app.active_run, run.path), 10, "the active run")
        await pilot.press("5", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 10, "the question")
        await pilot.press("shift+tab", "enter")
        await wait_for(pilot, lambda: app.active_run is None, 10, "no active run")
        assert not run.path.exists()


async def test_rename_checks_the_name_and_the_active_run_follows(demo_config_path: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    run = scenarios.finished_run(runs, "before")
    scenarios.finished_run(runs, "taken")
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(140, 40)) as pilot:
        pane = await open_runs(pilot, 2)
        await select(pilot, pane, "before")
        await pilot.press("enter")  # open it: the active run, its own config
        await wait_for(pilot, lambda: same(app.active_run, run.path), 10, "the active run")
        await pilot.press("5")
        await select(pilot, pane, "before")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RenameRun), 10, "the rename dialog")
        box = app.screen.query_one("#rename-input", Input)
        assert box.value == "before" and box.has_focus
        error = app.screen.query_one("#rename-error", Static)
        await pilot.press("ctrl+a", "ctrl+k", *"taken")
        assert "already exists" in str(error.render())
        await pilot.press("enter")  # refused: the dialog stays
        assert isinstance(app.screen, RenameRun) and (runs / "before").is_dir()
        await pilot.press("ctrl+a", "ctrl+k", *"bad name")
        assert "only letters" in str(error.render())
        await pilot.press("ctrl+a", "ctrl+k", *"after-1")
        assert str(error.render()) == ""
        await pilot.press("enter")
        await wait_for(pilot, lambda: "after-1" in pane.runs_shown(), 10, "the new name listed")
        new = runs / "after-1"
        assert new.is_dir() and not run.path.exists()
        assert same(app.active_run, new), "the active run follows the rename"
        assert same(app.config_path, new / "config.toml"), "and so does the config it was opened with"
        train = app.query_one(TrainPane)
        assert same(train.run_dir, new) and same(pane.run_dir, new)
        assert str(app.query_one("#train-run", Static).render()) == "run: after-1"
        assert "Renamed before to after-1" in message(app)
        assert "after-1" in str(app.query_one("#save-source").render()), "the Save pane saves it under its new name"


async def test_a_live_run_is_not_deleted_or_renamed(demo_config_path: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    run = scenarios.finished_run(runs, "busy")
    run.write_engine_info(os.getpid(), None)  # a live engine trains it: this process
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(140, 40)) as pilot:
        await open_runs(pilot, 1)
        await pilot.press("d")
        await wait_for(pilot, lambda: "is training" in message(app), 10, "the refusal")
        assert f"engine pid {os.getpid()}" in message(app) and "Stop it first" in message(app)
        assert not isinstance(app.screen, Confirm)
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, RenameRun) and "cannot be renamed" in message(app)
        assert run.path.is_dir() and len(run.events()) > 150


async def test_a_second_run_is_overlaid_on_the_chart(demo_config_path: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    mine = curve_run(runs, "mine", [3.0 - 0.01 * s for s in range(100)])
    other_losses = [4.0 - 0.02 * s for s in range(80)]
    other = curve_run(runs, "other", other_losses)
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(160, 45)) as pilot:
        pane = await open_runs(pilot, 2)
        await select(pilot, pane, "mine")
        await pilot.press("c")  # the active run: there is none yet, so "mine" can be compared ...
        await pilot.pause()
        await pilot.press("c")  # ... and c again takes the mark off
        await pilot.pause()
        assert app.compare_run is None
        await pilot.press("enter")  # open "mine": the active run
        await wait_for(pilot, lambda: same(app.active_run, mine.path), 10, "the active run")
        await pilot.press("5")
        await select(pilot, pane, "mine")
        await pilot.press("c")
        assert app.compare_run is None and "is the active run" in message(app), "not compared with itself"
        await select(pilot, pane, "other")
        await pilot.press("c")
        await wait_for(pilot, lambda: same(app.compare_run, other.path), 10, "the compared run")
        table = app.query_one("#runs-table")
        marks = {str(table.get_row_at(i)[1]): str(table.get_row_at(i)[0]) for i in range(table.row_count)}
        assert marks == {"mine": "● this", "other": "◆ vs"}

        await pilot.press("3")
        chart = app.query_one(LossChart)
        await wait_for(pilot, lambda: chart.drawing is not None and chart.drawing.view.get("vs other") is not None
                       and chart.drawing.version == chart._version, 10, "the overlay drawn")
        view = chart.drawing.view
        assert view.labels == ("raw", "smoothed", "vs other"), "the active run's curves and the other's"
        assert view.get("vs other").ys == smooth(other_losses, 0.6), "its smoothed losses, read from its events"
        assert view.get("vs other").xs == [float(s) for s in range(1, 81)]
        assert view.get("smoothed").ys == smooth([3.0 - 0.01 * s for s in range(100)], 0.6)
        assert view.get("vs other").color != view.get("smoothed").color
        assert "vs other" in view.title and "vs other" in chart.drawing.text.plain, "labelled on the chart"
        assert view.y_range is not None and view.y_range[1] >= 4.0, "the axis takes in both curves"

        await pilot.press("5")
        await select(pilot, pane, "other")
        await pilot.press("c")  # again: no overlay
        await pilot.press("3")
        await wait_for(pilot, lambda: chart.drawing is not None and chart.drawing.version == chart._version
                       and chart.drawing.view.get("vs other") is None, 10, "the overlay gone")
        assert app.compare_run is None


async def test_the_palette_actions_exist(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)):
        await app.panes_mounted()
        for _title, pane, action, _help in PANE_ACTIONS:
            assert callable(getattr(app.pane(pane), f"action_{action}", None)), (pane, action)
