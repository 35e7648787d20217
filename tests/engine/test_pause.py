"""Pause and probe: a run paused at two step boundaries and asked for sampled and greedy summaries by its
live adapter goes on with exactly the losses of a run that was never paused; the probes are recorded."""

from __future__ import annotations

import time

import pytest

from workbench import requests as rq
from workbench.protocol import Done, GenerationEval, Log, Paused, Probe, Resumed
from workbench.runs import RunDir

pytestmark = pytest.mark.engine


def wait_for(engine, condition, what: str, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in list(engine.events) if condition(e)]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no {what}; log: {engine.log_tail(20)}"
        time.sleep(0.05)


def losses(run: RunDir) -> dict[int, float | None]:
    return {e.step: e.loss for e in run.iter_events() if isinstance(e, Log)}


def test_probing_a_paused_run_leaves_its_losses_unchanged(engine, demo_config):
    demo_config.data.eval_fraction = 0.0
    demo_config.training.max_steps = 16
    demo_config.training.save_steps = 100
    demo_config.lora.dropout = 0.1  # training draws random numbers too: a probe must not move them
    demo_config.output.run_name = "straight"
    straight = engine.call(rq.Train(config=demo_config), timeout=60)
    wait_for(engine, lambda e: isinstance(e, Done) and e.run == straight.run, "end of the straight run")

    demo_config.output.run_name = "probed"
    probed = engine.call(rq.Train(config=demo_config), timeout=60)
    for at, temperature in ((4, 0.8), (11, 0.0)):  # a sampled probe, then a greedy one
        wait_for(engine, lambda e, a=at: isinstance(e, Log) and e.run == probed.run and e.step >= a, f"step {at}")
        assert engine.call(rq.Pause(), timeout=30).pausing
        paused = wait_for(engine, lambda e, a=at: isinstance(e, Paused) and e.step >= a, f"a pause after step {at}")
        assert engine.call(rq.GetStatus(), timeout=30).state == "paused"
        answer = engine.call(rq.Generate(config=demo_config, conversation="राम: कल बाज़ार चलें?\nसीता: हाँ।",
                                         max_new_tokens=12, temperature=temperature, compare=True), timeout=120)
        assert answer.has_adapter and answer.results["tuned"].new_tokens > 0
        if at == 11:  # the quick eval: held-out rows summarized by the live adapter, the run still paused
            scored = engine.call(rq.QuickEval(rows=2), timeout=180)
            assert scored.step == paused.step and scored.rows == 2 and 0 <= scored.rouge_l <= 100
            assert engine.call(rq.GetStatus(), timeout=30).state == "paused"
        assert engine.call(rq.Continue(), timeout=30).continuing
        wait_for(engine, lambda e, s=paused.step: isinstance(e, Resumed) and e.step == s, "the run going on")
    done = wait_for(engine, lambda e: isinstance(e, Done) and e.run == probed.run, "end of the probed run")
    assert done.status == "completed", done.message

    reference, run = losses(RunDir(straight.run_dir)), RunDir(probed.run_dir)
    assert losses(run) == reference, "probing the paused run changed its training"
    probes = [e for e in run.iter_events() if isinstance(e, Probe) and e.kind == "chat"]
    assert len(probes) == 2 and all(p.prompt.startswith("राम") and p.output for p in probes)
    quick = [e for e in run.iter_events() if isinstance(e, Probe) and e.kind == "eval"]
    assert len(quick) == 1 and quick[0].step == probes[1].step and quick[0].output.startswith("ROUGE-L")
    scored_then = [e for e in run.iter_events() if isinstance(e, GenerationEval)]
    assert [(g.step, g.rows) for g in scored_then] == [(probes[1].step, 2)]
    pauses = [e for e in run.iter_events() if isinstance(e, Paused)]
    assert [p.step for p in pauses] == [p.step for p in probes] and pauses[0].step >= 4 and pauses[1].step >= 11


def test_chat_during_training_pauses_the_run_itself(engine, demo_config):
    demo_config.data.eval_fraction = 0.0
    demo_config.training.max_steps = 400
    demo_config.training.save_steps = 1000
    demo_config.output.run_name = "chatted"
    started = engine.call(rq.Train(config=demo_config), timeout=60)
    wait_for(engine, lambda e: isinstance(e, Log) and e.run == started.run and e.step >= 2, "step 2")
    answer = engine.call(rq.Generate(config=demo_config, conversation="राम: नमस्ते", max_new_tokens=6,
                                     temperature=0.0), timeout=120)
    assert answer.results["tuned"].new_tokens > 0
    assert engine.call(rq.GetStatus(), timeout=30).state == "paused", "it stays paused until told to go on"
    engine.call(rq.Stop(), timeout=30)  # a stop reaches a paused run too
    done = wait_for(engine, lambda e: isinstance(e, Done) and e.run == started.run, "the stop")
    assert done.status == "stopped"
