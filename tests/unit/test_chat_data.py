"""Chat-format rows (TRL `messages`, ShareGPT `conversations`): how they are detected, validated with row
numbers, rendered and masked (every assistant turn trained), and their statistics. The tokenizer is the
tiny byte-level BPE of conftest."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench import data as wd
from workbench.data import DataError, Example, LoadedDataset
from workbench.templates import Message, render
from workbench.tokenview import sample_counts, sample_text

INSTRUCTION = "नीचे दी गई बातचीत का हिंदी में संक्षिप्त सारांश लिखिए।"
EXCHANGES = [
    ("माँ: आज शाम को मौसी आ रही हैं।\nरिया: ठीक है माँ।", "मौसी आज शाम आएँगी।"),
    ("अमित: कल meeting कितने बजे है?\nसीमा: सुबह 10 बजे।", "अमित और सीमा कल सुबह 10 बजे मिलेंगे।"),
    ("दुकानदार: यह किताब 200 रुपये की है।\nग्राहक: 150 दे दूँगा।", "ग्राहक मोलभाव करता है।"),
]
MESSAGES_ROWS = [
    {"messages": [{"role": "user", "content": c}, {"role": "assistant", "content": s}]} for c, s in EXCHANGES
]
SHAREGPT_ROWS = [
    {"conversations": [{"from": "human", "value": c}, {"from": "gpt", "value": s}]} for c, s in EXCHANGES
]
MULTI_TURN = [
    {"role": "system", "content": "तुम एक सहायक हो।"},
    {"role": "user", "content": "नमस्ते! आज मौसम कैसा है?"},
    {"role": "assistant", "content": "आज धूप है।"},
    {"role": "user", "content": "और कल?"},
    {"role": "assistant", "content": "कल बारिश होगी।"},
]


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _load(tmp_path: Path, rows: list[Any], name: str = "chat.jsonl") -> LoadedDataset:
    return wd.load_rows(str(_write_jsonl(tmp_path / name, rows)))


# ------------------------------------------------------------------------------------------ detection

def test_messages_column_named_as_input_column_is_read_as_chat(tmp_path: Path, hindi_tokenizer: Any) -> None:
    # The bug: `--input-column messages` reported "3 rows, 0 usable" (each row "not text").
    ds = _load(tmp_path, [{**r, "summary": "unused"} for r in MESSAGES_ROWS])
    examples, issues = wd.validate_rows(ds, "messages", "summary")
    assert issues == []
    assert [(e.conversation, e.summary) for e in examples] == EXCHANGES
    assert [e.turns[0].role for e in examples] == ["user"] * 3
    stats = wd.compute_stats(ds, hindi_tokenizer, "messages", "summary", "gemma_chat", INSTRUCTION, 1024)
    assert stats.valid_rows == 3
    assert stats.summary_lines()[0].startswith("3 rows, 3 usable")
    notes = "\n".join(stats.notes)
    assert "'messages' holds chat turns: role / content" in notes
    assert "'summary' is not used" in notes


def test_chat_column_is_found_when_the_configured_columns_do_not_exist(tmp_path: Path) -> None:
    ds = _load(tmp_path, MESSAGES_ROWS)
    layout = wd.detect_layout(ds, "dialogue", "summary")
    assert layout.chat_column == "messages"
    assert "no 'dialogue' or 'summary' column" in layout.note
    examples, issues = wd.validate_rows(ds, "dialogue", "summary")
    assert len(examples) == 3 and issues == []


def test_sharegpt_conversations(tmp_path: Path) -> None:
    rows = [{"conversations": [{"from": "system", "value": "सिस्टम"}, *r["conversations"]]} for r in SHAREGPT_ROWS]
    ds = _load(tmp_path, rows)
    layout = wd.detect_layout(ds, "dialogue", "summary")
    assert layout.chat_column == "conversations" and "ShareGPT turns: from / value" in layout.note
    examples, issues = wd.validate_rows(ds, "dialogue", "summary")
    assert issues == []
    assert examples[0].turns == (
        Message("system", "सिस्टम"), Message("user", EXCHANGES[0][0]), Message("assistant", EXCHANGES[0][1])
    )


def test_two_text_columns_win_when_they_exist(tmp_path: Path) -> None:
    rows = [{"dialogue": c, "summary": s, **m} for (c, s), m in zip(EXCHANGES, MESSAGES_ROWS, strict=True)]
    ds = _load(tmp_path, rows)
    assert wd.detect_layout(ds, "dialogue", "summary") == wd.Layout()
    examples, _ = wd.validate_rows(ds, "dialogue", "summary")
    assert all(e.turns == () for e in examples)


def test_missing_input_column_points_at_the_chat_column(tmp_path: Path) -> None:
    ds = _load(tmp_path, [{**r, "summary": "x"} for r in MESSAGES_ROWS])
    with pytest.raises(DataError) as err:
        wd.validate_rows(ds, "dialogue", "summary")
    message = str(err.value)
    assert str(tmp_path / "chat.jsonl") in message and "'dialogue'" in message
    assert "set the input column to 'messages'" in message


def test_csv_holds_turns_as_json_text(tmp_path: Path) -> None:
    path = tmp_path / "chat.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["messages"])
        for r in MESSAGES_ROWS:
            writer.writerow([json.dumps(r["messages"], ensure_ascii=False)])
        writer.writerow(["just text"])
    examples, issues = wd.validate_rows(wd.load_rows(str(path)), "messages", "summary")
    assert [(e.conversation, e.summary) for e in examples] == EXCHANGES
    assert [(i.row, i.kind) for i in issues] == [(4, "not_a_list")]


def test_parquet_list_of_structs(tmp_path: Path) -> None:
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.table({"messages": [r["messages"] for r in MESSAGES_ROWS] + [MULTI_TURN]}), path)
    examples, issues = wd.validate_rows(wd.load_rows(str(path)), "dialogue", "summary")
    assert issues == []
    assert len(examples) == 4 and examples[3].turns[0] == Message("system", "तुम एक सहायक हो।")


# ------------------------------------------------------------------------------------ row problems

BAD_ROWS: list[tuple[Any, str, str]] = [
    ("नमस्ते", "not_a_list", "messages is a str, not a list of turns"),
    ({"role": "user"}, "not_a_list", "messages is a dict, not a list of turns"),
    ([], "empty", "messages holds no turns"),
    (None, "empty", "messages is null"),
    (["नमस्ते"], "bad_turn", "messages turn 1 is a str, not an object"),
    ([{"content": "x"}], "bad_turn", "messages turn 1 has no role"),
    ([{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}], "unknown_role",
     "messages turn 2 has role 'tool'; known roles: system, user (human), assistant (gpt, model)"),
    ([{"role": "user"}], "bad_turn", "messages turn 1 (user) has no content"),
    ([{"role": "user", "content": ""}, {"role": "assistant", "content": "y"}], "empty",
     "messages turn 1 (user) content is empty"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": " \n\u200b"}], "whitespace",
     "messages turn 2 (assistant) content holds only whitespace"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": None}], "empty",
     "messages turn 2 (assistant) content is null"),
    ([{"role": "user", "content": ["x"]}, {"role": "assistant", "content": "y"}], "non_string",
     "messages turn 1 (user) content is a list, not text"),
    ([{"role": "user", "content": "x"}, {"role": "user", "content": "y"}], "bad_order",
     "messages turn 2 is user, assistant expected"),
    ([{"role": "assistant", "content": "x"}], "bad_order", "messages turn 1 is assistant, user expected"),
    ([{"role": "user", "content": "x"}, {"role": "system", "content": "y"}], "bad_order",
     "messages turn 2 is a system turn; only the first turn may be one"),
    ([{"role": "system", "content": "s"}, {"role": "user", "content": "x"}], "no_assistant",
     "messages has no assistant turn"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}, {"role": "user", "content": "z"}],
     "bad_order", "messages ends with a user turn (turn 3) that no assistant turn answers"),
]


@pytest.mark.parametrize(("value", "kind", "detail"), BAD_ROWS)
def test_each_bad_chat_row_is_named_with_its_row(tmp_path: Path, value: Any, kind: str, detail: str) -> None:
    ds = _load(tmp_path, [*MESSAGES_ROWS, {"messages": value}])
    examples, issues = wd.validate_rows(ds, "messages", "summary")
    assert len(examples) == 3
    assert len(issues) == 1
    assert (issues[0].row, issues[0].kind) == (4, kind)
    assert detail in issues[0].detail
    assert issues[0].kind in wd.INVALID_KINDS


def test_role_spellings_and_turn_text_cleaning(tmp_path: Path) -> None:
    turns = [{"role": "Human", "content": "\ufeffनमस्ते\r\nकैसे हो?"}, {"from": "model", "value": "ठीक।"}]
    examples, issues = wd.validate_rows(_load(tmp_path, [{"messages": turns}]), "messages", "summary")
    assert issues == []
    assert examples[0].turns == (Message("user", "नमस्ते\nकैसे हो?"), Message("assistant", "ठीक।"))


def test_duplicate_chat_rows_are_reported_and_kept(tmp_path: Path) -> None:
    ds = _load(tmp_path, [*MESSAGES_ROWS, MESSAGES_ROWS[1]])
    examples, issues = wd.validate_rows(ds, "messages", "summary")
    assert len(examples) == 4
    assert [(i.row, i.kind, i.detail) for i in issues] == [(4, "duplicate", "same turns as row 2")]


def test_instruction_template_takes_one_exchange(tmp_path: Path) -> None:
    ds = _load(tmp_path, [*MESSAGES_ROWS, {"messages": MULTI_TURN}])
    examples, issues = wd.validate_rows(ds, "messages", "summary", template="instruction")
    assert [e.row for e in examples] == [1, 2, 3]
    assert len(issues) == 1 and (issues[0].row, issues[0].kind) == (4, "multi_turn")
    assert "use the gemma_chat template" in issues[0].describe() and issues[0].describe().startswith("row 4:")
    examples, issues = wd.validate_rows(ds, "messages", "summary", template="gemma_chat")
    assert [e.row for e in examples] == [1, 2, 3, 4] and issues == []


def test_a_multi_turn_row_that_skipped_the_check_is_a_data_error_naming_the_row() -> None:
    example = Example(9, "u", "a", tuple(Message(t["role"], t["content"]) for t in MULTI_TURN))
    with pytest.raises(DataError, match=r"row 9: .*gemma_chat"):
        wd.render_example(example, "instruction", INSTRUCTION, object())


# ---------------------------------------------------------------------------------- no usable row

def test_require_usable_names_the_file_the_rows_and_the_first_problems(tmp_path: Path) -> None:
    ds = _load(tmp_path, [{"dialogue": 1, "summary": "x"}] * 5, name="numbers.jsonl")
    with pytest.raises(DataError) as err:
        wd.require_usable(ds, "dialogue", "summary")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'numbers.jsonl'}: none of its 5 rows is usable")
    assert "reading columns 'dialogue' and 'summary'" in message
    assert "row 1: non string: dialogue is a int, not text; row 2:" in message and "row 3:" in message
    assert "row 4:" not in message and "(and 2 more)" in message


def test_require_usable_for_chat_rows_and_unreadable_files(tmp_path: Path) -> None:
    ds = _load(tmp_path, [{"messages": [{"role": "user", "content": "x"}]}] * 2)
    with pytest.raises(DataError, match=r"none of its 2 rows is usable \(reading chat turns from 'messages'\): "
                                        r"row 1: no assistant: messages has no assistant turn"):
        wd.require_usable(ds, "messages", "summary")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"dialogue": \n[1]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"none of its 2 rows is usable.*row 1: malformed: not valid JSON"):
        wd.require_usable(wd.load_rows(str(broken)), "dialogue", "summary")


def test_require_usable_returns_the_rows_when_one_is_usable(tmp_path: Path) -> None:
    ds = _load(tmp_path, [{"messages": "x"}, *MESSAGES_ROWS])
    examples, issues = wd.require_usable(ds, "messages", "summary", "gemma_chat")
    assert [e.row for e in examples] == [2, 3, 4] and [i.row for i in issues] == [1]


def test_validation_is_cached_per_columns_and_template_and_safe_to_change(tmp_path: Path) -> None:
    ds = _load(tmp_path, [*MESSAGES_ROWS, {"messages": MULTI_TURN}])
    examples, issues = wd.validate_rows(ds, "messages", "summary", "instruction")
    examples.clear()
    issues.append(wd.RowIssue(1, "over_limit", "a caller's own addition"))
    again, again_issues = wd.validate_rows(ds, "messages", "summary", "instruction")
    assert len(again) == 3 and [i.kind for i in again_issues] == ["multi_turn"]
    assert len(wd.validate_rows(ds, "messages", "summary", "gemma_chat")[0]) == 4
    assert set(ds.checked) == {("messages", "summary", "instruction"), ("messages", "summary", "gemma_chat")}


# ------------------------------------------------------------------------------ rendering and mask

def _chat_example(turns: list[dict[str, str]], row: int = 1) -> Example:
    messages = tuple(Message(t["role"], t["content"]) for t in turns)
    user = next(m for m in messages if m.role == "user")
    reply = next(m for m in messages if m.role == "assistant")
    return Example(row, user.content, reply.content, messages)


def _trained_text(sample: wd.TokenizedSample) -> str:
    return "".join(p for p, t in zip(sample.pieces, sample.trained, strict=True) if t)


def test_multi_turn_trains_every_assistant_turn_and_nothing_else(hindi_tokenizer: Any) -> None:
    example = _chat_example(MULTI_TURN)
    sample = wd.tokenize_examples([example], hindi_tokenizer, "gemma_chat", INSTRUCTION, 4096)[0]
    assert sample.text == (
        "<bos><start_of_turn>user\nतुम एक सहायक हो।\n\nनमस्ते! आज मौसम कैसा है?<end_of_turn>\n"
        "<start_of_turn>model\nआज धूप है।<end_of_turn>\n"
        "<start_of_turn>user\nऔर कल?<end_of_turn>\n"
        "<start_of_turn>model\nकल बारिश होगी।<end_of_turn>\n"
    )
    assert _trained_text(sample) == "आज धूप है।<end_of_turn>\nकल बारिश होगी।<end_of_turn>\n"
    masked = "".join(p for p, t in zip(sample.pieces, sample.trained, strict=True) if not t)
    assert "तुम एक सहायक हो।" in masked and "और कल?" in masked and "<start_of_turn>model\n" in masked
    # two trained spans: masked, trained, masked, trained
    switches = [i for i in range(1, len(sample.trained)) if sample.trained[i] != sample.trained[i - 1]]
    assert len(switches) == 3 and not sample.trained[0] and sample.trained[-1]
    assert sample.n_replies == 2
    assert sample.n_response_tokens == sample.n_trained
    assert sample.n_prompt_tokens + sample.n_response_tokens == sample.n_tokens
    assert sample.labels() == [i if t else -100 for i, t in zip(sample.input_ids, sample.trained, strict=True)]
    assert wd.TokenizedSample(**sample.to_dict()) == sample


def test_a_chat_exchange_trains_exactly_like_the_same_two_columns(hindi_tokenizer: Any) -> None:
    for template in ("gemma_chat", "instruction"):
        columns = [Example(i, c, s) for i, (c, s) in enumerate(EXCHANGES, start=1)]
        chat = [_chat_example(r["messages"], i) for i, r in enumerate(MESSAGES_ROWS, start=1)]
        a = wd.tokenize_examples(columns, hindi_tokenizer, template, INSTRUCTION, 4096)
        b = wd.tokenize_examples(chat, hindi_tokenizer, template, INSTRUCTION, 4096)
        assert a == b
        assert b[0].text == render(template, INSTRUCTION, *EXCHANGES[0]).text


def test_the_rows_own_system_turn_replaces_the_instruction(hindi_tokenizer: Any) -> None:
    own = _chat_example([{"role": "system", "content": "अपना निर्देश"}, *MESSAGES_ROWS[0]["messages"]])
    for template, start in (("gemma_chat", "<bos><start_of_turn>user\nअपना निर्देश\n\nमाँ:"),
                            ("instruction", "<bos>अपना निर्देश\n\n### बातचीत:\nमाँ:")):
        sample = wd.tokenize_examples([own], hindi_tokenizer, template, INSTRUCTION, 4096)[0]
        assert sample.text.startswith(start) and INSTRUCTION not in sample.text


def test_truncation_of_a_multi_turn_sample(hindi_tokenizer: Any) -> None:
    example = _chat_example(MULTI_TURN)
    full = wd.tokenize_examples([example], hindi_tokenizer, "gemma_chat", INSTRUCTION, 100_000)[0]
    first_reply_end = max(i for i in range(full.n_tokens - 1) if full.trained[i] and not full.trained[i + 1]) + 1
    cut = wd.tokenize_examples([example], hindi_tokenizer, "gemma_chat", "", first_reply_end + 2)[0]
    assert cut.text.startswith("<bos><start_of_turn>user\nतुम एक सहायक हो।")  # the row's system turn stays
    assert _trained_text(cut) == "आज धूप है।<end_of_turn>\n"
    assert cut.cut_trained_tokens == full.n_trained - cut.n_trained > 0
    assert cut.cut_text.endswith("कल बारिश होगी।<end_of_turn>\n")


def test_train_on_everything_with_chat_rows(hindi_tokenizer: Any) -> None:
    sample = wd.tokenize_examples([_chat_example(MULTI_TURN)], hindi_tokenizer, "gemma_chat", "", 4096, False)[0]
    assert all(sample.trained) and sample.n_replies == 2 and sample.n_prompt_tokens > 0


turn_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(
    lambda s: bool(s.replace("\u200b", "").strip())
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(system=st.one_of(st.none(), turn_text), contents=st.lists(turn_text, min_size=1, max_size=4),
       instruction=st.text(max_size=20))
def test_trained_tokens_are_exactly_the_replies(
    hindi_tokenizer: Any, system: str | None, contents: list[str], instruction: str
) -> None:
    turns = [{"role": "system", "content": system}] if system is not None else []
    for content in contents:
        turns += [{"role": "user", "content": content}, {"role": "assistant", "content": content[::-1]}]
    sample = wd.tokenize_examples([_chat_example(turns)], hindi_tokenizer, "gemma_chat", instruction, 100_000)[0]
    # Every reply follows "model\n" and ends with the special <end_of_turn>, so no token straddles a span.
    assert _trained_text(sample) == "".join(f"{c[::-1].strip()}<end_of_turn>\n" for c in contents)
    assert sample.n_replies == len(contents)
    assert "".join(sample.pieces) == sample.text


# ------------------------------------------------------------------------------------- statistics

def test_statistics_notes_say_where_system_turns_go(tmp_path: Path, hindi_tokenizer: Any) -> None:
    ds = _load(tmp_path, [*MESSAGES_ROWS, {"messages": MULTI_TURN}])
    stats = wd.compute_stats(ds, hindi_tokenizer, "messages", "summary", "gemma_chat", INSTRUCTION, 4096)
    notes = "\n".join(stats.notes)
    assert ("1 rows have a system turn; Gemma has no system role, so it is merged into the first user turn, "
            "separated by a blank line (rows 4)") in notes
    assert "3 rows have no system turn; the instruction stands in for one, merged into the first user turn" in notes
    assert "1 rows are multi-turn; each assistant turn is trained (rows 4)" in notes
    assert stats.valid_rows == 4 and stats.trained_tokens > 0
    plain = wd.compute_stats(ds, hindi_tokenizer, "messages", "summary", "instruction", "", 4096)
    assert plain.valid_rows == 3 and [(i.row, i.kind) for i in plain.issues] == [(4, "multi_turn")]
    assert "1 multi turn rows (4)" in plain.summary_lines()
    assert not any("instruction stands in" in n for n in plain.notes)  # a blank instruction adds nothing


def test_statistics_of_two_columns_have_no_chat_notes(hindi_tokenizer: Any) -> None:
    ds = wd.load_rows("builtin:hindi_dialogues", "heldout")
    stats = wd.compute_stats(ds, hindi_tokenizer, "dialogue", "summary", "gemma_chat", INSTRUCTION, 4096)
    assert not any("chat" in n or "system turn" in n for n in stats.notes)


# ------------------------------------------------------------------------------------- token view

def test_token_view_shows_a_chat_sample_like_a_two_column_one(hindi_tokenizer: Any) -> None:
    sample = wd.tokenize_examples([_chat_example(MULTI_TURN)], hindi_tokenizer, "gemma_chat", "", 4096)[0]
    d = sample.to_dict()
    assert sample_text(d).plain == sample.text
    counts = sample_counts(d, 4096)
    assert f"prompts {sample.n_prompt_tokens} (masked)" in counts
    assert f"2 replies {sample.n_response_tokens} (trained: {sample.n_trained})" in counts
    one = wd.tokenize_examples([Example(1, *EXCHANGES[0])], hindi_tokenizer, "gemma_chat", "", 4096)[0].to_dict()
    assert "summary" in sample_counts(one, 4096) and "replies" not in sample_counts(one, 4096)
    del one["n_replies"]  # a sample from an engine without the field reads as one reply
    assert wd.TokenizedSample(**one).n_replies == 1 and "summary" in sample_counts(one, 4096)
