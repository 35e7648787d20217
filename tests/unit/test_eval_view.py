"""The Eval pane's tables as data (workbench.eval_view): base and tuned side by side with the difference
and its interval, rows sorted by a score or by the tuned-minus-base gap, two evals compared on the rows
they share, and the progress line. Hand-made Hindi rows whose scores are worked out below."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench import eval_view as view
from workbench import evaluation as ev

# reference, tuned output, base output
ROWS = {
    # tuned = reference: ROUGE-L 100; base empty: 0; gap +100
    1: ("राम और सीता कल बाज़ार जाएँगे।", "राम और सीता कल बाज़ार जाएँगे।", ""),
    # tuned: मोहन आज दफ़्तर जाएगा (4 of the reference's 5 words, in order): P 1, R 4/5, F1 8/9 = 88.9;
    # base = reference: 100; gap -11.1
    2: ("मोहन आज दफ़्तर नहीं जाएगा।", "मोहन आज दफ़्तर जाएगा।", "मोहन आज दफ़्तर नहीं जाएगा।"),
    # both गीता शाम आएगी (3 of 5 in order): P 1, R 3/5, F1 0.75 = 75.0; gap 0
    3: ("गीता शाम सात बजे आएगी।", "गीता शाम आएगी।", "गीता शाम आएगी।"),
    # no reference: generated, not scored
    4: ("", "कुछ भी।", "कुछ भी।"),
}


def records(rows: dict[int, tuple[str, str, str]], base: bool = True) -> list[ev.RowRecord]:
    out = []
    for row, (reference, tuned, base_text) in rows.items():
        outputs = {"tuned": ev.Output(text=tuned, tokens=5, unended=False, seconds=0.1)}
        if base:
            outputs["base"] = ev.Output(text=base_text, tokens=5, unended=False, seconds=0.1)
        out.append(ev.RowRecord(row=row, input=f"बातचीत {row}", reference=reference, prompt_tokens=20,
                                outputs=outputs, t=0.0))
    return out


def write_eval(folder: Path, recs: list[ev.RowRecord], rows: list[int], heldout: str = "builtin:x (split heldout)",
               base: bool = True) -> Path:
    folder.mkdir(parents=True)
    plan = ev.EvalPlan(run=folder.parent.parent.name, weights="final adapter", step=10, heldout=heldout, rows=rows,
                       base=base, decoding=ev.Decoding(max_new_tokens=32, do_sample=False, batch_size=2),
                       template="instruction", instruction="सारांश लिखिए।", config_fingerprint="0" * 64)
    for record in recs:
        ev.append_record(folder / ev.ROWS_FILE, record)
    ev.write_json_atomic(folder / ev.REPORT_FILE, ev.report_document(
        plan, ev.score_records(recs), complete=len(recs) == len(rows), versions={}))
    return folder


@pytest.fixture(scope="module")
def report() -> ev.Report:
    return ev.score_records(records(ROWS))


def test_base_and_tuned_side_by_side_with_the_difference_and_its_interval(report: ev.Report) -> None:
    lines = {line.label: line for line in view.summary_lines(report)}
    rouge_l = lines["ROUGE-L F1"]
    # tuned (100 + 88.9 + 75) / 3 = 87.96; base (0 + 100 + 75) / 3 = 58.33; gaps +100, -11.1, 0: mean +29.6
    assert (rouge_l.tuned, rouge_l.base, rouge_l.gap) == ("88.0", "58.3", "+29.6")
    low, high = (float(x) for x in rouge_l.interval.strip("[]").split(", "))
    assert low <= 29.63 <= high
    assert rouge_l.significant is (low > 0 or high < 0)
    # length ratio: tuned 6/6, 4/5, 3/5 -> 0.80; base 0/6, 5/5, 3/5 -> 0.53
    assert (lines["length ratio"].tuned, lines["length ratio"].base) == ("0.80", "0.53")
    assert lines["Devanagari share"].tuned == "100%"
    # the base model's empty answer to row 1 is counted as empty (and not also as the wrong script)
    assert (lines["empty (rows)"].tuned, lines["empty (rows)"].base) == ("0", "1")
    assert lines["not Devanagari (rows)"].base == "0"
    assert lines["chrF++ (corpus)"].gap == "" and lines["chrF++ (corpus)"].significant is None
    assert [line.label for line in view.summary_lines(report)][:4] == [
        "ROUGE-1 F1", "ROUGE-2 F1", "ROUGE-L F1", "chrF++ (row mean)"]


def test_a_gain_on_every_row_is_marked_as_excluding_zero() -> None:
    rows = {i: ("राम और सीता कल बाज़ार जाएँगे।", "राम और सीता कल बाज़ार जाएँगे।", "कुछ नहीं") for i in range(1, 9)}
    line = next(line for line in view.summary_lines(ev.score_records(records(rows))) if line.label == "ROUGE-L F1")
    assert (line.gap, line.interval, line.significant) == ("+100.0", "[+100.0, +100.0]", True)


def test_the_compact_summary_has_the_flag_counts_on_one_line(report: ev.Report) -> None:
    compact = view.summary_lines(report, compact=True)
    assert len(compact) == 8
    assert compact[-1].label == "empty/loop/copy/unended"
    assert (compact[-1].tuned, compact[-1].base) == ("0/0/0/0", "1/0/0/0")


def test_without_the_base_model_there_is_no_base_column_and_no_difference() -> None:
    lines = view.summary_lines(ev.score_records(records(ROWS, base=False)))
    assert all(line.base == "" and line.gap == "" and line.significant is None for line in lines)
    assert view.row_lines(ev.score_records(records(ROWS, base=False)))[0].other is None


def test_rows_sort_by_the_gap_and_by_any_score(report: ev.Report) -> None:
    lines = view.row_lines(report, view.model_scores(report, "base"))
    assert [line.row for line in lines] == [1, 2, 3]  # the unscored row 4 is not a line
    assert [round(line.gap("rougeL") or 0, 1) for line in lines] == [100.0, -11.1, 0.0]
    assert [line.row for line in view.sort_lines(lines, "gap")] == [1, 3, 2]
    assert [line.row for line in view.sort_lines(lines, "gap", descending=False)] == [2, 3, 1]
    assert [line.row for line in view.sort_lines(lines, "rougeL")] == [1, 2, 3]
    assert [line.row for line in view.sort_lines(lines, "rougeL", descending=False)] == [3, 2, 1]
    assert [line.row for line in view.sort_lines(lines, "other")] == [2, 3, 1]  # base 100, 75, 0
    assert [line.row for line in view.sort_lines(lines, "row")] == [1, 2, 3]
    assert [line.row for line in view.sort_lines(lines, "row", descending=True)] == [3, 2, 1]


def test_rows_without_the_other_side_sort_last_both_ways_and_ties_keep_row_order() -> None:
    lines = [view.RowLine(3, dict.fromkeys(view.METRICS, 50.0), ()),
             view.RowLine(1, dict.fromkeys(view.METRICS, 50.0), (), dict.fromkeys(view.METRICS, 40.0)),
             view.RowLine(2, dict.fromkeys(view.METRICS, 60.0), (), dict.fromkeys(view.METRICS, 50.0))]
    assert [line.row for line in view.sort_lines(lines, "gap")] == [1, 2, 3]
    assert [line.row for line in view.sort_lines(lines, "gap", descending=False)] == [1, 2, 3]
    assert [line.row for line in view.sort_lines(lines, "rouge1", descending=False)] == [1, 3, 2]


def test_sort_keys_cycle_in_column_order() -> None:
    assert view.next_sort_key("row", has_other=True) == "rouge1"
    assert view.next_sort_key("chrf", has_other=True) == "other"
    assert view.next_sort_key("gap", has_other=True) == "row"
    assert view.next_sort_key("chrf", has_other=False) == "row"
    assert view.next_sort_key("gap", has_other=False) == "row"  # the gap columns went away
    assert view.default_descending("row") is False and view.default_descending("gap") is True


def test_row_cells(report: ev.Report) -> None:
    lines = view.row_lines(report, view.model_scores(report, "base"))
    row2 = next(line for line in lines if line.row == 2)
    cells = view.row_cells(row2, "rougeL")
    assert cells[0] == "2" and cells[3] == "88.9" and cells[5:] == ("100.0", "-11.1", "")
    row1 = view.row_cells(lines[0], "rougeL")
    assert row1[-1] == "" and row1[-2] == "+100.0"
    alone = view.row_lines(ev.score_records(records(ROWS, base=False)))
    assert len(view.row_cells(alone[0], "rougeL")) == 6  # row, four scores, flags


def test_the_evals_of_a_run_and_the_ones_comparable_with_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    mine = write_eval(runs / "a" / "evals" / "first", records(ROWS), [1, 2, 3, 4])
    half = write_eval(runs / "b" / "evals" / "half", records({1: ROWS[1], 2: ROWS[2]}), [1, 2, 3])
    write_eval(runs / "c" / "evals" / "elsewhere", records(ROWS), [1, 2, 3, 4], heldout="other.jsonl")
    write_eval(runs / "c" / "evals" / "disjoint", records({9: ROWS[1]}), [9])
    (runs / "c" / "evals" / "broken").mkdir()
    (runs / "c" / "evals" / "broken" / "eval.json").write_text("{not json", encoding="utf-8")

    [info] = view.run_evals(runs / "a")
    assert (info.name, info.run, info.rows_done, info.rows_total, info.complete) == ("first", "a", 4, 4, True)
    assert info.label() == "first · 4/4 rows · complete · final adapter · vs base"
    [other] = view.run_evals(runs / "b")
    assert other.label() == "half · 2/3 rows · incomplete · final adapter · vs base"
    assert other.checkpoint is None
    assert len(view.all_evals(runs)) == 4  # the broken one is left out
    found = view.comparable(info, view.all_evals(runs))
    assert [(o.folder, shared) for o, shared in found] == [(half, 3)]  # same source, rows in common
    assert view.compare_label(*found[0]) == "b / half · 3 shared rows"
    assert view.read_info(mine) == info
    assert view.run_evals(tmp_path / "nowhere") == [] and view.all_evals(tmp_path / "nowhere") == []


def test_a_checkpoints_eval_names_its_step(tmp_path: Path) -> None:
    info = view.EvalInfo(tmp_path, "a", "checkpoint-100", 100, "h", (1,), True, 1, True)
    assert info.checkpoint == 100


def test_two_runs_compared_on_the_rows_they_share(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = ev.load_eval(write_eval(runs / "a" / "evals" / "e", records(ROWS), [1, 2, 3, 4]))
    # the second run's tuned model answered as the first's base model did, on rows 1 and 2 only
    second = ev.load_eval(write_eval(runs / "b" / "evals" / "e", records({1: ("राम और सीता कल बाज़ार जाएँगे।", "", ""),
                                                                        2: ROWS[2][:1] + ROWS[2][2:] * 2}), [1, 2]))
    by_metric = {c.metric: c for c in view.compare(first, second)}
    rouge_l = by_metric["rougeL"]
    assert rouge_l.rows == 2
    assert rouge_l.difference.mean == pytest.approx((100 + (800 / 9 - 100)) / 2)
    # side by side: this run's tuned model, the other run's, and the difference over the shared rows
    against = (second.report.models["tuned"], [c.difference for c in by_metric.values()])
    line = next(line for line in view.summary_lines(first.report, against=against) if line.label == "ROUGE-L F1")
    # this run over its 3 scored rows: 88.0; the other's over its 2: (0 + 100) / 2
    assert (line.tuned, line.base, line.gap) == ("88.0", "50.0", "+44.4")
    lines = view.row_lines(first.report, view.model_scores(second.report, "tuned"))
    assert [line.row for line in view.sort_lines(lines, "gap")] == [1, 2, 3]  # row 3 has no other side


def test_the_row_views_lines(report: ev.Report) -> None:
    row2 = next(r for r in report.rows if r.record.row == 2)
    assert view.scores_line(row2.scores["base"]) == (
        "R-1 100.0 · R-2 100.0 · R-L 100.0 · chrF++ 100.0 · length 1.00 · Devanagari 100%")
    row1 = next(r for r in report.rows if r.record.row == 1)
    assert view.scores_line(row1.scores["base"]).endswith("flags: empty")
    out = ev.Output(text="x", tokens=64, unended=True, seconds=0.4)
    assert view.output_note(out) == "64 tokens, 0.40 s · hit max_new_tokens"
    assert view.output_note(ev.Output(text="", tokens=1, unended=False, seconds=0.25)) == "1 token, 0.25 s"


def test_the_progress_line() -> None:
    assert view.progress_line(0, 24, 0, 0.0) == "0/24 rows"
    assert view.progress_line(12, 24, 12, 10.0) == "12/24 rows · 1.20 rows/s · ETA 0:10"
    # resumed at 8: the 4 rows made in 2 s give the rate, not the 12 done
    assert view.progress_line(12, 24, 4, 2.0) == "12/24 rows · 2.00 rows/s · ETA 0:06"
