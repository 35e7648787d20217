"""Ranks that fail (killed, out of memory), two nodes on one machine, and the engine (the TUI's path) running a
run on ranks. `workbench train --nproc 2` is the path a multi-GPU run takes, with CPU ranks over gloo
instead of GPUs (tests/engine/ranks.py has the helpers). The engine's launch starts its ranks as fresh
interpreters; the others start them warm (`warm.rank_env`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests import warm
from tests.engine.ranks import ROOT, free_port, losses, rank_pids, small_config, wait_for_step
from workbench.config import load_config, save_config
from workbench.protocol import Checkpoint, Done, Log
from workbench.runs import COMPLETE_MARKER, RunDir

pytestmark = pytest.mark.engine


def test_a_rank_killed_marks_the_run_failed_and_keeps_the_checkpoint(tmp_path):
    run = RunDir(tmp_path / "killed")
    config = small_config(tmp_path, 2, 60, "kill", save_steps=2)
    proc = warm.popen("train", "--config", str(config), "--run-dir", str(run.path), "--nproc", "2",
                      env=warm.rank_env(2))
    try:
        wait_for_step(run, 3)
        victims = rank_pids(run.path)
        assert len(victims) == 2, victims
        os.kill(int(max(victims, key=int)), signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = [e for e in run.iter_events() if isinstance(e, Done)]
    assert [d.status for d in done] == ["failed"], out[-2000:]
    assert done[0].step >= 3, done[0]  # where the run got to, not step 0
    assert proc.returncode != 0
    assert "A rank ended" in out + done[0].message, out[-2000:]
    assert not run.adapter_dir.exists()
    newest = run.newest_checkpoint()  # only complete checkpoints count
    assert newest is not None and (newest / COMPLETE_MARKER).exists()
    assert any(isinstance(e, Checkpoint) for e in run.iter_events())


def test_out_of_memory_on_ranks_fails_the_run_at_once_instead_of_retrying_on_one_rank(tmp_path):
    """auto_retry_oom halves the micro-batch of one process; on ranks that would leave the others waiting in a
    collective, so the run fails with the out-of-memory message and keeps its checkpoint for a resume."""
    run = RunDir(tmp_path / "oom")
    path = small_config(tmp_path, 2, 8, "oom", save_steps=2)
    config = load_config(path)
    config.training.auto_retry_oom = True
    save_config(config, path)
    env = {**warm.rank_env(2), "WORKBENCH_INJECT_OOM_AT_STEP": "3"}
    proc = warm.run("train", "--config", str(path), "--run-dir", str(run.path), "--nproc", "2", timeout=300,
                    env=env)
    assert proc.returncode != 0
    done = [e for e in run.iter_events() if isinstance(e, Done)]
    assert [d.status for d in done] == ["failed"], proc.stdout[-2000:]
    assert "out of memory" in done[0].message and "retrying" not in proc.stdout
    assert run.newest_checkpoint() is not None and run.newest_checkpoint().name == "checkpoint-2"


def test_two_nodes_on_one_machine_from_print_launch(tmp_path):
    """`--print-launch` prints one command per node; both started here (two launcher agents, one rank
    each, rendezvous on localhost) train the run together."""
    run_dir = tmp_path / "nodes"
    config = small_config(tmp_path, 2, 2, "nodes")
    printed = warm.run("train", "--config", str(config), "--run-dir", str(run_dir), "--nproc", "1", "--nnodes", "2",
                        "--rdzv", f"127.0.0.1:{free_port()}", "--print-launch")
    assert printed.returncode == 0, printed.stderr
    commands = [line for line in printed.stdout.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2 and "--node-rank=0" in commands[0] and "--node-rank=1" in commands[1]
    assert (run_dir / "launch.toml").exists()
    env = warm.rank_env(1, nnodes=2, from_workbench=False)
    agents = [subprocess.Popen(["bash", "-c", line.replace("python ", f"{sys.executable} ", 1)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for line in commands]
    outputs = [a.communicate(timeout=400)[0] for a in agents]
    assert [a.returncode for a in agents] == [0, 0], [o[-1500:] for o in outputs]
    run = RunDir(run_dir)
    assert [d.status for d in run.iter_events() if isinstance(d, Done)] == ["completed"]
    assert sorted(losses(run)) == [1, 2]


def test_the_engine_runs_a_run_on_ranks_and_stops_it(engine, tmp_path):
    """The TUI's path: `Train` with ranks starts torchrun from the engine; the events of rank 0 reach the
    client; Stop reaches every rank; chat, pause and probes wait for the run to end; training.gpus the
    machine lacks is refused at once, naming the field."""
    from tests.engine.test_engine import wait_done
    from workbench import requests as rq
    from workbench.client import EngineError

    config = load_config(small_config(tmp_path, 2, 40, "engine"))
    config.output.runs_dir = str(tmp_path / "runs")
    with pytest.raises(EngineError, match=r"training\.gpus = 8"):
        lacking = config.model_copy(deep=True)
        lacking.training.gpus = 8
        engine.call(rq.Train(config=lacking), timeout=60)
    started = engine.call(rq.Train(config=config, cpu_ranks=2), timeout=60)
    run = RunDir(started.run_dir)
    wait_for_step(run, 1)
    # `workbench attach RUN` reaches the engine that relays the ranks: rank 0 names it in engine.json.
    info = run.engine_info()
    assert info is not None and info["socket"] == engine.socket_path and run.engine_alive()
    with pytest.raises(EngineError, match="2 ranks"):
        engine.call(rq.Pause(), timeout=30)
    assert engine.call(rq.Stop(), timeout=30).stopping
    done = wait_done(engine, started.run_dir, timeout=300)
    assert done.status == "stopped" and done.step >= 1
    streamed = [e for e in list(engine.events) if isinstance(e, Log) and e.run == run.name]
    assert streamed and len({e.step for e in streamed}) == len(streamed)  # rank 0's, once each
    assert run.newest_checkpoint() is not None
