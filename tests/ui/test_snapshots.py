"""Snapshot tests of every pane (pytest-textual-snapshot), deterministic: a scripted engine (real
tokenization and statistics of the bundled data, fixed training events), no clocks, no cursor in a text
box. Each state is reached with keys, as a user reaches it. Update with `pytest tests/ui/test_snapshots.py
--snapshot-update` after an intended change, and look at the SVGs before committing them."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, TextArea

from tests.ui import scenarios
from tests.ui.conftest import FakeNvml, wait_for
from tests.ui.scripted import ScriptedEngine, scripted_app_factory
from workbench import requests as rq
from workbench.config import load_config, save_config
from workbench.gpu import sample_gpus
from workbench.protocol import Token
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.data_pane import DataPane
from workbench.ui.panes.save_pane import SavePane
from workbench.ui.panes.train_pane import TrainPane
from workbench.ui.widgets.gpu_panel import HISTORY, GpuGauge, GpuPanel

ROOT = Path(__file__).resolve().parents[2]


def _generate(args: rq.Generate, rid: str, emit) -> rq.Answer:
    replies = {"tuned": "सीमा और राकेश कल सुबह 10 बजे गाड़ी से डॉक्टर के पास जाएँगे।", "base": "ठीक है ठीक है कल कल सुबह"}
    results = {}
    for stream in ("tuned", "base") if args.compare else ("tuned",):
        for word in replies[stream].split(" "):
            emit(Token(text=word + " ", stream=stream))
        results[stream] = rq.GenerationStats(text=replies[stream], new_tokens=21, prompt_tokens=300,
                                             time_to_first_token_s=0.041, decode_tokens_per_s=347.0)
    return rq.Generated(results=results, has_adapter=True)


SCRIPT = {rq.Generate: _generate}


@pytest.fixture
def snap_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # the status bar and the run paths are then the same on every machine
    config = load_config(ROOT / "configs" / "demo.toml")
    config.output.runs_dir = "runs"
    path = Path("configs") / "demo.toml"
    save_config(config, path)

    def make() -> WorkbenchApp:
        factory, _engines = scripted_app_factory(SCRIPT)
        return WorkbenchApp(config_path=path, engine_factory=factory, gpu_module=FakeNvml())
    return make


def engine_of(app: WorkbenchApp) -> ScriptedEngine:
    assert isinstance(app.client, ScriptedEngine)
    return app.client


async def _ready(pilot) -> WorkbenchApp:
    app: WorkbenchApp = pilot.app
    await app.panes_mounted()
    await wait_for(pilot, lambda: app.engine_ready, 10, "the engine's hello")
    await pilot.pause()
    return app


def test_config_pane(snap_compare, snap_app):
    async def before(pilot):
        await _ready(pilot)
    assert snap_compare(snap_app(), terminal_size=(120, 40), run_before=before)


def test_config_pane_80x24_with_an_error(snap_compare, snap_app):
    async def before(pilot):
        app = await _ready(pilot)
        app.query_one("#f-model-max_seq_length", Input).focus()
        # (ctrl+a is "home" in a Textual Input: the text was 81024, valid, and the snapshot had no error)
        await pilot.press("end", *["backspace"] * 4, "8", "escape")
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(80, 24), run_before=before)


def test_config_pane_160x50_changes_listed(snap_compare, snap_app):
    # Two fields edited (marked ●, the file's value in their help), the list of changes open (d), and
    # the focus on a field (its help whole).
    async def before(pilot):
        app = await _ready(pilot)
        app.query_one("#f-lora-r", Input).focus()
        await pilot.press("end", "ctrl+u", *"32", "escape")
        app.query_one("#f-training-learning_rate", Input).focus()
        await pilot.press("end", "ctrl+u", *"1e-4", "escape", "d")
        app.query_one("#f-data-input_column").focus()
        await pilot.press("end", "ctrl+u", "escape")  # invalid: empty
        app.query_one("#f-lora-gradient_checkpointing").focus()
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(160, 50), run_before=before)


def test_config_pane_80x24_filtered(snap_compare, snap_app):
    # "/rank": the fields whose name or help says it; enter goes to the first, tab to the next, whose
    # help shows under it (no room beside the editor at 80 columns).
    async def before(pilot):
        await _ready(pilot)
        await pilot.press("slash", *"rank", "enter", "tab")
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(80, 24), run_before=before)


def test_data_pane_devanagari(snap_compare, snap_app):
    async def before(pilot):
        app = await _ready(pilot)
        await pilot.press("2", "n", "n", "n")
        pane = app.query_one(DataPane)
        await wait_for(pilot, lambda: pane.position == 3 and pane.stats is not None, 30, "row 4 and the statistics")
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(160, 45), run_before=before)


def test_train_pane(snap_compare, snap_app):
    async def before(pilot):
        app = await _ready(pilot)
        await pilot.press("3", "t")
        engine = engine_of(app)
        for event in scenarios.training_events("runs/scripted-run"):
            engine.broadcast(event)
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.last_log is not None and pane.last_log.step == 60, 10, "60 steps")
        # How many 1 Hz samples landed is a matter of timing: stop the poller and show exactly one.
        pane._gpu_stop.set()
        await pilot.pause(0.2)
        for gauge in pane.query(GpuGauge):
            gauge.util_history.extend([0.0] * HISTORY)
            gauge.mem_history.extend([0.0] * HISTORY)
        pane.query_one(GpuPanel).show(*sample_gpus(FakeNvml()))
        pane.query_one("#loss-chart").draw_now()  # drawn here, not in its thread: the snapshot must have it
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(160, 45), run_before=before)


def test_chat_pane_side_by_side(snap_compare, snap_app):
    async def before(pilot):
        app = await _ready(pilot)
        await pilot.press("4")
        app.query_one("#chat-compare").focus()
        await pilot.press("enter")
        app.query_one("#chat-input", TextArea).text = (
            "सीमा: कल सुबह 10 बजे डॉक्टर के पास चलना है।\nराकेश: ठीक है, मैं गाड़ी ले आऊँगा।")
        app.query_one("#chat-input").focus()
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "tok/s" in str(app.query_one("#chat-status").render()), 10, "the answers")
        await pilot.press("escape")
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(140, 40), run_before=before)


def test_save_and_runs_pane(snap_compare, snap_app, monkeypatch):
    # The picture of a machine where GGUF export is not set up (as in CI), wherever the test runs.
    from workbench import save_kinds

    monkeypatch.setattr(save_kinds, "llama_cpp_installed", lambda: False)
    monkeypatch.setattr(save_kinds, "llama_cpp_dir", lambda: None)

    async def before(pilot):
        scenarios.finished_run(Path("runs"))
        app = await _ready(pilot)
        await pilot.press("5")
        pane = app.query_one(SavePane)
        await wait_for(pilot, lambda: pane.runs_shown(), 10, "the runs list")
        await pilot.press("enter", "5")  # open the run: the Save pane now saves it
        await wait_for(pilot, lambda: "tiny-gemma2" in str(app.query_one("#save-source").render()), 10,
                       "the opened run as the source")
        app.query_one("#runs-table").focus()
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(140, 36), run_before=before)


def test_help_screen(snap_compare, snap_app):
    async def before(pilot):
        await _ready(pilot)
        await pilot.press("f1")
        await pilot.pause()
    assert snap_compare(snap_app(), terminal_size=(120, 40), run_before=before)
