"""Where the keyboard goes when a pane opens: the pane's keys must work at once, whatever its state."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Button

from tests.ui.conftest import wait_for
from tests.ui.scripted import scripted_app_factory
from workbench import requests as rq
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.train_pane import TrainPane


async def test_back_on_the_train_pane_while_training_x_stops(demo_config_path: Path):
    # Start is disabled while training: the focus used to go nowhere, and t / x / r did nothing.
    factory, engines = scripted_app_factory()
    app = WorkbenchApp(config_path=demo_config_path, engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 10, "the engine's hello")
        await pilot.press("3")
        train = app.query_one(TrainPane)
        train.running = True  # as after the engine's TrainStart
        train._buttons()
        await pilot.press("2", "3")
        await pilot.pause()
        assert isinstance(app.focused, Button) and app.focused.id == "train-stop"
        await pilot.press("x")
        assert len(engines[0].requests(rq.Stop)) == 1
        train.running = False  # the run ended: Start is back, and takes the focus
        train._buttons()
        await pilot.press("2", "3")
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "train-start"
