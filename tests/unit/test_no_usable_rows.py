"""A dataset with no usable row is an error everywhere it is used: `workbench preview` (exit 2), training
data preparation, and the engine's preview and statistics commands (the Data pane shows the message).
And a chat-format file read through the same paths trains. The tokenizer is conftest's tiny BPE, put in
place of the model's, so these run in the unit tier without the engine process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from workbench import cli
from workbench import requests as rq
from workbench.config import RunConfig, load_config
from workbench.data import DataError
from workbench.engine import train
from workbench.engine.server import Engine

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.toml")
MESSAGES = [
    [{"role": "user", "content": "माँ: आज शाम को मौसी आ रही हैं।"}, {"role": "assistant", "content": "मौसी आएँगी।"}],
    [{"role": "user", "content": "अमित: कल meeting है?"}, {"role": "assistant", "content": "कल meeting है।"}],
    [{"role": "user", "content": "ग्राहक: 150 दे दूँगा।"}, {"role": "assistant", "content": "मोलभाव हुआ।"}],
]


@pytest.fixture
def tokenizer_in_place(monkeypatch: pytest.MonkeyPatch, hindi_tokenizer: Any) -> Any:
    monkeypatch.setattr("workbench.engine.model.load_tokenizer", lambda config: hindi_tokenizer)
    return hindi_tokenizer


@pytest.fixture
def messages_file(tmp_path: Path) -> Path:
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in MESSAGES), encoding="utf-8")
    return path


@pytest.fixture
def numbers_file(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.jsonl"
    path.write_text("".join(json.dumps({"dialogue": i, "summary": "x"}) + "\n" for i in range(3)), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ preview

def test_preview_of_a_dataset_with_no_usable_row_exits_2(
    tokenizer_in_place: Any, numbers_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: "3 rows, 0 usable" and exit 0.
    code = cli.main(["preview", "--config", DEMO, "--data", str(numbers_file), "--rows", "1"])
    out, err = capsys.readouterr()
    assert code == 2, out
    assert f"{numbers_file}: none of its 3 rows is usable" in err
    assert "row 1: non string: dialogue is a int, not text" in err
    assert "0 usable" not in out and "Traceback" not in err


def test_preview_reads_a_messages_column(
    tokenizer_in_place: Any, messages_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["preview", "--config", DEMO, "--data", str(messages_file), "--input-column", "messages",
                     "--rows", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "3 rows, 3 usable" in out
    assert "'messages' holds chat turns" in out
    assert "### बातचीत:" in out and "मौसी आएँगी।<eos>" in out  # row 1 in the demo's instruction template


# ------------------------------------------------------------------------------------------ training

def test_prepare_data_refuses_a_dataset_with_no_usable_row(hindi_tokenizer: Any, numbers_file: Path) -> None:
    config = load_config(DEMO)
    config.data.source = str(numbers_file)
    config.data.skip_bad_rows = True  # skipping every row leaves nothing: still an error, naming the rows
    with pytest.raises(DataError, match=r"numbers\.jsonl: none of its 3 rows is usable.*row 1: non string"):
        train.prepare_data(config, hindi_tokenizer)


def test_prepare_data_trains_multi_turn_chat_rows(hindi_tokenizer: Any, tmp_path: Path) -> None:
    path = tmp_path / "multi.jsonl"
    rows = [[*m, {"role": "user", "content": "और?"}, {"role": "assistant", "content": "बस।"}] for m in MESSAGES]
    path.write_text("".join(json.dumps({"messages": r}, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    config = load_config(DEMO)
    config.data.source, config.data.template, config.data.eval_fraction = str(path), "gemma_chat", 0.0
    prepared = train.prepare_data(config, hindi_tokenizer)
    assert len(prepared.train) == 3 and all(s.n_replies == 2 for s in prepared.train)
    config.data.template = "instruction"
    with pytest.raises(Exception, match=r"row 1: multi turn: .*use the gemma_chat template"):
        train.prepare_data(config, hindi_tokenizer)


# ------------------------------------------------------------------------------------------ engine

def _engine(tokenizer: Any) -> Engine:
    engine = Engine()
    engine.data.tokenizer = lambda config, loaded: tokenizer  # type: ignore[method-assign]
    return engine


def _config(source: Path, **data: Any) -> RunConfig:
    config = load_config(DEMO)
    config.data.source = str(source)
    for key, value in data.items():
        setattr(config.data, key, value)
    return config


@pytest.mark.parametrize("cmd", ["preview", "dataset_stats"])
def test_engine_commands_refuse_a_dataset_with_no_usable_row(hindi_tokenizer: Any, numbers_file: Path, cmd: str) -> None:
    engine = _engine(hindi_tokenizer)
    config = _config(numbers_file)
    with pytest.raises(DataError, match=r"none of its 3 rows is usable"):
        if cmd == "preview":
            engine.preview(rq.Preview(config=config, positions=[0]), "1")
        else:
            engine.dataset_stats(rq.Statistics(config=config), "1")
    assert engine._cancels == {}


def test_engine_preview_of_a_chat_row(hindi_tokenizer: Any, messages_file: Path) -> None:
    engine = _engine(hindi_tokenizer)
    answer = engine.preview(rq.Preview(config=_config(messages_file, input_column="messages", template="gemma_chat"),
                                       positions=[0]), "1")
    item = answer.items[0]
    assert item.issue is None and item.sample is not None
    assert item.sample.text.startswith("<bos><start_of_turn>user\n")
    # the Chat pane fills its input from these: text, not the list of turns
    assert item.conversation == MESSAGES[0][0]["content"] and item.summary == MESSAGES[0][1]["content"]
    stats = engine.dataset_stats(rq.Statistics(config=_config(messages_file, input_column="messages")), "1").stats
    assert stats.valid_rows == 3
