"""Opening a run replays its events.jsonl: the whole curve, the last metrics and the newest log lines,
without running every event through the pane on the UI thread."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import ProgressBar, RichLog, Static

from tests.ui import scenarios
from tests.ui.conftest import wait_for
from workbench.config import RunConfig, save_config
from workbench.protocol import Checkpoint, Done, Eval, Event, Log, Status, TrainStart
from workbench.runs import RunDir
from workbench.ui.app import WorkbenchApp
from workbench.ui.history import fold
from workbench.ui.messages import OpenRun
from workbench.ui.panes.train_pane import TrainPane
from workbench.ui.widgets.loss_chart import LossChart

STEPS = 10_000
T0 = scenarios.T0


def loss_at(step: int) -> float:
    return 3.0 / (1 + step / 500) + 0.01 * (step % 7)


def long_run(runs_dir: Path) -> RunDir:
    run = RunDir.create(runs_dir, "long-run")
    save_config(RunConfig(), run.config_path)
    run.append(TrainStart(t=T0, run=run.name, total_steps=STEPS, run_dir=str(run.path), train_rows=40_000,
                          eval_rows=400, effective_batch=4, trainable_params=1_000, total_params=9_000))
    run.append(Status(t=T0, run=run.name, message="First step: compiling GPU kernels; this takes 2-3 minutes once."))
    for step in range(1, STEPS + 1):
        t = T0 + step
        run.append(Log(t=t, run=run.name, step=step, total_steps=STEPS, loss=loss_at(step), learning_rate=2e-4,
                       grad_norm=0.5, epoch=step / 10_000, tokens=step * 512, tokens_per_s=2048.0,
                       elapsed_s=float(step), eta_s=float(STEPS - step)))
        if step % 1000 == 0:
            run.append(Eval(t=t, run=run.name, step=step, eval_loss=loss_at(step) + 0.1))
            run.append(Checkpoint(t=t, run=run.name, step=step, path=str(run.checkpoints_dir / f"checkpoint-{step}")))
    run.append(Done(t=T0 + STEPS + 1, run=run.name, status="completed", step=STEPS, total_steps=STEPS,
                    final_loss=loss_at(STEPS), message="Training finished; adapter saved."))
    return run


def text(app: WorkbenchApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def log_text(app: WorkbenchApp) -> list[str]:
    return [strip.text.rstrip() for strip in app.query_one("#train-log", RichLog).lines]


async def test_a_10k_step_run_replays_whole(demo_config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # short paths: log lines that name them fit on one line of the log
    run = long_run(Path("runs"))
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        train = app.query_one(TrainPane)
        chart = app.query_one(LossChart)
        app.post_message(OpenRun(str(run.path)))
        await wait_for(pilot, lambda: train.last_done is not None, 30, "the history shown")
        assert chart.steps == [float(s) for s in range(1, STEPS + 1)], "every step's loss is on the chart"
        assert chart.losses == [loss_at(s) for s in range(1, STEPS + 1)]
        assert chart.eval_steps == [float(s) for s in range(1000, STEPS + 1, 1000)]
        assert train.last_log is not None and train.last_log.step == STEPS
        assert f"step {STEPS}/{STEPS}" in text(app, "#train-metrics")
        assert "completed at step 10000" in text(app, "#train-phase")
        progress = app.query_one("#train-progress", ProgressBar)
        assert (progress.total, progress.progress) == (STEPS, STEPS)
        assert not train.running and train.run_dir == str(run.path)
        lines = log_text(app)
        assert len(lines) == 2000, "the RichLog keeps its last 2000 lines"
        assert lines[-1].startswith("replayed 10023 events from")
        assert lines[-2] == "completed at step 10000/10000: Training finished; adapter saved."
        assert lines[-3] == f"checkpoint at step {STEPS}: {run.checkpoints_dir / f'checkpoint-{STEPS}'}"
        assert lines[-5] == f"step {STEPS}/{STEPS} loss {loss_at(STEPS):.4f} lr 2.00e-04 grad_norm 0.500 2,048 tok/s 2:46:40"


def shown(app: WorkbenchApp, lines: list[str]) -> tuple[object, ...]:
    """What the Train pane shows, to compare a replay with the same events arriving live."""
    chart, train, progress = app.query_one(LossChart), app.query_one(TrainPane), app.query_one(ProgressBar)
    return (list(chart.steps), list(chart.losses), list(chart.eval_steps), list(chart.eval_losses),
            text(app, "#train-metrics"), text(app, "#train-phase"), text(app, "#gpu-memory-report"),
            (progress.total, progress.progress), lines, train.last_log, train.last_done, train.total_steps)


async def test_replay_shows_what_the_live_events_showed(demo_config_path: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    run = scenarios.finished_run(Path("runs"))
    events = run.events()
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        train = app.query_one(TrainPane)
        app.action_pane("train")
        for event in events:  # as they came from the engine
            train.handle_event(event)
        await pilot.pause()
        live = shown(app, log_text(app))

        app.post_message(OpenRun(str(run.path)))
        await wait_for(pilot, lambda: any(line.startswith("replayed ") for line in log_text(app)), 30, "the replay")
        lines = log_text(app)
        lines = lines[:next(i for i, line in enumerate(lines) if line.startswith("replayed "))]
        assert shown(app, lines) == live


async def test_live_events_during_a_replay_follow_it(demo_config_path: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    run = RunDir.create(Path("runs"), "live")
    first: list[Event] = [TrainStart(t=T0, run="live", total_steps=10, run_dir=str(run.path), train_rows=4,
                                     effective_batch=1)]
    first += [Log(t=T0 + s, run="live", step=s, total_steps=10, loss=1.0 / s) for s in range(1, 6)]
    for event in first:
        run.append(event)
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        train = app.query_one(TrainPane)
        app.action_pane("train")  # the log renders its lines once it is shown
        train.replay(run.path)
        # before the file is read: the last event written (and sent again live) and a new one
        train.handle_event(first[-1])
        train.handle_event(Log(t=T0 + 6, run="live", step=6, total_steps=10, loss=1 / 6))
        await wait_for(pilot, lambda: train.last_log is not None and train.last_log.step == 6, 30, "the live step")
        assert app.query_one(LossChart).steps == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        lines = log_text(app)
        assert sum(line.startswith("step 5/10") for line in lines) == 1, "an event in the file is shown once"
        assert lines[-1].startswith("step 6/10") and lines[-2].startswith("replayed 6 events")


async def test_a_phase_said_before_the_steps_gives_way_to_the_run_when_steps_come(demo_config_path: Path,
                                                                                 tmp_path: Path) -> None:
    # Seen on an H200: "First step: compiling GPU kernels…" still showed at step 31.
    events = scenarios.training_events(str(tmp_path / "runs" / "demo"), steps=3)
    compiling = Status(t=T0, run="demo", message="First step: compiling GPU kernels; this takes 2-3 minutes once.")
    events.insert(1, compiling)
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        train = app.query_one(TrainPane)
        train.handle_event(events[0])
        train.handle_event(compiling)
        assert "compiling" in text(app, "#train-phase")
        for event in events[2:]:
            train.handle_event(event)
        await pilot.pause()
        assert text(app, "#train-phase").startswith("Training 194 rows")
    history = fold(events, 100)
    assert history.phase is not None and history.phase.startswith("Training 194 rows")
