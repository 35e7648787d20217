"""Runs survive the UI: kill -9 of the UI process, re-attach from a new one; kill -9 of the engine with the
UI up, then resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Static

from tests import warm
from tests.ui.conftest import FakeNvml, wait_for
from workbench.config import load_config, save_config
from workbench.protocol import Done, Log, TrainStart
from workbench.runs import RunDir
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.train_pane import TrainPane
from workbench.ui.widgets.loss_chart import LossChart

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]

UI_SCRIPT = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from tests.ui.conftest import FakeNvml, wait_for
from workbench.ui.app import WorkbenchApp
from workbench.ui.widgets.loss_chart import LossChart

async def main():
    app = WorkbenchApp(config_path=sys.argv[1], gpu_module=FakeNvml())
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 180, "engine")
        await pilot.press("3")
        await pilot.click("#train-start")
        await wait_for(pilot, lambda: len(app.query_one(LossChart).steps) >= 5, 180, "losses")
        print("STARTED", app.active_run, flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_ui_killed_then_reattached_sees_every_step(demo_config_path: Path):
    config = load_config(demo_config_path)
    config.training.max_steps = 60  # still running when the new UI attaches (about 5 of them are done)
    config.training.save_steps = 20
    config.data.eval_fraction = 0.0
    save_config(config, demo_config_path)
    ui = subprocess.Popen([sys.executable, "-c", UI_SCRIPT, str(demo_config_path), str(ROOT)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert ui.stdout is not None
    line = ""
    deadline = time.monotonic() + 240
    while not line.startswith("STARTED"):
        line = ui.stdout.readline()
        assert line or ui.poll() is None, ui.stderr.read()[-3000:] if ui.stderr else ""
        assert time.monotonic() < deadline
    run = RunDir(line.split(maxsplit=1)[1].strip())
    ui.send_signal(signal.SIGKILL)  # the UI dies as with a dropped SSH session: no clean shutdown
    ui.wait(timeout=30)
    info = run.engine_info()
    assert info and run.engine_alive(), "training outlives the UI"
    os.kill(int(info["pid"]), signal.SIGHUP)  # a hang-up reaching the engine does not stop it either
    time.sleep(0.5)
    assert run.engine_alive()

    app = WorkbenchApp(config_path=demo_config_path, attach=str(run.path), gpu_module=FakeNvml())
    async with app.run_test(size=(120, 40)) as pilot:
        await app.panes_mounted()
        train = app.query_one(TrainPane)
        await wait_for(pilot, lambda: train.last_done is not None, 600, "the run to finish, seen live")
        assert train.last_done.status == "completed"
        chart = app.query_one(LossChart)
        assert sorted(int(s) for s in chart.steps) == list(range(1, 61)), "every step's loss is shown"
    logged = sorted({e.step for e in run.iter_events() if isinstance(e, Log)})
    assert logged == list(range(1, 61))


async def test_engine_killed_ui_stays_up_and_resumes(demo_config_path: Path):
    config = load_config(demo_config_path)
    config.training.max_steps = 5000
    config.training.save_steps = 5
    config.training.save_total_limit = 2
    config.data.eval_fraction = 0.0
    save_config(config, demo_config_path)
    app = WorkbenchApp(config_path=demo_config_path, gpu_module=FakeNvml(), engine_factory=warm.engine_client)
    async with app.run_test(size=(120, 40)) as pilot:
        try:
            await app.panes_mounted()
            await wait_for(pilot, lambda: app.engine_ready, 180, "engine")
            await pilot.press("3")
            await pilot.click("#train-start")
            train = app.query_one(TrainPane)
            await wait_for(pilot, lambda: train.run_dir is not None and RunDir(train.run_dir).newest_checkpoint()
                           is not None and len(app.query_one(LossChart).steps) >= 12, 180, "a checkpoint")
            first_engine = app.client.process
            first_engine.send_signal(signal.SIGKILL)
            await wait_for(pilot, lambda: "stopped unexpectedly" in str(app.query_one("#train-phase", Static).render()),
                           60, "the loss shown")
            assert app.is_running
            assert not app.query_one("#train-resume").disabled
            await wait_for(pilot, lambda: app.engine_ready and app.client is not None
                           and app.client.process is not first_engine, 180, "a new engine")
            checkpoint_step = int(RunDir(train.run_dir).newest_checkpoint().name.split("-")[1])
            await pilot.click("#train-resume")

            def starts() -> list[TrainStart]:
                return [e for e in RunDir(train.run_dir).iter_events() if isinstance(e, TrainStart)]

            # A step logged after the resumed run started: the last log before the kill may already be past
            # checkpoint_step + 3 (CI once read the first run's start here).
            await wait_for(pilot, lambda: len(starts()) >= 2 and train.last_log is not None
                           and train.last_log.t > starts()[-1].t and train.last_log.step > checkpoint_step + 3
                           and train.running, 180, "resumed training")
            assert starts()[-1].start_step == checkpoint_step
            await pilot.click("#train-stop")
            await wait_for(pilot, lambda: not train.running, 120, "stopped")
            dones = [e for e in RunDir(train.run_dir).iter_events() if isinstance(e, Done)]
            assert dones[-1].status == "stopped"
        finally:  # a failure above must not leave an engine training 5000 steps behind the rest of the suite
            if app.client is not None and app.client.process is not None and app.client.process.poll() is None:
                app.client.process.kill()
