"""The memory forecast in the Config pane: asked of the engine when it is ready and again after edits
(once the typing stops), shown as one line against the card's free memory, coloured by the verdict."""

from __future__ import annotations

from typing import Any

from textual.widgets import Static

from tests.ui import scenarios
from tests.ui.conftest import wait_for
from tests.ui.scripted import scripted_app_factory
from workbench import requests as rq
from workbench.config import RunConfig
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.config_pane import ConfigPane, forecast_text


def line(app: WorkbenchApp) -> str:
    return str(app.query_one("#config-forecast", Static).render())


def on_a_card(free_gib: float) -> Any:
    def handler(args: rq.MemoryForecast, rid: str, emit: Any) -> rq.Answer:
        return scenarios.forecast_answer(args.config, free_gib=free_gib, gpu="GPU 0 NVIDIA L4")

    return handler


async def test_the_forecast_follows_the_micro_batch(tmp_path: Any) -> None:
    config_path = tmp_path / "run.toml"
    factory, engines = scripted_app_factory({rq.MemoryForecast: on_a_card(9.0)})
    app = WorkbenchApp(config_path=str(config_path), engine_factory=factory)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: "free" in line(app), 20, "the first forecast")
        first = line(app)
        assert "of 9.0 GiB free (GPU 0 NVIDIA L4)" in first and "fits: micro-batch 2" in first
        pane = app.query_one(ConfigPane)
        asked = len(engines[0].requests(rq.MemoryForecast))
        config = pane.config.model_copy(deep=True)
        config.training.per_device_train_batch_size = 64
        app.config = config  # as after an edit: the config comes down
        await wait_for(pilot, lambda: "out of memory expected" in line(app), 20, "the forecast after the edit")
        assert len(engines[0].requests(rq.MemoryForecast)) == asked + 1  # one request once the edits stop
        assert pane.forecast is not None and pane.forecast.total_gib > 9.0


async def test_a_profile_is_applied_as_an_edit(tmp_path: Any) -> None:
    factory, _engines = scripted_app_factory({rq.MemoryForecast: on_a_card(79.0)})
    app = WorkbenchApp(config_path=str(tmp_path / "run.toml"), engine_factory=factory)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: "fast:" in line(app), 20, "the forecast with profiles")
        pane = app.query_one(ConfigPane)
        fast = next(p for p in pane.forecast.profiles if p.name == "fast")
        app.query_one("#config-form").focus()
        await pilot.press("F")
        await wait_for(pilot, lambda: app.config.training.per_device_train_batch_size == fast.micro_batch, 10,
                       "the fast profile applied")
        assert app.config.lora.gradient_checkpointing == fast.checkpointing == "false"
        assert app.dirty  # an edit like any other: saved or undone by the user
        await pilot.press("f")
        await wait_for(pilot, lambda: app.config.lora.gradient_checkpointing == "unsloth", 10, "fits applied")
        assert app.config.model.load_in_4bit and app.config.lora.stream_layers
        await pilot.press("F")  # from streamed layers to none checkpointed: streaming goes off first
        await wait_for(pilot, lambda: app.config.lora.gradient_checkpointing == "false", 10, "fast again")
        assert not app.config.lora.stream_layers


async def test_without_a_gpu_there_is_no_profile_to_apply(tmp_path: Any) -> None:
    factory, _engines = scripted_app_factory()
    app = WorkbenchApp(config_path=str(tmp_path / "run.toml"), engine_factory=factory)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: "CUDA card" in line(app), 20, "the forecast")
        app.query_one("#config-form").focus()
        before = app.config
        await pilot.press("F")
        await pilot.pause()
        assert "No fast profile yet" in str(app.query_one("#config-message", Static).render())
        assert app.config == before


def test_the_line_says_what_the_verdict_says() -> None:
    config = RunConfig()
    roomy = forecast_text(scenarios.forecast_answer(config, free_gib=139.0, gpu="GPU 0 NVIDIA H200"))
    assert roomy.plain.startswith("memory: forecast peak ")
    assert "of 139.0 GiB free (GPU 0 NVIDIA H200)" in roomy.plain
    assert "fast: micro-batch" in roomy.plain and "no checkpointing" in roomy.plain
    tight = scenarios.forecast_answer(config, free_gib=7.3)
    assert "tight" in tight.verdict
    cpu = forecast_text(scenarios.forecast_answer(config)).plain
    assert cpu.endswith("on a CUDA card (no NVIDIA GPU here)") and "│" not in cpu


async def question_at_start(pilot: Any, app: WorkbenchApp) -> str:
    """Press Start in the Train pane and wait for the question it asks first; its text."""
    from workbench.ui.widgets.confirm import Confirm

    await pilot.press("3")
    await pilot.press("t")
    await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 10, "the question")
    return str(app.screen.query_one("#confirm-text", Static).render())


async def cancel_the_question(pilot: Any, app: WorkbenchApp) -> None:
    from workbench.ui.widgets.confirm import Confirm

    await pilot.press("enter")  # the safe answer has the focus: Cancel
    await wait_for(pilot, lambda: not isinstance(app.screen, Confirm), 10, "the question answered")


async def test_start_asks_first_when_the_forecast_expects_out_of_memory(tmp_path: Any) -> None:
    """Warned before the OOM, not after it: Start with a forecast over the card's free memory asks;
    Cancel sends nothing, "Start anyway" starts the run."""
    from workbench.ui.widgets.confirm import Confirm

    factory, engines = scripted_app_factory({rq.MemoryForecast: on_a_card(4.0)})
    app = WorkbenchApp(config_path=str(tmp_path / "run.toml"), engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "out of memory expected" in line(app), 20, "the forecast")
        assert "out of memory" in await question_at_start(pilot, app)
        await cancel_the_question(pilot, app)
        assert not engines[0].requests(rq.Train)
        assert "Not started: see the Config pane" in str(app.query_one("#train-phase", Static).render())
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 10, "the question again")
        await pilot.click("#confirm-yes")
        await wait_for(pilot, lambda: bool(engines[0].requests(rq.Train)), 10, "the run started")


async def test_start_goes_ahead_when_the_forecast_fits(tmp_path: Any) -> None:
    factory, engines = scripted_app_factory({rq.MemoryForecast: on_a_card(79.0)})
    app = WorkbenchApp(config_path=str(tmp_path / "run.toml"), engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "free" in line(app), 20, "the forecast")
        await pilot.press("3")
        await pilot.press("t")
        await wait_for(pilot, lambda: bool(engines[0].requests(rq.Train)), 10, "the run started without a question")


async def test_gpus_the_machine_lacks_are_said_in_the_config_pane_and_at_start(tmp_path: Any) -> None:
    """training.gpus = 2 on a machine without them: the memory line says so, in red, and Start asks."""
    config_path = tmp_path / "run.toml"
    config = RunConfig()
    config.training.gpus = 2
    from workbench.config import save_config

    save_config(config, config_path)
    factory, engines = scripted_app_factory({rq.MemoryForecast: on_a_card(79.0)})
    app = WorkbenchApp(config_path=str(config_path), engine_factory=factory)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: "gpus:" in line(app), 20, "the GPU check")
        assert "training.gpus = 2, but this machine has" in line(app)
        assert "training.gpus = 2" in await question_at_start(pilot, app)
        await cancel_the_question(pilot, app)
        assert not engines[0].requests(rq.Train)
