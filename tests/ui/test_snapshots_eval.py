"""Snapshots of the Eval pane and its row view, with Devanagari, at 160x45 and at 80x24 (deterministic as
test_snapshots.py's: the scripted engine, a real eval folder written with fixed answers and times, the
bootstrap seeded). Each state is reached with keys. Update with `--snapshot-update` after an intended
change, and look at the SVGs before committing them."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Select

from tests.ui import scenarios
from tests.ui.conftest import FakeNvml, wait_for
from tests.ui.scripted import scripted_app_factory
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.eval_pane import EvalPane
from workbench.ui.widgets.eval_row import RowView

RUN = "tiny-gemma2-20261128-101500"
OTHER = "tiny-gemma2-lr-2e-3"


@pytest.fixture
def eval_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # the status bar and the run paths are then the same on every machine
    run = scenarios.finished_run(Path("runs"), RUN)
    scenarios.write_eval(run.path, rows=24)
    other = scenarios.finished_run(Path("runs"), OTHER)
    # the other run's tuned model gave the first half of each reference
    scenarios.write_eval(other.path, rows=24, base=False,
                         answers=lambda row, conversation, ref: (" ".join(ref.split()[: len(ref.split()) // 2]), ""))

    def make() -> WorkbenchApp:
        factory, _engines = scripted_app_factory()
        return WorkbenchApp(config_path="unused.toml", attach=str(run.path), engine_factory=factory,
                            gpu_module=FakeNvml())
    return make


async def _open(pilot, *keys: str) -> EvalPane:
    app: WorkbenchApp = pilot.app
    await app.panes_mounted()
    await wait_for(pilot, lambda: app.engine_ready, 10, "the engine's hello")
    await pilot.press("6")
    pane = app.query_one(EvalPane)
    await wait_for(pilot, lambda: pane.loaded is not None, 20, "the eval")
    await pilot.press(*keys)
    await pilot.pause()
    return pane


def test_eval_pane_160x45_sorted_by_the_gap(snap_compare, eval_app):
    async def before(pilot):
        await _open(pilot, "g")  # biggest gain first; the top row's texts beside the scores
    assert snap_compare(eval_app(), terminal_size=(160, 45), run_before=before)


def test_eval_pane_80x24(snap_compare, eval_app):
    async def before(pilot):
        await _open(pilot, "down")  # row 2: its tuned summary on one line, cut with …
    assert snap_compare(eval_app(), terminal_size=(80, 24), run_before=before)


def test_eval_pane_80x24_compared_with_another_run(snap_compare, eval_app):
    async def before(pilot):
        pane = await _open(pilot)
        folder = (Path("runs") / OTHER / "evals" / "final-adapter-24rows").absolute()
        pilot.app.query_one("#eval-against", Select).value = str(folder)
        await wait_for(pilot, lambda: pane.other is not None, 10, "the other run's eval")
        await pilot.press("g")
        await pilot.pause()
    assert snap_compare(eval_app(), terminal_size=(80, 24), run_before=before)


def test_eval_row_view_160x45(snap_compare, eval_app):
    async def before(pilot):
        await _open(pilot, "down", "down", "down", "down", "enter")  # row 5: English in the base model's answer
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RowView), 5, "the row view")
        await pilot.pause()
    assert snap_compare(eval_app(), terminal_size=(160, 45), run_before=before)


def test_eval_row_view_80x24(snap_compare, eval_app):
    async def before(pilot):
        await _open(pilot, "down", "enter")  # row 2: the base model said nothing
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RowView), 5, "the row view")
        await pilot.pause()
    assert snap_compare(eval_app(), terminal_size=(80, 24), run_before=before)
