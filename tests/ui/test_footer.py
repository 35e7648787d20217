"""The footer keeps up with the focused pane without leaking a watcher per key (Textual issue #6666)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from tests.ui.conftest import wait_for
from workbench.ui.app import WorkbenchApp
from workbench.ui.widgets.footer import WorkbenchFooter

# A key only the footer of each pane shows (the pane's own bindings, reached through the focus).
PANE_KEY = {"config": "Save config", "data": "Next row", "train": "Start", "chat": "Send", "save": "Refresh runs"}


def shown(app: WorkbenchApp) -> list[str]:
    return [key.description for key in app.query_one(WorkbenchFooter).query(FooterKey)]


async def test_pane_switches_do_not_grow_the_footer(demo_config_path: Path, monkeypatch: pytest.MonkeyPatch):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        footer = app.query_one(WorkbenchFooter)
        await wait_for(pilot, lambda: PANE_KEY["config"] in shown(app), 10, "the config pane's keys")
        recomposes = 0

        async def counted(self: Widget) -> None:
            nonlocal recomposes
            recomposes += 1
            await Widget.recompose(self)

        monkeypatch.setattr(Footer, "recompose", counted)  # what WorkbenchFooter calls when it does rebuild
        panes = list(PANE_KEY)
        for i in range(100):
            pane = panes[(i + 1) % len(panes)]
            app.action_pane(pane)
            for _ in range(500):  # short polls: 100 switches must not cost 100 × wait_for's 0.1 s
                if PANE_KEY[pane] in shown(app):
                    break
                await pilot.pause(0.01)
            assert PANE_KEY[pane] in shown(app), f"{pane}'s keys, but the footer shows {shown(app)}"
        await pilot.pause()
        assert recomposes >= 100, "every switch changed the keys, so every switch rebuilt the footer"
        assert footer.watcher_count < 50, f"{footer.watcher_count} compact watchers for {len(shown(app))} keys"
        assert "Start" not in shown(app) and "Quit" in shown(app)
        # focus moves inside a pane leave the keys alone: no rebuild at all
        before = list(footer.query(FooterKey))
        app.screen.refresh_bindings()
        await pilot.pause()
        assert list(footer.query(FooterKey)) == before
