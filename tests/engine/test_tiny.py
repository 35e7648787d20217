"""The tiny demo model is built once, whoever asks for it at the same time, and says how far it is.

The bug: on a first launch the Data pane's preview and its statistics (two engine threads) both asked
for the tokenizer, both built the tiny model (two `.building-*` folders, twice the CPU on 2 cores), and
the status bar said "ready" throughout. Each test uses its own cache folder, and all but one replace the
pre-training (the slow part) by a stand-in that counts builds and lingers, so that callers overlap.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from workbench.engine import tiny

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of this test's own: the stand-in models below must not reach the session's shared cache."""
    root = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_CACHE", str(root))
    return root


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace the pre-training by a 0.5 s stand-in that records each build."""
    calls: list[int] = []

    def pretrain(*args: Any, **kwargs: Any) -> None:
        calls.append(threading.get_ident())
        time.sleep(0.5)

    monkeypatch.setattr(tiny, "_pretrain", pretrain)
    return calls


def assert_usable(path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tokenizer("राम: नमस्ते", return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape[-1] == len(tokenizer)


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob(".building*"))


def test_threads_asking_at_once_build_once(cache: Path, builds: list[int]) -> None:
    barrier = threading.Barrier(3)
    paths: list[Path] = []

    def ask() -> None:
        barrier.wait()
        paths.append(tiny.build_tiny_model())

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(builds) == 1, f"built {len(builds)} times"
    assert len(paths) == 3 and len(set(paths)) == 1
    assert leftovers(cache) == []
    assert_usable(paths[0])


_PROCESS = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from workbench.engine import tiny

    def pretrain(*args, **kwargs):
        with open(os.environ["BUILDS_LOG"], "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(0.5)

    tiny._pretrain = pretrain
    tiny.build_tokenizer(["warm-up"])  # import transformers and tokenizers before the start line
    me, other = Path(sys.argv[1]), Path(sys.argv[2])
    me.touch()
    while not other.exists():  # start together
        time.sleep(0.01)
    messages = []
    path = tiny.build_tiny_model(status=messages.append)
    print(json.dumps({"path": str(path), "messages": messages}))
""")


def test_processes_asking_at_once_build_once(cache: Path, tmp_path: Path) -> None:
    log = tmp_path / "builds.log"
    env = {**os.environ, "BUILDS_LOG": str(log), "PYTHONPATH": str(ROOT / "src")}
    a, b = tmp_path / "a.ready", tmp_path / "b.ready"
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS, str(x), str(y)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for x, y in ((a, b), (b, a))]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert len(log.read_text().split()) == 1, "built more than once"
    assert outs[0]["path"] == outs[1]["path"]
    building = [o for o in outs if any("training the tokenizer" in m for m in o["messages"])]
    waiting = [o for o in outs if any("another workbench process is building it" in m for m in o["messages"])]
    assert len(building) == 1 and len(waiting) == 1, outs  # the second one said why it waited
    assert leftovers(cache) == []
    assert_usable(Path(outs[0]["path"]))


def test_a_failed_build_leaves_no_half_model(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(tiny, "_pretrain", crash)
    with pytest.raises(RuntimeError):
        tiny.build_tiny_model()
    assert not tiny.tiny_model_dir().exists()
    assert leftovers(cache) == []


def test_the_next_build_removes_what_a_killed_one_left(cache: Path, builds: list[int]) -> None:
    stale = cache / f"{tiny.STAGING_PREFIX}dead"  # what a kill -9 during a build leaves behind
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    path = tiny.build_tiny_model()
    assert not stale.exists()
    assert_usable(path)


def test_progress_messages(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real pre-training, shortened and on a smaller model, so the messages are the real ones.
    monkeypatch.setattr(tiny, "RECIPE", tiny.Recipe(hidden_size=32, intermediate_size=64, head_dim=8,
                                                    pretrain_steps=2 * tiny.PROGRESS_EVERY, pretrain_seq=32,
                                                    pretrain_batch=2))
    messages: list[str] = []
    path = tiny.build_tiny_model(status=messages.append)
    steps = 2 * tiny.PROGRESS_EVERY
    assert messages == [
        f"{tiny.BUILDING}: training the tokenizer…",
        f"{tiny.BUILDING}: pre-training step {tiny.PROGRESS_EVERY}/{steps}",
        f"{tiny.BUILDING}: pre-training step {steps}/{steps}",
        f"{tiny.BUILDING}: saving…",
        messages[-1],
    ]
    assert messages[-1].startswith("Built the tiny demo model in ")
    later: list[str] = []
    assert tiny.build_tiny_model(status=later.append) == path and later == []  # built: nothing to say


def test_engine_says_loading_while_preview_and_statistics_wait_for_one_build(
        cache: Path, builds: list[int], monkeypatch: pytest.MonkeyPatch, demo_config: Any) -> None:
    """The first launch's scenario, in the engine: preview and statistics asked at once."""
    from transformers import AutoTokenizer  # noqa: F401  (imported before the threads, as the engine's boot does)

    from workbench.config import config_to_dict
    from workbench.engine.server import Engine
    from workbench.protocol import Error, Result, State, Status, decode_event

    def pretrain(*args: Any, **kwargs: Any) -> None:
        builds.append(threading.get_ident())
        if kwargs.get("say"):
            kwargs["say"](f"{tiny.BUILDING}: pre-training step 1/1")
        time.sleep(0.5)

    monkeypatch.setattr(tiny, "_pretrain", pretrain)
    demo_config.data.max_rows = 8
    out = io.BytesIO()
    engine = Engine()
    engine.attach_writer(out)
    config = config_to_dict(demo_config)
    for rid, cmd, args in (("p", "preview", {"positions": [0]}), ("s", "dataset_stats", {})):
        engine.handle_line(json.dumps({"id": rid, "cmd": cmd, "args": {"config": config, **args}}).encode())

    def events() -> list[Any]:
        return [decode_event(line) for line in out.getvalue().decode().splitlines()]

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(isinstance(e, Result | Error) for e in events()) < 2:
        time.sleep(0.05)
    evs = events()
    assert not [e for e in evs if isinstance(e, Error)], [e for e in evs if isinstance(e, Error)]
    assert {e.id for e in evs if isinstance(e, Result)} == {"p", "s"}
    assert len(builds) == 1
    states = [(e.state, e.detail) for e in evs if isinstance(e, State)]
    assert states and states[0][0] == "loading" and tiny.BUILDING in states[0][1], states
    assert states[-1] == ("ready", ""), states
    last_status = max(i for i, e in enumerate(evs) if isinstance(e, Status))
    assert isinstance(evs[-1], State | Result) and any(
        isinstance(e, State) and e.state == "ready" for e in evs[last_status:])  # ready once the build ended
    messages = [e.message for e in evs if isinstance(e, Status)]
    assert f"{tiny.BUILDING}: pre-training step 1/1" in messages
    assert any(m.startswith("Built the tiny demo model") for m in messages)
    assert engine.state == "ready"
