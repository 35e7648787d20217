"""Snapshot tests of every pane (pytest-textual-snapshot), deterministic: no engine, no clocks, no cursor
in a text box; data rendered by the real tokenizer. Update with `pytest tests/ui/test_snapshots.py
--snapshot-update` after an intended change, and look at the SVGs before committing them."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.containers import Horizontal
from textual.widgets import Static, Switch

from tests.ui import scenarios
from tests.ui.conftest import FakeNvml, wait_for
from workbench.config import load_config, save_config
from workbench.gpu import sample_gpus
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.chat_pane import Reply
from workbench.ui.widgets.gpu_panel import HISTORY, GpuGauge, GpuPanel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def snap_app(tmp_path: Path):
    config = load_config(ROOT / "configs" / "demo.toml")
    config.output.runs_dir = str(tmp_path / "runs")
    path = tmp_path / "configs" / "demo.toml"
    save_config(config, path)

    def make() -> WorkbenchApp:
        app = WorkbenchApp(config_path=path, start_engine=False, gpu_module=FakeNvml())
        app.config_path = Path("configs/demo.toml")  # the status bar shows a stable path
        return app
    return make


async def _ready(app: WorkbenchApp, pilot) -> None:
    await app.panes_mounted()
    app.device = "cpu"
    app.set_engine_state("ready")
    await pilot.pause()


async def _open(pilot, name: str):
    """The app ready, on pane `name`; returns that pane."""
    app = pilot.app
    await _ready(app, pilot)
    app.action_pane(name)
    await pilot.pause()
    return app.pane(name)


def test_config_pane(snap_compare, snap_app):
    async def before(pilot):
        await _ready(pilot.app, pilot)
    assert snap_compare(snap_app(), terminal_size=(120, 40), run_before=before)


def test_config_pane_80x24_with_an_error(snap_compare, snap_app):
    async def before(pilot):
        await _ready(pilot.app, pilot)
        pilot.app.query_one("#f-model-max_seq_length").value = "8"
        await pilot.pause()
        pilot.app.query_one("#config-form").focus()
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(80, 24), run_before=before)


def test_data_pane_devanagari(snap_compare, snap_app):
    async def before(pilot):
        app = pilot.app
        pane = await _open(pilot, "data")
        pane._on_preview(scenarios.preview_result(app.config, 3))
        pane._on_stats(scenarios.stats_result(app.config))
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(160, 45), run_before=before)


def test_train_pane(snap_compare, snap_app, tmp_path):
    async def before(pilot):
        pane = await _open(pilot, "train")
        for event in scenarios.training_events(str(tmp_path / "runs" / "demo")):
            pane.handle_event(event)
        await pilot.pause(1.5)  # GPU samples (fake NVML, 1 Hz) and a chart redraw
        # How many 1 Hz samples landed is a matter of timing: stop the poller and show exactly one.
        pane._gpu_stop.set()
        await pilot.pause(0.2)
        for gauge in pane.query(GpuGauge):
            gauge.util_history.extend([0.0] * HISTORY)
            gauge.mem_history.extend([0.0] * HISTORY)
        pane.query_one(GpuPanel).show(*sample_gpus(FakeNvml()))
        pane.query_one("#loss-chart").draw_now()  # drawn here, not in its thread: the snapshot must have it
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(160, 45), run_before=before)


def test_chat_pane_side_by_side(snap_compare, snap_app):
    async def before(pilot):
        pane = await _open(pilot, "chat")
        pane.query_one("#chat-compare", Switch).value = True
        transcript = pane.query_one("#chat-transcript")
        await transcript.mount(Static("you\nसीमा: कल सुबह 10 बजे डॉक्टर के पास चलना है।\nराकेश: ठीक है, मैं गाड़ी ले आऊँगा।",
                                      classes="chat-user"))
        row = Horizontal(classes="chat-replies")
        await transcript.mount(row)
        tuned = Reply("tuned model", classes="chat-reply tuned")
        base = Reply("base model (adapter off)", classes="chat-reply base")
        await row.mount(tuned, base)
        tuned.append("सीमा और राकेश कल सुबह 10 बजे गाड़ी से डॉक्टर के पास जाएँगे।")
        base.append("ठीक है ठीक है कल कल सुबह")
        pane.query_one("#chat-status").update("tuned: 21 tokens, first token 41 ms, 347 tok/s")
        pane.query_one("#chat-transcript").focus()
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(140, 40), run_before=before)


def test_save_and_runs_pane(snap_compare, snap_app, tmp_path):
    async def before(pilot):
        app = pilot.app
        scenarios.finished_run(Path(app.config.output.runs_dir))
        pane = await _open(pilot, "save")
        await wait_for(pilot, lambda: pane.runs_shown(), 10, "the runs list")
        app.query_one("#save-path").value = "runs/tiny-gemma2-20261128-101500/export-lora"
        app.query_one("#runs-table").focus()
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(140, 36), run_before=before)


def test_help_screen(snap_compare, snap_app):
    async def before(pilot):
        await _ready(pilot.app, pilot)
        await pilot.press("f1")
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(120, 40), run_before=before)
