"""Pause and probe in the Train pane: p pauses a running run, the phase says where it waits, e runs a quick
eval with the live adapter (scores charted beside the loss), r continues the paused run (not a resume from
a checkpoint), and a re-attached run shows the pause and what the model said."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button, Static

from tests.ui import scenarios
from tests.ui.conftest import wait_for
from tests.ui.scripted import scripted_app_factory
from workbench import requests as rq
from workbench.config import save_config
from workbench.protocol import GenerationEval, Paused, Probe, Resumed
from workbench.runs import RunDir
from workbench.ui.app import WorkbenchApp

T = 1_764_000_500.0


def text_of(app: WorkbenchApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def _quick_eval(args: rq.QuickEval, rid: str, emit) -> rq.Answer:
    return rq.QuickEvalDone(step=12, rouge_l=31.25, chrf=40.5, rows=4, sample="राम और सीता बाज़ार जाएँगे।")


@pytest.fixture
def config_path(demo_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "demo.toml"
    save_config(demo_config, path)
    return path


async def test_pause_quick_eval_and_continue(config_path: Path) -> None:
    factory, engines = scripted_app_factory({rq.Pause: lambda a, rid, emit: rq.Pausing(pausing=True),
                                             rq.Continue: lambda a, rid, emit: rq.Continuing(continuing=True),
                                             rq.QuickEval: _quick_eval})
    app = WorkbenchApp(config_path=config_path, engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 10, "engine")
        await pilot.press("3", "p")
        assert "Nothing is training" in text_of(app, "#train-phase")
        assert not engines[0].requests(rq.Pause)

        await pilot.press("t")
        await pilot.pause()
        run_dir = engines[0].requests(rq.Train)[-1].config.output.runs_dir
        for event in scenarios.training_events(str(Path(run_dir) / "scripted-run"), steps=12):
            engines[0].broadcast(event)
        await wait_for(pilot, lambda: "step 12" in text_of(app, "#train-metrics") or "12/150" in text_of(app, "#train-metrics"),
                       10, lambda: f"step 12 shown, have {text_of(app, '#train-metrics')!r}")

        await pilot.press("p")
        await pilot.pause()
        assert len(engines[0].requests(rq.Pause)) == 1
        assert "Pausing at the next step boundary" in text_of(app, "#train-phase")
        engines[0].broadcast(Paused(t=T, run="demo", step=12))
        await wait_for(pilot, lambda: "Paused at step 12" in text_of(app, "#train-phase"), 10, "the paused phase")
        assert "not counted" in text_of(app, "#train-phase")
        assert str(app.query_one("#train-resume", Button).label) == "Continue ▶"
        assert not app.query_one("#train-resume", Button).disabled
        assert app.query_one("#train-pause", Button).disabled
        await pilot.press("p")  # already paused: nothing more is asked
        assert len(engines[0].requests(rq.Pause)) == 1

        await pilot.press("e")
        await wait_for(pilot, lambda: "ROUGE-L 31.2" in text_of(app, "#train-phase"), 10, "the quick eval's scores")
        assert len(engines[0].requests(rq.QuickEval)) == 1
        assert not app.query_one("#train-scores", Static).display  # no generation eval event yet
        engines[0].broadcast(GenerationEval(t=T + 1, run="demo", step=12, rouge_l=31.25, chrf=40.5, rows=4,
                                            sample="राम और सीता बाज़ार जाएँगे।"))
        engines[0].broadcast(Probe(t=T + 2, run="demo", step=12, kind="eval", prompt="4 held-out rows",
                                   output="ROUGE-L 31.2, chrF++ 40.5"))
        await wait_for(pilot, lambda: app.query_one("#train-scores", Static).display, 10, "the scores line")
        assert "ROUGE-L" in text_of(app, "#train-scores") and "40.5" in text_of(app, "#train-scores")

        await pilot.press("r")
        await pilot.pause()
        assert len(engines[0].requests(rq.Continue)) == 1
        assert len(engines[0].requests(rq.Train)) == 1, "r continues the paused run; it does not start a resume"
        engines[0].broadcast(Resumed(t=T + 30, run="demo", step=12, paused_s=30.0))
        await wait_for(pilot, lambda: "Paused" not in text_of(app, "#train-phase"), 10, "the run's line again")
        assert text_of(app, "#train-phase").startswith("Training 194 rows")
        assert str(app.query_one("#train-resume", Button).label) == "Resume ↻"
        assert not app.query_one("#train-pause", Button).disabled


async def test_a_reattached_paused_run_shows_the_pause_and_the_probes(config_path: Path) -> None:
    run = RunDir.create(Path("runs"), "paused-run")
    for event in scenarios.training_events(str(run.path), steps=12):
        run.append(event)
    run.append(Paused(t=T, run="paused-run", step=12))
    run.append(Probe(t=T + 1, run="paused-run", step=12, prompt="राम: नमस्ते, आज बाज़ार चलोगे?",
                     output="राम ने सीता को बाज़ार चलने को कहा।"))
    factory, _engines = scripted_app_factory()
    app = WorkbenchApp(config_path=config_path, engine_factory=factory, attach=str(run.path))
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await pilot.press("3")
        await wait_for(pilot, lambda: "replayed" in app.query_one("#train-log").lines[-1].text, 10, "the replay")
        log = "\n".join(line.text for line in app.query_one("#train-log").lines)
        assert "paused at step 12" in log
        assert "probe at step 12: राम: नमस्ते, आज बाज़ार चलोगे? → राम ने सीता को बाज़ार चलने को कहा।" in log
