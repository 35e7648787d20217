"""workbench.protocol (JSON-lines events and requests) and workbench.runs (run folders)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import stat
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from workbench import protocol as p
from workbench.config import RunConfig, config_from_dict, save_config
from workbench.runs import (
    COMPLETE_MARKER,
    RunDir,
    free_bytes,
    list_runs,
    live_runs,
    new_run_name,
    pid_alive,
)

T = 1_700_000_000.25

SAMPLE_EVENTS: list[BaseModel] = [
    p.Hello(t=T, pid=1234, device="cuda:0 (NVIDIA H100 80GB HBM3)", versions={"torch": "2.5.1", "unsloth": "2026.10"}),
    p.State(t=T, state="training", detail="step 3"),
    p.Status(t=T, id="r1", message="First step: compiling GPU kernels\nthis takes minutes"),
    p.Result(t=T, id="r2", data={"ok": True, "nested": {"list": [1, 2.5, "तीन"]}}),
    p.Error(t=T, id="r3", type="OutOfMemory", message="CUDA out of memory", hint="halve the batch", fatal=True),
    p.TrainStart(t=T, run="run-a", total_steps=60, start_step=20, run_dir="/runs/run-a", train_rows=100, eval_rows=10,
                 effective_batch=8, trainable_params=54_018_048, total_params=9_295_724_032,
                 flops_per_token=39.1e9, peak_tflops=989.0),
    p.GenerationEval(t=T, run="run-a", step=20, rouge_l=31.25, chrf=40.5, rows=4, sample="राम और सीता बाज़ार जाएँगे।"),
    p.BestCheckpoint(t=T, run="run-a", step=20, metric="rougeL", value=31.25, path="/runs/run-a/checkpoints/checkpoint-20"),
    p.Paused(t=T, run="run-a", step=12),
    p.Resumed(t=T, run="run-a", step=12, paused_s=4.5),
    p.Probe(t=T, run="run-a", step=12, prompt="राम: नमस्ते", output="राम ने नमस्ते कहा।"),
    p.ChatPath(state="ready", line="fast chat ready: bf16 merged, compiled (built in 1.4 s)"),
    p.EvalProgress(t=T, id="r9", done=8, total=24, folder="/runs/run-a/evals/final-adapter-24rows-vs-base"),
    p.Log(t=T, run="run-a", step=5, total_steps=60, loss=1.2345678901234567, learning_rate=2e-4, grad_norm=0.5,
          epoch=0.25, tokens=4096, tokens_per_s=1234.5, mfu=0.42, elapsed_s=12.5, eta_s=100.0),
    p.Eval(t=T, run="run-a", step=20, eval_loss=0.987),
    p.Memory(t=T, run="run-a", phase="after", gpu_name="NVIDIA H100 80GB HBM3", total_gib=79.1, reserved_before_gib=6.2,
             reserved_gib=10.0, peak_gib=12.3, lora_gib=6.1),
    p.Checkpoint(t=T, run="run-a", step=20, path="/runs/run-a/checkpoints/checkpoint-20"),
    p.Done(t=T, run="run-a", status="completed", step=60, total_steps=60, final_loss=0.5, adapter_path="/a",
           message="ok", runtime_s=321.0),
    p.Token(t=T, id="g1", text="नमस्ते\n\"quoted\" <end_of_turn>", stream="base"),
    p.StatsProgress(t=T, id="s1", done=5, total=10),
]


def test_samples_cover_every_event_type() -> None:
    union = typing.get_args(typing.get_args(p.Event)[0])
    assert {type(e) for e in SAMPLE_EVENTS} == set(union)


@pytest.mark.parametrize("event", SAMPLE_EVENTS, ids=lambda e: type(e).__name__)
def test_event_encodes_to_one_line_and_decodes_equal(event: BaseModel) -> None:
    line = p.encode(event)
    assert line.endswith("\n") and line.count("\n") == 1
    assert "\r" not in line
    assert isinstance(json.loads(line), dict)
    back = p.decode_event(line)
    assert type(back) is type(event)
    assert back == event
    assert p.decode_event(line.encode("utf-8")) == event


def test_defaults_and_extras() -> None:
    ev = p.decode_event('{"event": "state", "state": "ready", "future_field": [1]}')
    assert isinstance(ev, p.State)
    assert ev.detail == "" and ev.run is None and ev.id is None
    assert ev.model_extra == {"future_field": [1]}
    assert isinstance(ev.t, float)
    assert p.Hello(pid=1, device="cpu").protocol == p.PROTOCOL_VERSION


def test_memory_percentages() -> None:
    m = p.Memory(phase="step", gpu_name="x", total_gib=80.0, reserved_before_gib=0, reserved_gib=0, peak_gib=20.0,
                 lora_gib=8.0)
    assert m.peak_pct == 25.0 and m.lora_pct == 10.0
    zero = m.model_copy(update={"total_gib": 0.0})
    assert zero.peak_pct == 0.0 and zero.lora_pct == 0.0


def test_nan_loss_survives_the_wire() -> None:
    back = p.decode_event(p.encode(p.Log(step=3, total_steps=10, loss=float("nan"))))
    assert isinstance(back, p.Log)
    assert back.loss is not None and math.isnan(back.loss)


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "   ",
        "not json",
        "{",
        "null",
        "[]",
        "42",
        "{}",
        '{"event": "nope"}',
        '{"event": "log"}',
        '{"event": "log", "step": "three", "total_steps": 10}',
        '{"event": "state", "state": "dancing"}',
        '{"event": "done", "status": "exploded"}',
        '{"event": "token"}',
        '{"event": "hello", "pid": 1}',
        b"\xff\xfe\x00",
        b'{"event": "status", "message": "\xff"}',
        '{"event": "status", "message": "x"',
    ],
)
def test_decode_junk_raises_protocol_error(junk: str | bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.decode_event(junk)


@settings(max_examples=200, deadline=None)
@given(junk=st.text(max_size=80) | st.binary(max_size=80))
def test_decode_random_junk_raises_only_protocol_error(junk: str | bytes) -> None:
    try:
        ev = p.decode_event(junk)
    except p.ProtocolError:
        return
    assert isinstance(ev, BaseModel)


def test_request_round_trip_and_junk() -> None:
    req = p.Request(id="r7", cmd="train", args={"config": {"lora": {"r": 8}}, "run_dir": "/x"})
    line = p.encode(req)
    assert line.count("\n") == 1
    assert p.decode_request(line) == req
    assert p.decode_request('{"id": "a", "cmd": "ping"}').args == {}
    for junk in ['{"id": "a", "cmd": "fly"}', '{"cmd": "ping"}', '{"id": "a", "cmd": "ping", "x": 1}', "nope", ""]:
        with pytest.raises(p.ProtocolError):
            p.decode_request(junk)


# -------------------------------------------------------------------------------------------- runs

def test_create_makes_a_private_folder(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        run = RunDir.create(tmp_path / "runs", "my-run")
    finally:
        os.umask(old)
    assert run.path == tmp_path / "runs" / "my-run"
    assert run.name == "my-run"
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o700
    # an existing, too open folder is tightened
    os.chmod(run.path, 0o755)
    RunDir.create(tmp_path / "runs", "my-run")
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o700


def test_layout(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    assert run.events_path == tmp_path / "r" / "events.jsonl"
    assert run.config_path == tmp_path / "r" / "config.toml"
    assert run.checkpoints_dir == tmp_path / "r" / "checkpoints"
    assert run.adapter_dir == tmp_path / "r" / "adapter"
    assert run.engine_path == tmp_path / "r" / "engine.json"


def test_append_and_iter_events_round_trip(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "r")
    assert run.events() == []
    for ev in SAMPLE_EVENTS:
        run.append(ev)
    assert run.events() == SAMPLE_EVENTS
    assert run.events_path.read_bytes().count(b"\n") == len(SAMPLE_EVENTS)
    assert stat.S_IMODE(run.events_path.stat().st_mode) & 0o077 == 0


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "r")
    run.append(SAMPLE_EVENTS[5])
    run.append(SAMPLE_EVENTS[6])
    whole = p.encode(SAMPLE_EVENTS[10]).encode("utf-8")
    with open(run.events_path, "ab") as fh:
        fh.write(whole[: len(whole) // 2])
    assert run.events() == [SAMPLE_EVENTS[5], SAMPLE_EVENTS[6]]
    # a torn multi-byte character and a foreign line are skipped as well
    with open(run.events_path, "ab") as fh:
        fh.write(b"\nnot an event\n" + "{\"event\": \"status\", \"message\": \"नम".encode()[:-1])
    assert run.events() == [SAMPLE_EVENTS[5], SAMPLE_EVENTS[6]]
    assert run.summary().status == "interrupted"


def test_event_appended_after_a_torn_line_is_kept(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "r")
    run.append(SAMPLE_EVENTS[5])
    whole = p.encode(SAMPLE_EVENTS[6]).encode("utf-8")
    with open(run.events_path, "ab") as fh:
        fh.write(whole[: len(whole) // 2])  # the crash
    run.append(SAMPLE_EVENTS[10])  # the resumed run goes on writing
    assert run.events() == [SAMPLE_EVENTS[5], SAMPLE_EVENTS[10]]


def _checkpoint(run: RunDir, step: int, complete: bool) -> Path:
    path = run.checkpoints_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"w")
    if complete:
        (path / COMPLETE_MARKER).write_text("", encoding="utf-8")
    return path


def test_checkpoints_only_count_complete_ones(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "r")
    assert run.checkpoints() == [] and run.newest_checkpoint() is None
    c3 = _checkpoint(run, 3, complete=True)
    c10 = _checkpoint(run, 10, complete=True)
    c20 = _checkpoint(run, 20, complete=False)
    (run.checkpoints_dir / "checkpoint-x").mkdir()
    (run.checkpoints_dir / "checkpoint-99").write_text("a file", encoding="utf-8")
    assert run.checkpoints() == [(3, c3), (10, c10)]  # numeric order, not text order
    assert run.checkpoints(complete_only=False) == [(3, c3), (10, c10), (20, c20)]
    assert run.newest_checkpoint() == c10
    assert run.discard_incomplete_checkpoints() == [c20]
    assert not c20.exists() and c10.exists() and c3.exists()
    assert (run.checkpoints_dir / "checkpoint-x").exists()
    assert run.discard_incomplete_checkpoints() == []
    assert run.summary().checkpoint == c10


def test_engine_info(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "r")
    assert run.engine_info() is None and not run.engine_alive()
    run.write_engine_info(os.getpid(), "/tmp/s.sock")
    assert run.engine_info() == {"pid": os.getpid(), "socket": "/tmp/s.sock"}
    assert run.engine_alive()
    run.clear_engine_info()
    run.clear_engine_info()
    assert run.engine_info() is None
    run.engine_path.write_text("{torn", encoding="utf-8")
    assert run.engine_info() is None and not run.engine_alive()


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-5)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)


def _started(run: RunDir, t: float, total: int = 10) -> None:
    run.append(p.TrainStart(t=t, total_steps=total, run_dir=str(run.path), train_rows=5, effective_batch=2))


def test_summary_statuses(tmp_path: Path) -> None:
    new = RunDir.create(tmp_path, "new")
    s = new.summary()
    assert (s.status, s.step, s.total_steps, s.final_loss, s.started, s.model) == ("new", 0, 0, None, None, "?")

    done = RunDir.create(tmp_path, "done")
    save_config(config_from_dict({"model": {"name": "unsloth/gemma-2-2b"}}), done.config_path)
    _started(done, T)
    done.append(p.Log(step=5, total_steps=10, loss=1.5))
    done.append(p.Log(step=10, total_steps=10, loss=0.9))
    done.append(p.Done(status="completed", step=10, total_steps=10))
    s = done.summary()
    assert (s.status, s.step, s.total_steps, s.final_loss, s.started) == ("completed", 10, 10, 0.9, T)
    assert s.model == "unsloth/gemma-2-2b"
    assert s.name == "done" and s.path == done.path

    stopped = RunDir.create(tmp_path, "stopped")
    _started(stopped, T)
    stopped.append(p.Log(step=4, total_steps=10, loss=2.0))
    stopped.append(p.Done(status="stopped", step=4, final_loss=1.75))
    s = stopped.summary()
    assert (s.status, s.step, s.final_loss) == ("stopped", 4, 1.75)

    crashed = RunDir.create(tmp_path, "crashed")
    _started(crashed, T)
    crashed.append(p.Log(step=3, total_steps=10, loss=2.5))
    assert crashed.summary().status == "interrupted"
    assert crashed.summary().final_loss == 2.5
    crashed.write_engine_info(os.getpid(), None)
    assert crashed.summary().status == "running"

    resumed = RunDir.create(tmp_path, "resumed")
    _started(resumed, T)
    resumed.append(p.Done(status="failed", step=2, message="OOM"))
    _started(resumed, T + 100)
    s = resumed.summary()
    assert s.status == "interrupted" and s.started == T


def test_list_runs_newest_first(tmp_path: Path) -> None:
    assert list_runs(tmp_path / "missing") == []
    for name, t in (("b", T + 10), ("a", T + 30), ("c", T + 20)):
        run = RunDir.create(tmp_path, name)
        _started(run, t)
        run.append(p.Done(status="completed"))
    RunDir.create(tmp_path, "no-events")
    (tmp_path / "stray.txt").write_text("x", encoding="utf-8")
    assert [r.name for r in list_runs(tmp_path)] == ["a", "c", "b"]
    assert live_runs(tmp_path) == []
    live = RunDir.create(tmp_path, "live")
    _started(live, T)
    live.write_engine_info(os.getpid(), None)
    assert [r.name for r in live_runs(tmp_path)] == ["live"]


NOW = dt.datetime(2025, 1, 2, 3, 4, 5)
SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*-\d{8}-\d{6}$")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("unsloth/gemma-2-9b", "gemma-2-9b-20250102-030405"),
        ("builtin:tiny-gemma2", "tiny-gemma2-20250102-030405"),
        ("/home/me/models/my model (v2)/", "my-model-v2-20250102-030405"),
        ("..", "run-20250102-030405"),
        ("मॉडल", "run-20250102-030405"),
        ("", "run-20250102-030405"),
    ],
)
def test_new_run_name(model: str, expected: str) -> None:
    assert new_run_name(model, NOW) == expected


@settings(max_examples=300, deadline=None)
@given(model=st.text(max_size=40))
def test_new_run_name_is_always_filesystem_safe(model: str) -> None:
    name = new_run_name(model, NOW)
    assert SAFE.match(name), name
    assert config_from_dict({"output": {"run_name": name}}).output.run_name == name


def test_new_run_name_is_usable_as_a_folder(tmp_path: Path) -> None:
    for model in ("unsloth/gemma-2-9b", "builtin:tiny-gemma2"):
        run = RunDir.create(tmp_path, new_run_name(model))
        assert run.path.parent == tmp_path and run.path.is_dir()


def test_free_bytes_of_a_missing_path(tmp_path: Path) -> None:
    assert free_bytes(tmp_path / "not" / "yet") > 0


def test_run_config_model_name_in_summary_tolerates_bad_config(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "r")
    run.config_path.write_text("[[[", encoding="utf-8")
    assert run.summary().model == "?"
    save_config(RunConfig(), run.config_path)
    assert run.summary().model == "unsloth/gemma-2-9b"


def test_every_command_on_the_wire_has_typed_arguments_and_an_answer() -> None:
    from typing import get_args

    from workbench.requests import COMMANDS, Answer

    assert set(get_args(p.Command)) == set(COMMANDS)
    for name, args in COMMANDS.items():
        assert args.cmd == name and issubclass(args.answer, Answer), name
