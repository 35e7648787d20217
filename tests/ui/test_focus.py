"""Where the keyboard goes when a pane opens: the pane's keys must work at once, whatever its state."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Button

from workbench.ui.app import WorkbenchApp


async def test_back_on_the_train_pane_while_training_x_stops(demo_config_path: Path):
    # Start is disabled while training: the focus used to go nowhere, and t / x / r did nothing.
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        sent: list[str] = []
        app.bridge.send_fn = lambda cmd, args: sent.append(cmd) or f"req-{len(sent)}"
        await pilot.press("3")
        train = app.pane("train")
        train.running = True  # as after the engine's TrainStart
        train._buttons()
        await pilot.press("2", "3")
        await pilot.pause()
        assert isinstance(app.focused, Button) and app.focused.id == "train-stop"
        await pilot.press("x")
        assert sent == ["stop"]
        train.running = False  # the run ended: Start is back, and takes the focus
        train._buttons()
        await pilot.press("2", "3")
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "train-start"
