"""The whole job in the TUI against the real engine on the tiny model: open the demo, view a rendered
row, start training, watch loss points arrive, stop, chat with streamed text, save and find the adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static, TextArea

from tests import warm
from tests.ui.conftest import FakeNvml, wait_for
from workbench.config import load_config, save_config
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.chat_pane import ChatPane, Reply
from workbench.ui.panes.data_pane import DataPane
from workbench.ui.panes.save_pane import SavePane
from workbench.ui.panes.train_pane import TrainPane
from workbench.ui.widgets.loss_chart import LossChart

pytestmark = pytest.mark.engine


def static_text(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def test_demo_end_to_end(demo_config_path: Path, tmp_path: Path):
    config = load_config(demo_config_path)
    config.training.max_steps = 5000
    config.training.save_steps = 10000
    save_config(config, demo_config_path)
    app = WorkbenchApp(config_path=demo_config_path, gpu_module=FakeNvml(), engine_factory=warm.engine_client)
    async with app.run_test(size=(160, 50)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 180, "engine ready")
        await pilot.press("2")
        await wait_for(pilot, lambda: "<bos>" in static_text(app, "#data-sample"), 60, "rendered row")
        assert "### सारांश:" in static_text(app, "#data-sample")
        assert "tokens / max 1024" in static_text(app, "#data-counts")
        await wait_for(pilot, lambda: app.query_one(DataPane).stats is not None, 60, "statistics")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.query_one(DataPane).position == 1, 30, "next row")

        await pilot.press("3")
        await wait_for(pilot, lambda: "H100" in static_text(app, "#gpu-0 #gpu-title"), 10, "GPU gauge")
        await pilot.click("#train-start")
        chart = app.query_one(LossChart)
        await wait_for(pilot, lambda: len(chart.steps) >= 5, 180, "loss points")
        assert "loss" in static_text(app, "#train-metrics")
        await pilot.click("#train-stop")
        train = app.query_one(TrainPane)
        await wait_for(pilot, lambda: train.last_done is not None, 120, "stopped")
        assert train.last_done.status == "stopped"
        assert not app.query_one("#train-resume").disabled

        await pilot.press("4")
        chat = app.query_one(ChatPane)
        chat.query_one("#chat-input", TextArea).text = "राम: कल बाज़ार चलें?\nसीता: हाँ, सुबह 10 बजे।"
        await pilot.click("#chat-send")
        await wait_for(pilot, lambda: chat._request is None and bool(chat.query(Reply)), 180,
                       lambda: f"chat reply; status: {static_text(app, '#chat-status')}")
        replies = list(chat.query(Reply))
        assert replies and replies[0].text, "streamed text arrived"
        assert "tokens" in static_text(app, "#chat-status")

        await pilot.press("5")
        target = tmp_path / "saved-adapter"
        app.query_one(SavePane).query_one("#save-path", Input).value = str(target)
        await pilot.click("#save-button")
        await wait_for(pilot, lambda: (target / "adapter_model.safetensors").exists(), 120, "adapter on disk")
        await wait_for(pilot, lambda: "Saved" in static_text(app, "#save-message"), 30, "save message")
        assert (target / "chat_template.jinja").exists()
        runs = app.query_one(SavePane)
        listed = runs.runs_listed
        runs.action_refresh_runs()
        await wait_for(pilot, lambda: runs.runs_listed > listed, 30, "the runs list read")
        assert runs.runs_shown(), "the run is listed"
