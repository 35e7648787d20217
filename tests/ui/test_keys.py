"""Keys as terminals send them: esc then a digit at once (tmux, a slow SSH link) arrives as alt+digit."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from tests.ui.conftest import wait_for
from tests.ui.scripted import scripted_app_factory
from workbench import requests as rq
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.train_pane import TrainPane


async def test_esc_and_a_digit_sent_together_switch_panes_from_a_text_box(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        box = app.query_one("#f-lora-r", Input)
        box.focus()
        await pilot.pause()  # the focus lands before the keys (else it would pull the Config tab back)
        assert app.focused is box
        before = box.value
        await pilot.press("alt+3")
        # one pause was not always enough with the suite's workers busy on every core
        await wait_for(pilot, lambda: app.query_one("#panes").active == "train", 10, "the Train pane")
        assert box.value == before, "nothing typed into the box"


async def test_quitting_while_training_says_how_to_reattach(demo_config_path: Path):
    factory, engines = scripted_app_factory()
    app = WorkbenchApp(config_path=demo_config_path, engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 10, "engine")
        await pilot.press("3", "t")
        await wait_for(pilot, lambda: app.query_one(TrainPane).running and app.active_run is not None, 10, "training")
        assert engines[0].requests(rq.Train)
        await pilot.press("ctrl+q")
    assert "workbench attach scripted-run" in app.exit_note and "pid 4242" in app.exit_note
