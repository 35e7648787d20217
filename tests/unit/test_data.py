"""workbench.data: readers, row validation with row numbers, tokenization with the loss mask, truncation,
statistics, the eval split and the built-in dataset. The tokenizer is a tiny byte-level BPE (conftest)."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench import data as wd
from workbench.data import DataError, Example, LoadedDataset, RawRow
from workbench.templates import render
from workbench.tokenview import legend, sample_counts, sample_text

INSTRUCTION = "नीचे दी गई बातचीत का हिंदी में संक्षिप्त सारांश लिखिए।"
ROWS = [
    {"dialogue": "माँ: आज शाम को मौसी आ रही हैं।\nरिया: ठीक है माँ।", "summary": "मौसी आज शाम आएँगी।"},
    {"dialogue": "अमित: कल meeting कितने बजे है?\nसीमा: सुबह 10 बजे, office में।",
     "summary": "अमित और सीमा कल सुबह 10 बजे office में मिलेंगे।"},
    {"dialogue": "दुकानदार: यह किताब 200 रुपये की है।\nग्राहक: 150 दे दूँगा।", "summary": "ग्राहक किताब पर मोलभाव करता है।"},
]


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def _examples(ds: LoadedDataset) -> list[tuple[str, str]]:
    examples, issues = wd.validate_rows(ds, "dialogue", "summary")
    assert issues == []
    return [(e.conversation, e.summary) for e in examples]


# ------------------------------------------------------------------------------------------ formats

def test_load_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl(ROWS))
    ds = wd.load_rows(str(path))
    assert ds.columns == ["dialogue", "summary"]
    assert [r.row for r in ds.rows] == [1, 2, 3]
    assert _examples(ds) == [(r["dialogue"], r["summary"]) for r in ROWS]
    assert len(ds.fingerprint) == 64


def test_load_json_list_and_layouts(tmp_path: Path) -> None:
    expected = [(r["dialogue"], r["summary"]) for r in ROWS]
    for i, payload in enumerate([
        ROWS,
        {"data": ROWS},
        {"dialogue": [r["dialogue"] for r in ROWS], "summary": [r["summary"] for r in ROWS]},
    ]):
        path = tmp_path / f"d{i}.json"
        path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
        ds = wd.load_rows(str(path))
        assert [r.row for r in ds.rows] == [1, 2, 3]
        assert _examples(ds) == expected


def test_load_csv_with_quoted_newlines_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    lines = ["dialogue,summary"] + [f'"{r["dialogue"].replace(chr(10), chr(13) + chr(10))}","{r["summary"]}"' for r in ROWS]
    path.write_bytes("\r\n".join(lines).encode("utf-8") + b"\r\n")
    ds = wd.load_rows(str(path))
    assert [r.row for r in ds.rows] == [1, 2, 3]  # record numbers, not physical lines
    assert _examples(ds) == [(r["dialogue"], r["summary"]) for r in ROWS]


def test_load_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    table = pa.table({
        "dialogue": [r["dialogue"] for r in ROWS] + [None],
        "summary": [r["summary"] for r in ROWS] + ["अकेला सारांश"],
    })
    pq.write_table(table, path)
    ds = wd.load_rows(str(path))
    examples, issues = wd.validate_rows(ds, "dialogue", "summary")
    assert [(e.conversation, e.summary) for e in examples] == [(r["dialogue"], r["summary"]) for r in ROWS]
    assert [(i.row, i.kind) for i in issues] == [(4, "empty")]
    assert ds.fingerprint == wd.load_rows(str(path)).fingerprint


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(_jsonl(ROWS))
    b.write_bytes(_jsonl(ROWS[:2]))
    assert wd.load_rows(str(a)).fingerprint != wd.load_rows(str(b)).fingerprint


# ------------------------------------------------------------------------------------ planted bad rows

BIG_SUMMARY = "यह बहुत लंबी बातचीत का सारांश है।"
BIG_DIALOGUE = ("अमित: कल meeting कितने बजे है? सीमा: सुबह 10 बजे। " * 20000)[: 1_000_000 // 2]


def _planted_jsonl() -> bytes:
    dup = ROWS[1]
    lines: list[bytes] = [
        b"\xef\xbb\xbf" + json.dumps(ROWS[0], ensure_ascii=False).encode(),  # 1 BOM at file start, valid
        json.dumps(dup, ensure_ascii=False).encode(),  # 2 mixed Devanagari / Latin, valid
        b'{"dialogue": "\xe0\xa4\x85", "summary": ',  # 3 malformed JSON
        b'{"dialogue": "ab\xff\xfecd", "summary": "x"}',  # 4 invalid UTF-8
        json.dumps({"dialogue": "सिर्फ़ बातचीत"}, ensure_ascii=False).encode(),  # 5 missing column
        json.dumps({"dialogue": "बातचीत", "summary": ""}, ensure_ascii=False).encode(),  # 6 empty string
        json.dumps({"dialogue": " \t\n\u200b ", "summary": "x"}, ensure_ascii=False).encode(),  # 7 whitespace
        json.dumps({"dialogue": "बातचीत", "summary": 42}, ensure_ascii=False).encode(),  # 8 a number
        json.dumps({"dialogue": None, "summary": "x"}, ensure_ascii=False).encode(),  # 9 null
        json.dumps(dup, ensure_ascii=False).encode(),  # 10 duplicate of 2
        json.dumps({"dialogue": BIG_DIALOGUE, "summary": BIG_SUMMARY}, ensure_ascii=False).encode(),  # 11 1 MB
        json.dumps({"dialogue": "\ufeffनमस्ते, कैसे हो?", "summary": "\ufeffहाल-चाल पूछा।"},
                   ensure_ascii=False).encode(),  # 12 BOM at the start of values
        b"",  # 13 blank line: not a row
        b"[1, 2]",  # 14 JSON, but not an object
        json.dumps({"dialogue": "राम:\u200bनमस्ते", "summary": "अभिवादन।"}, ensure_ascii=False).encode(),  # 15
    ]
    return b"\n".join(lines) + b"\n"


EXPECTED_ISSUES = {
    3: "malformed",
    4: "invalid_utf8",
    5: "missing_column",
    6: "empty",
    7: "whitespace",
    8: "non_string",
    9: "empty",
    10: "duplicate",
    14: "malformed",
}
EXPECTED_VALID = [1, 2, 10, 11, 12, 15]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> LoadedDataset:
    path = tmp_path_factory.mktemp("planted") / "bad.jsonl"
    path.write_bytes(_planted_jsonl())
    assert len(BIG_DIALOGUE.encode()) > 1_000_000
    return wd.load_rows(str(path))


def test_planted_rows_are_numbered_by_line(planted: LoadedDataset) -> None:
    assert [r.row for r in planted.rows] == [*range(1, 13), 14, 15]
    assert planted.columns == ["dialogue", "summary"]


def test_validate_rows_reports_each_planted_problem(planted: LoadedDataset) -> None:
    examples, issues = wd.validate_rows(planted, "dialogue", "summary")
    assert {i.row: i.kind for i in issues} == EXPECTED_ISSUES
    assert len(issues) == len(EXPECTED_ISSUES)
    assert [e.row for e in examples] == EXPECTED_VALID
    by_row = {i.row: i for i in issues}
    bad_column = _planted_jsonl().split(b"\n")[3].index(b"\xff") + 1  # 1-based byte column
    assert bad_column == 17
    assert f"column {bad_column}" in by_row[4].detail
    assert "'summary'" in by_row[5].detail
    assert "null" in by_row[9].detail
    assert "row 2" in by_row[10].detail
    assert by_row[8].describe() == "row 8: non string: summary is a int, not text"
    assert [i.row for i in wd.invalid_issues(issues)] == [3, 4, 5, 6, 7, 8, 9, 14]


def test_valid_rows_survive_intact(planted: LoadedDataset) -> None:
    examples, _ = wd.validate_rows(planted, "dialogue", "summary")
    by_row = {e.row: e for e in examples}
    assert (by_row[1].conversation, by_row[1].summary) == (ROWS[0]["dialogue"], ROWS[0]["summary"])
    assert by_row[2].conversation == ROWS[1]["dialogue"]
    assert by_row[10].summary == ROWS[1]["summary"]
    assert by_row[11].conversation == BIG_DIALOGUE
    assert by_row[12].conversation == "नमस्ते, कैसे हो?"  # BOM at the start of a value is removed
    assert by_row[12].summary == "हाल-चाल पूछा।"
    assert by_row[15].conversation == "राम:\u200bनमस्ते"  # zero-width space kept as written


@pytest.fixture(scope="module")
def planted_stats(planted: LoadedDataset, hindi_tokenizer: Any) -> wd.DatasetStats:
    return wd.compute_stats(planted, hindi_tokenizer, "dialogue", "summary", "instruction", INSTRUCTION, 256)


def test_compute_stats_on_planted_rows(planted_stats: wd.DatasetStats) -> None:
    s = planted_stats
    assert s.rows == 14
    assert s.valid_rows == len(EXPECTED_VALID)
    assert s.complete
    assert s.invalid_rows == [3, 4, 5, 6, 7, 8, 9, 14]
    assert s.count("duplicate") == 1
    assert s.count("empty") == 2
    assert s.over_limit_rows == [11]
    assert s.nothing_trained_rows == [11]  # the summary of the 1 MB row is cut entirely
    kinds = {(i.row, i.kind) for i in s.issues}
    assert {(r, k) for r, k in EXPECTED_ISSUES.items()} <= kinds
    assert {(11, "over_limit"), (11, "nothing_trained")} <= kinds
    assert s.issues == sorted(s.issues, key=lambda i: (i.row, i.kind))
    assert any("zero-width" in n and "15" in n for n in s.notes)
    assert s.token_lengths["max"] > 100_000
    assert s.token_lengths["min"] <= s.token_lengths["median"] <= s.token_lengths["max"]
    assert sum(c for _, _, c in s.histogram) == s.valid_rows
    assert s.total_tokens <= 256 * s.valid_rows
    assert 0 < s.trained_tokens < s.total_tokens
    text = "\n".join(s.summary_lines())
    assert "14 rows, 6 usable" in text
    assert "over max_seq_length 256 (rows 11)" in text
    assert "train nothing (rows 11)" in text
    assert "1 duplicate rows (10)" in text


def test_stats_dict_round_trip(planted_stats: wd.DatasetStats) -> None:
    d = json.loads(json.dumps(planted_stats.to_dict()))
    assert wd.DatasetStats.from_dict(d) == planted_stats


def test_csv_problems_use_record_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(
        "\ufeffdialogue,summary\n"
        '"पहली पंक्ति\nदूसरी पंक्ति",सारांश एक\n'  # 1: quoted newline, valid
        ',खाली बातचीत\n'  # 2: empty dialogue
        'a,b,c\n'  # 3: too many fields
        '\n'  # 4: empty line
        '"   ",x\n'  # 5: whitespace only
        '"\ufeffबीओएम",ठीक\n'.encode()  # 6: BOM at the start of a value
    )
    ds = wd.load_rows(str(path))
    assert ds.columns == ["dialogue", "summary"]  # the file's BOM is not part of the first column name
    examples, issues = wd.validate_rows(ds, "dialogue", "summary")
    assert [(i.row, i.kind) for i in issues] == [(2, "empty"), (3, "malformed"), (4, "empty"), (5, "whitespace")]
    assert [(e.row, e.conversation, e.summary) for e in examples] == [
        (1, "पहली पंक्ति\nदूसरी पंक्ति", "सारांश एक"),
        (6, "बीओएम", "ठीक"),
    ]


# ------------------------------------------------------------------------------------------ errors

def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match="no such file") as err:
        wd.load_rows(str(path))
    assert str(path) in str(err.value)


def test_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    with pytest.raises(DataError, match="is a folder") as err:
        wd.load_rows(str(folder))
    assert str(folder) in str(err.value)


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("dialogue\tsummary\nएक\tदो\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"unknown file type '\.txt'") as err:
        wd.load_rows(str(path))
    assert str(path) in str(err.value)


def test_missing_column_names_it_and_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl(ROWS))
    ds = wd.load_rows(str(path))
    with pytest.raises(DataError) as err:
        wd.validate_rows(ds, "conversation", "summary")
    message = str(err.value)
    assert str(path) in message
    assert "'conversation'" in message
    assert "dialogue, summary" in message


def test_empty_file_and_bad_json(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n")
    with pytest.raises(DataError, match="holds no rows"):
        wd.load_rows(str(empty))
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"dialogue\": 1,}", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON") as err:
        wd.load_rows(str(bad))
    assert str(bad) in str(err.value)
    scalar = tmp_path / "scalar.json"
    scalar.write_text("42", encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list"):
        wd.load_rows(str(scalar))
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"dialogue,summary\nok,ok\n\xff\xfe,x\n")
    with pytest.raises(DataError, match="invalid UTF-8 byte on line 3") as err:
        wd.load_rows(str(binary))
    assert str(binary) in str(err.value)


def test_builtin_dataset_loads_both_splits() -> None:
    train = wd.load_rows("builtin:hindi_dialogues")
    heldout = wd.load_rows("builtin:hindi_dialogues", "heldout")
    for ds in (train, heldout):
        assert {"dialogue", "summary"} <= set(ds.columns)
        examples, issues = wd.validate_rows(ds, "dialogue", "summary")
        assert examples
        assert wd.invalid_issues(issues) == []
    assert train.fingerprint != heldout.fingerprint
    assert wd.builtin_path("hindi_dialogues", "test") == wd.builtin_path("hindi_dialogues", "heldout")


def test_builtin_errors() -> None:
    with pytest.raises(DataError, match="no such built-in dataset"):
        wd.load_rows("builtin:nope")
    with pytest.raises(DataError, match="split 'dev' does not exist"):
        wd.load_rows("builtin:hindi_dialogues", "dev")


# -------------------------------------------------------------------------------------- tokenizing

def _builtin_examples() -> list[Example]:
    examples, _ = wd.validate_rows(wd.load_rows("builtin:hindi_dialogues"), "dialogue", "summary")
    return [*examples, Example(100, ROWS[1]["dialogue"], ROWS[1]["summary"] + " 😀 ঌ")]


@pytest.mark.parametrize("template", ["instruction", "gemma_chat"])
def test_tokenize_masks_exactly_the_prompt(hindi_tokenizer: Any, template: str) -> None:
    examples = _builtin_examples()
    samples = wd.tokenize_examples(examples, hindi_tokenizer, template, INSTRUCTION, 4096)
    bos = hindi_tokenizer.bos_token_id
    assert len(samples) == len(examples)
    for example, sample in zip(examples, samples, strict=True):
        rendered = wd.render_example(example, template, INSTRUCTION, hindi_tokenizer)
        assert sample.row == example.row
        assert sample.text == rendered.text
        assert sample.input_ids.count(bos) == 1 and sample.input_ids[0] == bos
        assert sample.pieces[0] == "<bos>" and sample.special[0]
        assert "".join(sample.pieces) == rendered.text
        assert sample.truncated == 0 and sample.cut_text == "" and sample.cut_trained_tokens == 0
        assert len(sample.input_ids) == len(sample.trained) == len(sample.pieces) == len(sample.special)
        # mask: False then True, switching once
        first = sample.trained.index(True)
        assert not any(sample.trained[:first]) and all(sample.trained[first:])
        assert sample.n_prompt_tokens == first
        assert sample.n_response_tokens == sample.n_trained == len(sample.input_ids) - first
        # the trained pieces are the response text, give or take one token straddling the boundary
        trained_text = "".join(p for p, t in zip(sample.pieces, sample.trained, strict=True) if t)
        masked_text = "".join(p for p, t in zip(sample.pieces, sample.trained, strict=True) if not t)
        if trained_text != rendered.response:
            assert trained_text.endswith(rendered.response[len(sample.pieces[first]) :])
            assert masked_text == rendered.prompt[: len(masked_text)]
        else:
            assert masked_text == rendered.prompt
        enc = hindi_tokenizer([rendered.text])["offset_mapping"][0]
        straddling = [s for s, e in enc if s < len(rendered.prompt) < e]
        assert len(straddling) <= 1
        # labels
        labels = sample.labels()
        assert labels == [i if t else -100 for i, t in zip(sample.input_ids, sample.trained, strict=True)]
        assert labels[:first] == [-100] * first and -100 not in labels[first:]
        # the end marker is trained (the model learns to stop)
        end = "<eos>" if template == "instruction" else "\n"
        assert sample.pieces[-1] == end and sample.trained[-1]
        assert wd.TokenizedSample(**sample.to_dict()) == sample


def test_special_tokens_are_single_ids(hindi_tokenizer: Any) -> None:
    sample = wd.tokenize_examples(_builtin_examples()[:1], hindi_tokenizer, "gemma_chat", INSTRUCTION, 4096)[0]
    specials = [p for p, s in zip(sample.pieces, sample.special, strict=True) if s]
    assert specials == ["<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_turn>", "<end_of_turn>"]
    ids = {p: i for p, i in zip(sample.pieces, sample.input_ids, strict=True) if p in specials}
    assert ids["<end_of_turn>"] == hindi_tokenizer.token_to_id("<end_of_turn>")


def test_train_on_everything(hindi_tokenizer: Any) -> None:
    examples = _builtin_examples()
    samples = wd.tokenize_examples(examples, hindi_tokenizer, "instruction", INSTRUCTION, 4096, False)
    for sample in samples:
        assert all(sample.trained)
        assert -100 not in sample.labels()
        assert sample.n_prompt_tokens > 0  # the counts still tell the parts apart


def test_tokenize_nothing() -> None:
    assert wd.tokenize_rendered([], [], object(), 16) == []


def _one_sample(tok: Any, max_len: int, example: Example | None = None) -> wd.TokenizedSample:
    example = example or Example(7, ROWS[1]["dialogue"], ROWS[1]["summary"])
    return wd.tokenize_examples([example], tok, "instruction", INSTRUCTION, max_len)[0]


def test_truncation_cuts_the_tail(hindi_tokenizer: Any) -> None:
    full = _one_sample(hindi_tokenizer, 100_000)
    offsets = hindi_tokenizer([full.text])["offset_mapping"][0]
    keep = full.n_prompt_tokens + 3
    s = _one_sample(hindi_tokenizer, keep)
    assert len(s.input_ids) == len(s.trained) == len(s.pieces) == keep
    assert s.input_ids == full.input_ids[:keep]
    assert s.trained == full.trained[:keep]
    assert s.n_tokens == full.n_tokens and s.truncated == full.n_tokens - keep
    assert s.n_trained == 3
    assert s.cut_trained_tokens == full.n_response_tokens - 3
    assert s.cut_text == full.text[offsets[keep][0] :]
    assert full.text.endswith(s.cut_text) and s.cut_text.endswith("<eos>")
    assert s.labels()[-3:] == s.input_ids[-3:]


@pytest.mark.parametrize("cut_into_prompt", [0, 1, 5])
def test_summary_cut_entirely_trains_nothing(hindi_tokenizer: Any, cut_into_prompt: int) -> None:
    full = _one_sample(hindi_tokenizer, 100_000)
    keep = full.n_prompt_tokens - cut_into_prompt
    s = _one_sample(hindi_tokenizer, keep)
    assert len(s.input_ids) == keep
    assert s.n_trained == 0
    assert s.labels() == [-100] * keep
    assert s.cut_trained_tokens == full.n_response_tokens
    assert full.text.endswith(s.cut_text)
    assert s.cut_text.endswith(ROWS[1]["summary"] + "<eos>")


def test_every_truncation_point_is_consistent(hindi_tokenizer: Any) -> None:
    example = Example(3, "राम: नमस्ते 😀 ঌ, कैसे हो?", "राम ने 😀 के साथ अभिवादन किया।")
    full = _one_sample(hindi_tokenizer, 100_000, example)
    offsets = hindi_tokenizer([full.text])["offset_mapping"][0]
    mid_char_cuts = 0
    for keep in range(1, full.n_tokens + 1):
        s = _one_sample(hindi_tokenizer, keep, example)
        assert len(s.input_ids) == keep
        assert full.text.endswith(s.cut_text)
        assert s.n_trained + s.cut_trained_tokens == full.n_response_tokens
        kept_text = "".join(s.pieces)
        assert full.text.startswith(kept_text)
        kept_to = max(e for _, e in offsets[:keep])
        if keep == full.n_tokens:
            assert s.cut_text == "" and kept_text == full.text
        elif offsets[keep][0] == kept_to:
            assert kept_text + s.cut_text == full.text
        else:
            # the cut falls inside one character split over byte tokens (the emoji): the character is
            # shown on its first (kept) token and the cut text starts with it again
            mid_char_cuts += 1
            assert len(kept_text) + len(s.cut_text) == len(full.text) + (kept_to - offsets[keep][0])
    assert mid_char_cuts > 0  # the example does exercise byte-split characters


def test_compute_stats_lists_nothing_trained_rows(hindi_tokenizer: Any) -> None:
    full = _one_sample(hindi_tokenizer, 100_000)
    ds = LoadedDataset(
        source="mem",
        rows=[RawRow(1, {"d": ROWS[1]["dialogue"], "s": ROWS[1]["summary"]}), RawRow(2, {"d": "हाँ", "s": "ठीक।"})],
        columns=["d", "s"],
        fingerprint="x",
    )
    stats = wd.compute_stats(ds, hindi_tokenizer, "d", "s", "instruction", INSTRUCTION, full.n_prompt_tokens - 1)
    assert stats.nothing_trained_rows == [1]
    assert stats.over_limit_rows == [1]
    assert (1, "nothing_trained") in {(i.row, i.kind) for i in stats.issues}
    assert "1 rows lose the whole summary to truncation" in "\n".join(stats.summary_lines())
    fits = wd.compute_stats(ds, hindi_tokenizer, "d", "s", "instruction", INSTRUCTION, 4096)
    assert fits.nothing_trained_rows == [] and fits.over_limit_rows == []
    assert fits.token_lengths["max"] == full.n_tokens


def test_compute_stats_progress_and_stop(hindi_tokenizer: Any) -> None:
    rows = [RawRow(i, {"d": f"बातचीत {i}", "s": f"सारांश {i}"}) for i in range(1, 11)]
    ds = LoadedDataset("mem", rows, ["d", "s"], "x")
    progress: list[tuple[int, int]] = []
    stats = wd.compute_stats(ds, hindi_tokenizer, "d", "s", "instruction", INSTRUCTION, 512,
                             on_progress=lambda a, b: progress.append((a, b)), batch_size=4)
    assert progress == [(4, 10), (8, 10), (10, 10)]
    assert stats.complete and len(stats.histogram) > 0
    stop = threading.Event()
    stop.set()
    stopped = wd.compute_stats(ds, hindi_tokenizer, "d", "s", "instruction", INSTRUCTION, 512, stop=stop)
    assert not stopped.complete
    assert stopped.token_lengths == {} and stopped.histogram == []


def test_render_example_uses_the_tokenizer_markers(hindi_tokenizer: Any) -> None:
    class Other:
        bos_token = "[CLS]"
        eos_token = None

    e = Example(1, "c", "s")
    assert wd.render_example(e, "instruction", "i", Other()) == render("instruction", "i", "c", "s", bos="[CLS]")
    assert wd.render_example(e, "instruction", "i", hindi_tokenizer).text.endswith("s<eos>")


# ----------------------------------------------------------------------------- histogram / split

@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.integers(0, 100_000), max_size=200), bins=st.integers(1, 40))
def test_histogram_bins_cover_all_values(values: list[int], bins: int) -> None:
    hist = wd.histogram(values, bins)
    if not values:
        assert hist == []
        return
    assert sum(c for _, _, c in hist) == len(values)
    assert hist[0][0] == min(values)
    assert hist[-1][1] >= max(values)
    for (lo, hi, _), (nlo, _, _) in itertools.pairwise(hist):
        assert lo <= hi and nlo == hi + 1  # contiguous, no overlap
    for lo, hi, count in hist:
        assert count == sum(1 for v in values if lo <= v <= hi)


def test_histogram_single_value() -> None:
    assert wd.histogram([7, 7, 7]) == [(7, 7, 3)]


def _exs(n: int) -> list[Example]:
    return [Example(i, f"c{i}", f"s{i}") for i in range(1, n + 1)]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 200), fraction=st.floats(0.0, 0.5, exclude_max=True), seed=st.integers(0, 2**32 - 1))
def test_split_eval_is_deterministic_disjoint_and_complete(n: int, fraction: float, seed: int) -> None:
    examples = _exs(n)
    train, held = wd.split_eval(examples, fraction, seed)
    assert (train, held) == wd.split_eval(examples, fraction, seed)
    assert not {e.row for e in train} & {e.row for e in held}
    assert sorted(e.row for e in train + held) == [e.row for e in examples]
    assert train == sorted(train, key=lambda e: e.row) and held == sorted(held, key=lambda e: e.row)
    if fraction <= 0 or n < 2:
        assert held == []
    else:
        assert len(held) == max(1, round(n * fraction))
        assert train


def test_split_eval_depends_on_seed() -> None:
    splits = {tuple(e.row for e in wd.split_eval(_exs(50), 0.2, seed)[1]) for seed in range(5)}
    assert len(splits) > 1


# ------------------------------------------------------------------------------------- token view

def test_tokenview_shows_every_kept_piece_and_the_cut(hindi_tokenizer: Any) -> None:
    full = _one_sample(hindi_tokenizer, 100_000)
    cut = _one_sample(hindi_tokenizer, full.n_prompt_tokens + 2).to_dict()
    text = sample_text(cut)
    assert text.plain == "".join(cut["pieces"]) + "\n✂ cut by truncation: " + cut["cut_text"]
    styles = {str(span.style) for span in text.spans}
    assert {"grey62", "bold green", "bold black on yellow", "strike red"} <= styles
    counts = sample_counts(cut, full.n_prompt_tokens + 2)
    assert f"{full.n_tokens} tokens / max {full.n_prompt_tokens + 2}" in counts
    assert f"prompt {full.n_prompt_tokens} (masked)" in counts
    assert "(trained: 2)" in counts
    assert f"({full.n_response_tokens - 2} of them trained)" in counts
    nothing = _one_sample(hindi_tokenizer, full.n_prompt_tokens).to_dict()
    assert "NOTHING IS TRAINED" in sample_counts(nothing, full.n_prompt_tokens)
    fits = full.to_dict()
    assert sample_text(fits).plain == full.text
    assert "truncation" not in sample_counts(fits, 100_000) and "NOTHING" not in sample_counts(fits, 100_000)
    assert sample_text({**cut, "cut_text": "x" * 500}, max_cut_chars=10).plain.endswith("x" * 10 + "… (+490 chars)")
    assert "masked prompt" in legend().plain
