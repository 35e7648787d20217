"""Pilot tests per pane against the real engine (one engine per test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tests import warm
from tests.ui.conftest import FakeNvml, wait_for
from workbench.config import load_config
from workbench.ui.app import WorkbenchApp
from workbench.ui.messages import ConfigEdited
from workbench.ui.panes.config_pane import ConfigPane
from workbench.ui.panes.data_pane import DataPane

pytestmark = pytest.mark.engine


def text_of(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def test_config_validates_as_typed_and_saves(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        box = app.query_one("#f-lora-r", Input)
        box.value = "0"
        await pilot.pause()
        assert "lora.r" in text_of(app, "#err-lora-r")
        assert app.invalid_fields == ("lora.r",)
        pane = app.query_one(ConfigPane)
        pane.action_save()
        await pilot.pause()
        assert "Not saved" in text_of(app, "#config-message")
        box.value = "32"
        await pilot.pause()
        assert text_of(app, "#err-lora-r") == ""
        assert app.config.lora.r == 32 and app.dirty
        assert "unsaved" in text_of(app, "#status-bar")
        pane.action_save()
        await pilot.pause()
        assert load_config(demo_config_path).lora.r == 32
        assert not app.dirty


async def test_data_pane_changes_follow_the_config(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, gpu_module=FakeNvml(), engine_factory=warm.engine_client)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 180, "engine")
        await pilot.press("2")
        await wait_for(pilot, lambda: "### सारांश:" in text_of(app, "#data-sample"), 60, "instruction template")
        # switching the template in the Config pane re-renders the Data pane
        await pilot.press("1")
        from workbench.config import set_field

        app.post_message(ConfigEdited(set_field(app.config, "data", "template", "gemma_chat"), data_affecting=True))
        await wait_for(pilot, lambda: "<start_of_turn>" in text_of(app, "#data-sample"), 60, "gemma template")
        # a tiny max_seq_length shows truncation
        app.post_message(ConfigEdited(set_field(app.config, "model", "max_seq_length", 40), data_affecting=True))
        await wait_for(pilot, lambda: "truncation cuts" in text_of(app, "#data-counts"), 60, "truncation")
        await wait_for(pilot, lambda: app.query_one(DataPane).stats is not None
                       and app.query_one(DataPane).stats.max_seq_length == 40, 60, "stats at 40")
        assert app.query_one(DataPane).stats.over_limit_rows


async def test_bad_data_source_is_shown_not_raised(demo_config_path: Path, tmp_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, gpu_module=FakeNvml(), engine_factory=warm.engine_client)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 180, "engine")
        await pilot.press("2")
        from workbench.config import set_field

        app.post_message(ConfigEdited(set_field(app.config, "data", "source", str(tmp_path / "missing.jsonl")),
                                      data_affecting=True))
        await wait_for(pilot, lambda: "no such file" in text_of(app, "#data-counts"), 60, "error shown")
        assert app.is_running


async def test_a_fresh_start_is_not_unsaved(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await pilot.pause(0.5)
        assert not app.dirty
        assert "unsaved" not in text_of(app, "#status-bar")


async def test_an_edit_put_back_is_not_unsaved(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        box = app.query_one("#f-lora-r", Input)
        before = box.value
        box.value = "48"
        await pilot.pause()
        assert app.dirty and "unsaved" in text_of(app, "#status-bar")
        box.value = before
        await pilot.pause()
        assert not app.dirty and "unsaved" not in text_of(app, "#status-bar")


async def test_esc_leaves_the_chat_box_so_digits_switch_panes(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await pilot.press("4")
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "chat-input", "the chat pane opens in its input"
        await pilot.press("escape")
        await pilot.press("2")
        await pilot.pause()
        assert app.query_one("#panes").active == "data"
        assert "2" not in app.query_one("#chat-input").text


async def test_save_pane_names_the_gguf_step_where_it_is_not_set_up(demo_config_path: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch):
    # A machine where `workbench gguf-setup` was never run: no converter in the cache, none elsewhere.
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "fresh-cache"))
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path / "no-llama.cpp"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await pilot.press("5")
        await pilot.pause()
        setup = text_of(app, "#save-setup")
        assert 'pip install -e ".[gguf]"' in setup and "workbench gguf-setup" in setup
        assert setup.count("GGUF is not set up") == 1, "said once for the three GGUF kinds"
        for kind in ("gguf_f16", "gguf_q8_0", "gguf_q4_k_m"):
            assert app.query_one(f"#save-{kind}").disabled
        assert not app.query_one("#save-lora").disabled and not app.query_one("#save-merged_16bit").disabled
