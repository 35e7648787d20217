"""The Eval pane against the real engine on the tiny model: a run trained a few steps, an eval of four
held-out rows started from the pane, its progress streamed, and the eval it wrote opened with its scores."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tests import warm
from tests.ui.conftest import FakeNvml, wait_for
from workbench.protocol import EvalProgress
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.eval_pane import EvalPane

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]


async def test_an_eval_made_by_the_engine_is_followed_and_opened(demo_config_path: Path, tmp_path: Path):
    run_dir = tmp_path / "runs" / "judged"
    trained = warm.run("train", "--config", str(demo_config_path), "--run-dir", str(run_dir), "--max-steps", "4")
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    app = WorkbenchApp(config_path=demo_config_path, attach=str(run_dir), gpu_module=FakeNvml(),
                       engine_factory=warm.engine_client)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 180, "engine")
        await pilot.press("6")
        pane = app.query_one(EvalPane)
        seen: list[EvalProgress] = []
        follow = pane._progress

        def progress(event):  # what the pane was sent, as well as what it showed
            if isinstance(event, EvalProgress):
                seen.append(event)
            follow(event)

        pane._progress = progress  # type: ignore[method-assign]
        pane.query_one("#eval-rows", Input).value = "4"
        await pilot.press("e")
        status = lambda: str(pane.query_one("#eval-status", Static).render())  # noqa: E731
        await wait_for(pilot, lambda: pane.loaded is not None and len(pane.loaded.records) == 4, 300,
                       lambda: f"the eval; status: {status()}")
        assert seen and seen[-1].done == 4 and seen[-1].total == 4
        assert "Finished: 4/4 rows" in status()
        assert set(pane.loaded.report.models) == {"tuned", "base"}
        assert len(pane.rows_shown()) == len(pane.loaded.report.rows) > 0
        assert pane.loaded.folder.parent == (run_dir / "evals").absolute()
