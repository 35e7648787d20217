"""The real engine process on the tiny Gemma-2 (CPU): train, stop, resume, generate, save."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from workbench import requests as rq
from workbench.client import EngineClient, EngineError
from workbench.config import RunConfig
from workbench.protocol import (
    ChatPath,
    Checkpoint,
    Done,
    Error,
    Log,
    StatsProgress,
    Status,
    Token,
    TrainStart,
    decode_event,
)
from workbench.runs import COMPLETE_MARKER, RunDir

pytestmark = pytest.mark.engine


def wait_done(engine: EngineClient, run_dir: str, timeout: float = 240.0) -> Done:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in list(engine.events):  # type: ignore[attr-defined]
            if isinstance(ev, Done) and ev.run == Path(run_dir).name:
                engine.events.remove(ev)  # type: ignore[attr-defined]
                return ev
        time.sleep(0.1)
    raise AssertionError(f"no Done event for {run_dir} within {timeout} s; log: {engine.log_tail(20)}")


def train(engine: EngineClient, config: RunConfig, **extra) -> tuple[Done, RunDir]:
    started = engine.call(rq.Train(config=config, **extra), timeout=60)
    return wait_done(engine, started.run_dir), RunDir(started.run_dir)


def losses(run: RunDir) -> dict[int, float]:
    return {e.step: e.loss for e in run.iter_events() if isinstance(e, Log) and e.loss is not None}


@pytest.fixture(scope="module")
def trained(engine, tmp_path_factory) -> RunDir:
    """One completed run of the module, with checkpoints at steps 4 and 8."""
    from tests.conftest import ROOT
    from workbench.config import load_config

    config = load_config(ROOT / "configs" / "demo.toml")
    config.output.runs_dir = str(tmp_path_factory.mktemp("trained") / "runs")
    config.output.run_name = "trained"
    config.data.max_rows = 16
    config.data.eval_fraction = 0.0
    config.training.per_device_train_batch_size = 2
    config.training.max_steps = 8
    config.training.save_steps = 4
    config.training.save_total_limit = 0
    done, run = train(engine, config)
    assert done.status == "completed", done.message
    return run


def test_train_loss_falls_and_events_are_durable(engine, demo_config):
    demo_config.training.max_steps = 40
    demo_config.training.save_steps = 20
    demo_config.data.eval_fraction = 0.0
    demo_config.data.max_rows = 8  # a few rows seen many times: the loss must fall clearly, not by noise
    done, run = train(engine, demo_config)
    assert done.status == "completed", done.message
    by_step = losses(run)
    assert sorted(by_step) == list(range(1, 41))
    first = sum(by_step[s] for s in range(1, 6)) / 5
    last = sum(by_step[s] for s in range(36, 41)) / 5
    assert last < first - 0.1, (first, last)
    # every line of events.jsonl parses on its own
    lines = run.events_path.read_text(encoding="utf-8").splitlines()
    assert lines and all(decode_event(line) for line in lines)
    kinds = [json.loads(line)["event"] for line in lines]
    assert kinds.count("train_start") == 1 and kinds[-1] == "done"
    assert "checkpoint" in kinds
    start = next(e for e in run.iter_events() if isinstance(e, TrainStart))
    assert len(start.data_fingerprint) == 64
    # resolved config, complete checkpoints, the final adapter with its chat template
    assert run.config_path.exists()
    assert all((p / COMPLETE_MARKER).exists() for _, p in run.checkpoints())
    adapter = run.adapter_dir
    assert (adapter / "adapter_model.safetensors").exists()
    assert (adapter / "chat_template.jinja").exists()
    assert oct(run.path.stat().st_mode & 0o777) == "0o700"
    assert not run.engine_path.exists(), "engine.json is removed when the run ends"


def test_generate_streams_tokens_tuned_and_base(engine, demo_config):
    answer, events = engine.call_events(rq.Generate(
        config=demo_config, conversation="राम: नमस्ते\nश्याम: कैसे हो?", max_new_tokens=12, temperature=0.0,
        compare=True), timeout=120)
    assert answer.event == "result", answer
    generated = rq.Generated.model_validate(answer.data)
    tokens = [e for e in events if isinstance(e, Token)]
    assert {t.stream for t in tokens} == {"tuned", "base"}
    for stream in ("tuned", "base"):
        streamed = "".join(t.text for t in tokens if t.stream == stream)
        assert streamed == generated.results[stream].text
        assert generated.results[stream].new_tokens > 0


def test_chat_with_a_run_uses_its_weights_and_its_own_config(engine, trained, demo_config):
    # The UI's config names another model: the run's own config (the tiny model) must be used.
    demo_config.model.name = "unsloth/gemma-2-9b"
    generated = engine.call(rq.Generate(config=demo_config, run_dir=str(trained.path), conversation="राम: नमस्ते",
                                        max_new_tokens=8, temperature=0.0), timeout=120)
    assert generated.has_adapter
    status = engine.call(rq.GetStatus())
    assert status.has_adapter and status.model_loaded


def test_stop_mid_run_leaves_a_checkpoint(engine, demo_config):
    demo_config.training.max_steps = 2000
    demo_config.training.save_steps = 1000
    started = engine.call(rq.Train(config=demo_config), timeout=60)
    deadline = time.monotonic() + 120
    while not any(isinstance(e, Log) and e.step >= 3 and e.run == started.run for e in engine.events):
        assert time.monotonic() < deadline, engine.log_tail(20)
        time.sleep(0.05)
    assert RunDir(started.run_dir).engine_alive(), "a live run names its engine"
    assert engine.call(rq.Stop(), timeout=30).stopping is True
    done = wait_done(engine, started.run_dir)
    assert done.status == "stopped"
    assert 3 <= done.step < 2000
    run = RunDir(started.run_dir)
    assert run.newest_checkpoint() is not None
    assert run.newest_checkpoint().name == f"checkpoint-{done.step}"
    assert any(isinstance(e, Checkpoint) for e in run.iter_events())


def test_resume_reproduces_the_uninterrupted_run(engine, demo_config):
    demo_config.training.max_steps = 16
    demo_config.training.save_steps = 6
    demo_config.training.save_total_limit = 0
    demo_config.data.eval_fraction = 0.0
    demo_config.output.run_name = "straight"
    done, straight = train(engine, demo_config)
    assert done.status == "completed"
    reference = losses(straight)
    # an interrupted run: delete everything after checkpoint 6, as if it had died there
    demo_config.output.run_name = "interrupted"
    done, run = train(engine, demo_config)
    assert done.status == "completed"
    for step, path in run.checkpoints():
        if step > 6:
            shutil.rmtree(path)
    shutil.rmtree(run.adapter_dir)
    elapsed_at_6 = next(e.elapsed_s for e in run.iter_events() if isinstance(e, Log) and e.step == 6)
    done, resumed = train(engine, demo_config, resume=True, run_dir=str(run.path))
    assert done.status == "completed", done.message
    starts = [e for e in resumed.iter_events() if isinstance(e, TrainStart)]
    assert starts[-1].start_step == 6
    after: dict[int, Log] = {}
    seen_second_start = False
    for e in resumed.iter_events():
        if isinstance(e, TrainStart):
            seen_second_start = e.start_step == 6
        elif isinstance(e, Log) and seen_second_start:
            after[e.step] = e
    assert sorted(after) == list(range(7, 17))
    for step in range(7, 17):
        assert after[step].loss == pytest.approx(reference[step], rel=1e-4, abs=1e-4), step
    # the clock continues from where the run left off, across the resume
    assert after[7].elapsed_s > elapsed_at_6
    said = [e.message for e in resumed.iter_events() if isinstance(e, Status)]
    assert any(m.startswith("Resuming interrupted from checkpoint-6 (step 6 of 16)") for m in said), said


def test_resume_refuses_changed_settings_and_applies_a_longer_run(engine, demo_config):
    demo_config.training.max_steps = 4
    demo_config.training.save_steps = 2
    demo_config.data.eval_fraction = 0.0
    demo_config.output.run_name = "edited"
    done, run = train(engine, demo_config)
    assert done.status == "completed"
    # a changed learning rate would be silently ignored by the trainer (the scheduler keeps its own):
    changed = demo_config.model_copy(deep=True)
    changed.training.learning_rate = demo_config.training.learning_rate * 2
    changed.lora.r = 8
    with pytest.raises(EngineError) as refused:
        engine.call(rq.Train(config=changed, resume=True, run_dir=str(run.path)), timeout=60)
    assert refused.value.error.type == "resume_config"
    message = refused.value.error.message
    old_lr, new_lr = demo_config.training.learning_rate, changed.training.learning_rate
    assert f"training.learning_rate {old_lr!r} → {new_lr!r}" in message and "lora.r 16 → 8" in message
    assert run.summary().status == "completed", "a refused resume leaves the run as it was"
    # longer is fine: applied, and said
    longer = demo_config.model_copy(deep=True)
    longer.training.max_steps = 6
    done, resumed = train(engine, longer, resume=True, run_dir=str(run.path))
    assert done.status == "completed" and done.step == 6, done.message
    said = [e.message for e in resumed.iter_events() if isinstance(e, Status)]
    assert any("training.max_steps 4 → 6" in m for m in said), said


def test_dataset_stats_streams_progress(engine, demo_config):
    answer, events = engine.call_events(rq.Statistics(config=demo_config), timeout=120)
    stats = rq.StatsAnswer.model_validate(answer.data).stats
    assert stats.valid_rows == stats.rows > 0
    assert any(isinstance(e, StatsProgress) for e in events)


def test_preview_by_position_and_by_file_row(engine, demo_config):
    answer = engine.call(rq.Preview(config=demo_config, positions=[1], file_rows=[3]), timeout=120)
    assert [item.position for item in answer.items] == [1, 2]
    assert [item.row for item in answer.items] == [2, 3]
    assert answer.items[0].sample is not None and answer.items[0].sample.input_ids


def test_save_refuses_to_overwrite_without_consent(engine, trained, tmp_path):
    target = tmp_path / "exists"
    target.mkdir()
    with pytest.raises(EngineError, match="already exists"):
        engine.call(rq.Save(kind="lora", path=str(target), run_dir=str(trained.path)), timeout=60)
    saved = engine.call(rq.Save(kind="lora", path=str(target), run_dir=str(trained.path), overwrite=True), timeout=180)
    assert saved.verification is not None and saved.verification.passed
    assert (target / "adapter_model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_merged_export_of_a_run_is_merged_and_answers_as_the_workbench(engine, trained, tmp_path):
    """Issue 10, bug 1: the merged export of an opened run held lora_A / lora_B / base_layer keys, and
    transformers loaded it with those layers initialised at random, without an error."""
    target = tmp_path / "merged"
    saved = engine.call(rq.Save(kind="merged_16bit", path=str(target), run_dir=str(trained.path), checkpoint=4),
                        timeout=300)
    from safetensors import safe_open

    keys = [k for shard in target.glob("*.safetensors") for k in safe_open(str(shard), framework="pt").keys()]  # noqa: SIM118
    assert keys and not [k for k in keys if "lora_" in k or "base_layer" in k]
    check = saved.verification
    assert check is not None and check.loader.startswith("transformers")
    # The tiny base is stored in 32-bit, so its merge keeps 32-bit: the same greedy tokens, every one.
    assert check.tokens_equal == check.tokens_compared == 32, check
    meta = json.loads((target / "workbench.json").read_text(encoding="utf-8"))
    assert meta["run"] == "trained" and meta["step"] == 4 and meta["checkpoint"] == "checkpoint-4"
    assert meta["verification"]["passed"] is True


def test_adapter_export_names_its_run_and_step(engine, trained, tmp_path):
    saved = engine.call(rq.Save(kind="lora", path=str(tmp_path / "lora"), run_dir=str(trained.path)), timeout=180)
    assert saved.step == 8 and saved.checkpoint is None and saved.run == "trained"
    check = saved.verification
    assert check is not None and check.tokens_equal == check.tokens_compared > 0, check  # same numbers: identical
    meta = json.loads((tmp_path / "lora" / "workbench.json").read_text(encoding="utf-8"))
    assert (meta["run"], meta["step"], meta["checkpoint"]) == ("trained", 8, None)


def test_export_of_a_missing_checkpoint_says_which_exist(engine, trained, tmp_path):
    with pytest.raises(EngineError) as failed:
        engine.call(rq.Save(kind="lora", path=str(tmp_path / "x"), run_dir=str(trained.path), checkpoint=5))
    assert "no complete checkpoint at step 5" in str(failed.value) and "4, 8" in str(failed.value)
    assert not (tmp_path / "x").exists()


def test_bad_model_gives_a_clear_error(engine, demo_config, tmp_path):
    demo_config.model.name = str(tmp_path / "no-such-model")
    with pytest.raises(EngineError) as failed:
        engine.call(rq.Load(config=demo_config), timeout=120)
    assert "no-such-model" in str(failed.value) and "Traceback" not in str(failed.value)


def test_bad_arguments_name_the_field(engine):
    final, _ = engine.call_events(rq.Ping())
    assert final.event == "result"
    from workbench.protocol import Request

    # a request built by hand, as another client might send it
    engine._write(Request(id="x1", cmd="generate", args={"config": {"lora": {"r": 0}}, "conversation": "a"}))
    deadline = time.monotonic() + 10
    while not any(isinstance(e, Error) and e.id == "x1" for e in engine.events):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    error = next(e for e in engine.events if isinstance(e, Error) and e.id == "x1")
    assert error.type == "config" and "lora.r" in error.message


def test_a_run_exported_twice_gives_byte_identical_metadata(engine, trained, tmp_path):
    for name in ("first", "second"):
        engine.call(rq.Save(kind="lora", path=str(tmp_path / name), run_dir=str(trained.path)), timeout=180)
    for meta in ("workbench.json", "fingerprint.json", "chat_template.jinja", "workbench-config.toml", "README.md"):
        assert (tmp_path / "first" / meta).read_bytes() == (tmp_path / "second" / meta).read_bytes(), meta
    from workbench import fingerprint

    assert fingerprint.load(tmp_path / "first") == fingerprint.load(trained.path), "the export prompts as trained"


def test_an_export_whose_tokenizer_differs_from_the_runs_is_refused(engine, trained, tmp_path):
    from workbench import fingerprint

    recorded = fingerprint.load(trained.path)
    assert recorded is not None
    changed = dict(recorded.special_ids, eos=recorded.special_ids["eos"] + 1)  # as if the run had another EOS
    fingerprint.save(fingerprint.TemplateFingerprint.build(changed, recorded.vocab_size, recorded.vocab_sha256,
                                                           recorded.chat_template_sha256, recorded.rendered_probe),
                     trained.path)
    try:
        with pytest.raises(EngineError) as refused:
            engine.call(rq.Save(kind="lora", path=str(tmp_path / "x"), run_dir=str(trained.path)), timeout=180)
        assert f"EOS id {changed['eos']} in the run vs {recorded.special_ids['eos']} in the export" in str(refused.value)
        assert not (tmp_path / "x").exists()
    finally:
        fingerprint.save(recorded, trained.path)


def _chat_paths(engine: EngineClient) -> list[ChatPath]:
    return [e for e in list(engine.events) if isinstance(e, ChatPath)]  # type: ignore[attr-defined]


def test_chat_prepares_the_fast_path_and_answers_from_it(engine, trained, demo_config):
    """Issue 12, part 4: opening Chat loads the run's model and builds the fast decoder beside it (on the CPU
    a merged copy, not compiled); the tuned answer comes from it, the base answer from the standard path;
    `model.chat_path = standard` turns it off; a training run drops it (its weights would go stale)."""
    prepared = engine.call(rq.PrepareChat(config=demo_config, run_dir=str(trained.path)), timeout=120)
    assert prepared.has_adapter and prepared.fast_chat.startswith("fast chat"), prepared
    deadline = time.monotonic() + 60
    while not any(e.state == "ready" for e in _chat_paths(engine)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any(e.state == "ready" and "merged copy" in e.line for e in _chat_paths(engine)), _chat_paths(engine)

    answer, events = engine.call_events(rq.Generate(
        config=demo_config, run_dir=str(trained.path), conversation="राम: नमस्ते\nश्याम: कैसे हो?", max_new_tokens=12,
        temperature=0.0, compare=True), timeout=120)
    generated = rq.Generated.model_validate(answer.data)
    assert generated.results["tuned"].path == "merged copy"
    assert generated.results["base"].path == "standard"
    assert generated.fast_chat.startswith("fast chat ready"), generated.fast_chat
    tokens = [e for e in events if isinstance(e, Token)]
    for stream in ("tuned", "base"):
        assert "".join(t.text for t in tokens if t.stream == stream) == generated.results[stream].text
    assert generated.results["tuned"].new_tokens > 0

    demo_config.model.chat_path = "standard"
    standard = engine.call(rq.Generate(config=demo_config, run_dir=str(trained.path), conversation="राम: नमस्ते",
                                       max_new_tokens=6, temperature=0.0), timeout=120)
    assert standard.results["tuned"].path == "standard"
    assert "model.chat_path = standard" in standard.fast_chat

    demo_config.model.chat_path = "auto"
    engine.call(rq.PrepareChat(config=demo_config, run_dir=str(trained.path)), timeout=120)
    engine.events.clear()  # type: ignore[attr-defined]
    demo_config.training.max_steps = 1
    demo_config.data.max_rows = 4
    demo_config.data.eval_fraction = 0.0
    done, _run = train(engine, demo_config)
    assert done.status == "completed", done.message
    assert any(e.state == "off" for e in _chat_paths(engine)), "training drops the fast decoder"
