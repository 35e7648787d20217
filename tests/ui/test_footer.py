"""The key bar follows the focused pane's keys by redrawing one line: no widgets are built or removed on a
pane switch (Textual's Footer rebuilt one widget per key, and leaked a watcher for each: issue #6666).
Clicking a key presses it."""

from __future__ import annotations

from pathlib import Path

from tests.ui.conftest import wait_for
from workbench.ui.app import WorkbenchApp
from workbench.ui.widgets.key_bar import KeyBar

# A key only the footer of each pane shows (the pane's own bindings, reached through the focus).
PANE_KEY = {"config": "Save config", "data": "Next row", "train": "Start", "chat": "Send", "save": "Refresh runs"}


def shown(app: WorkbenchApp) -> list[str]:
    return [key.description for key in app.query_one(KeyBar).keys]


def line(app: WorkbenchApp) -> str:
    return app.query_one(KeyBar).render_line(0).text


async def test_pane_switches_redraw_the_keys_without_building_widgets(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        bar = app.query_one(KeyBar)
        await wait_for(pilot, lambda: PANE_KEY["config"] in shown(app), 10, "the config pane's keys")
        widgets_before = len(list(app.screen.walk_children()))
        panes = list(PANE_KEY)
        for i in range(25):
            pane = panes[(i + 1) % len(panes)]
            app.action_pane(pane)
            for _ in range(500):  # short polls: 25 switches must not cost 25 × wait_for's 0.1 s
                if PANE_KEY[pane] in shown(app):
                    break
                await pilot.pause(0.01)
            await pilot.pause()
            assert PANE_KEY[pane] in shown(app), f"{pane}'s keys, but the footer shows {shown(app)}"
            assert f" {PANE_KEY[pane]} " in line(app), "what is drawn is what it lists"
        assert len(list(app.screen.walk_children())) == widgets_before
        assert not bar.children
        assert "Start" not in shown(app) and "Quit" in shown(app)
        assert line(app).rstrip().endswith("▏^p palette"), "the command palette's key on the right"


async def test_clicking_a_key_presses_it_and_narrow_keeps_the_palette_key(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: PANE_KEY["config"] in shown(app), 10, "the config pane's keys")
        text = line(app)
        assert len(text) == 80 and text.rstrip().endswith("▏^p palette"), text
        column = text.index(" 2 Data ") + 2
        await pilot.click(KeyBar, offset=(column, 0))
        await wait_for(pilot, lambda: app._tabs().active == "data", 10, "the Data pane, opened by a click")
        await wait_for(pilot, lambda: PANE_KEY["data"] in shown(app), 10, "the data pane's keys")
