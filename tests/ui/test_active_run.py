"""The active run: attaching to a run or opening one from Runs makes its own config current (not the
default 9B one), chat and save follow it, and the Save pane's target never stays on the previous run."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static, TextArea

from tests.ui import scenarios
from tests.ui.conftest import wait_for
from tests.ui.scripted import scripted_app_factory
from workbench import requests as rq
from workbench.config import load_config, save_config
from workbench.runs import RunDir
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.save_pane import SavePane

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_run(name: str, model: str = "builtin:tiny-gemma2", lr: float = 0.003) -> RunDir:
    run = scenarios.finished_run(Path("runs"), name)
    config = load_config(run.config_path)
    config.model.name = model
    config.training.learning_rate = lr
    save_config(config, run.config_path)
    return run


def the_9b_default(path: Path) -> Path:
    save_config(load_config(ROOT / "configs" / "gemma2-9b-hindi.toml"), path)
    return path


async def test_attach_uses_the_runs_own_config_for_chat_and_start(here: Path):
    run = make_run("demo-run")
    factory, engines = scripted_app_factory()
    # as `workbench attach demo-run` starts it: the CLI's default config is the 9B recipe
    app = WorkbenchApp(config_path=the_9b_default(here / "default.toml"), attach=str(run.path), engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 10, "engine")
        assert app.config.model.name == "builtin:tiny-gemma2", "the run's config, not the default 9B"
        assert app.config_path == run.config_path and app.active_run == str(run.path)
        assert "demo-run/config.toml" in str(app.query_one("#status-bar", Static).render())
        await pilot.press("4")
        app.query_one("#chat-input", TextArea).text = "राम: नमस्ते"
        await pilot.press("ctrl+g")
        await pilot.pause()
        sent = engines[0].requests(rq.Generate)
        assert sent and sent[-1].run_dir == str(run.path), "chat uses the run's weights"
        await pilot.press("escape", "3", "t")
        await pilot.pause()
        trained = engines[0].requests(rq.Train)
        assert trained and trained[-1].config.model.name == "builtin:tiny-gemma2", "Start trains the run's model"


@pytest.mark.parametrize("socket", ["/tmp/engine-live.sock", None])
async def test_attach_joins_the_engine_of_a_live_run_or_says_it_trains_in_a_terminal(here: Path, socket):
    """A live run names its engine's socket in engine.json (a run on ranks too: rank 0 names the engine that
    started them); one trained by `workbench train` in a terminal has none: a fresh engine, and a notice."""
    import os

    run = make_run("live-run")
    run.write_engine_info(os.getpid(), socket)  # this test's process: alive
    factory, engines = scripted_app_factory()
    app = WorkbenchApp(config_path=the_9b_default(here / "default.toml"), attach=str(run.path), engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 10, "engine")
        assert engines[0].connected_to == socket
        notices = [n.message for n in app._notifications]
        said = any("is training in a terminal" in m and f"pid {os.getpid()}" in m for m in notices)
        assert said == (socket is None), notices


async def test_opening_a_run_from_runs_makes_it_current_and_the_save_target_follows(here: Path):
    first, second = make_run("run-a", lr=0.001), make_run("run-b", lr=0.002)
    factory, _engines = scripted_app_factory()
    app = WorkbenchApp(config_path=the_9b_default(here / "default.toml"), engine_factory=factory)
    async with app.run_test(size=(140, 40)) as pilot:
        await app.panes_mounted()
        await pilot.press("5")
        save = app.query_one(SavePane)
        await wait_for(pilot, lambda: len(save.runs_shown()) == 2, 10, "two runs listed")
        for run in (first, second):
            table = app.query_one("#runs-table")
            table.focus()
            table.move_cursor(row=save.runs_shown().index(run.name))
            await pilot.press("enter")
            await wait_for(pilot, lambda r=run: app.active_run == str(r.path), 10, f"{run.name} opened")
            assert app.config.training.learning_rate == load_config(run.config_path).training.learning_rate
            await pilot.press("5")
            await pilot.pause()
            target = app.query_one("#save-path", Input).value
            assert target == str(run.path / "export-lora"), "the target is inside the run being saved"


async def test_opening_a_run_over_unsaved_edits_asks_first(here: Path):
    run = make_run("run-a")
    factory, _engines = scripted_app_factory()
    app = WorkbenchApp(config_path=the_9b_default(here / "default.toml"), engine_factory=factory)
    async with app.run_test(size=(140, 40)) as pilot:
        await app.panes_mounted()
        app.query_one("#f-lora-r", Input).value = "32"
        await pilot.pause()
        assert app.dirty
        await pilot.press("5")
        save = app.query_one(SavePane)
        await wait_for(pilot, lambda: save.runs_shown(), 10, "runs listed")
        app.query_one("#runs-table").focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.query("#confirm-text"), "a question first"
        await pilot.press("enter")  # the focused answer is Cancel
        await pilot.pause()
        assert app.config.lora.r == 32 and app.active_run is None, "cancel keeps the edits"
        app.query_one("#runs-table").focus()
        await pilot.press("enter")
        await pilot.pause()
        await pilot.click("#confirm-yes")
        await wait_for(pilot, lambda: app.active_run == str(run.path), 10, "opened")
        assert app.config.lora.r == 16 and not app.dirty


async def test_a_runs_record_is_not_overwritten_by_save(here: Path):
    run = make_run("run-a")
    before = run.config_path.read_bytes()
    app = WorkbenchApp(config_path=run.config_path, attach=str(run.path), start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        app.query_one("#f-lora-r", Input).value = "32"
        await pilot.pause()
        app.query_one("#config-form").focus()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "run's record" in str(app.query_one("#config-message", Static).render())
        assert run.config_path.read_bytes() == before


async def test_without_a_run_the_save_pane_says_what_to_do(here: Path):
    app = WorkbenchApp(config_path=the_9b_default(here / "default.toml"), start_engine=False)
    async with app.run_test(size=(140, 40)) as pilot:
        await app.panes_mounted()
        await pilot.press("5")
        await pilot.pause()
        assert "No run yet" in str(app.query_one("#save-source", Static).render())
