"""What the Eval pane shows, as plain data: the evals of a run (read from their eval.json alone), the
table of base and tuned scores with the tuned-minus-base differences and their intervals, the per-row
lines and how they sort, a comparison of two evals on the rows they share, and the progress line of an
eval being made.

The pane (`ui/panes/eval_pane.py`) only lays these out. No Textual here, and no torch: the scores come
from `workbench.evaluation` / `workbench.scores` as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from workbench import evaluation as ev
from workbench import scores as sc
from workbench.formatting import duration

METRICS = ("rouge1", "rouge2", "rougeL", "chrf")
"""The per-row scores (0-100), in the order the table shows them."""
METRIC_TITLES = {"rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L", "chrf": "chrF++"}
METRIC_NAMES = {"rouge1": "ROUGE-1 F1", "rouge2": "ROUGE-2 F1", "rougeL": "ROUGE-L F1", "chrf": "chrF++"}
FLAGS = (("empty", "empty"), ("loop", "repetition loop"), ("copy", "copies input"), ("unended", "unfinished"),
         ("script", "not Devanagari"))
"""(the flag's name in `RowScores.flags`, what the summary calls it)."""

SortKey = Literal["row", "rouge1", "rouge2", "rougeL", "chrf", "other", "gap"]
SORT_KEYS: tuple[SortKey, ...] = ("row", "rouge1", "rouge2", "rougeL", "chrf", "other", "gap")
"""What the per-row table sorts by: the row number, a tuned score, the other side's score (base or the
compared eval) of the gap metric, or the gap itself (tuned minus the other side)."""


# -- the evals of a run --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalInfo:
    """An eval folder as its eval.json describes it (the rows are not read or scored)."""

    folder: Path
    run: str
    weights: str
    step: int | None
    heldout: str
    rows: tuple[int, ...]
    base: bool
    rows_done: int
    complete: bool

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def rows_total(self) -> int:
        return len(self.rows)

    @property
    def checkpoint(self) -> int | None:
        """The checkpoint's step when the eval judged a checkpoint (None: the final adapter)."""
        prefix = "checkpoint-"
        return int(self.weights[len(prefix):]) if self.weights.startswith(prefix) and self.weights[len(prefix):].isdigit() else None

    def label(self) -> str:
        """One line for the eval picker: name, rows done, complete or not, weights, with or without base."""
        state = "complete" if self.complete else "incomplete"
        versus = " · vs base" if self.base else ""
        return f"{self.name} · {self.rows_done}/{self.rows_total} rows · {state} · {self.weights}{versus}"


def read_info(folder: Path) -> EvalInfo | None:
    """The eval in `folder` as its eval.json says, or None when that file is missing or damaged."""
    try:
        document = json.loads((folder / ev.REPORT_FILE).read_text(encoding="utf-8"))
        plan = ev.EvalPlan.model_validate(document["plan"])
        done = int(document.get("rows_done", 0))
        complete = bool(document.get("complete", False))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return EvalInfo(folder, plan.run, plan.weights, plan.step, plan.heldout, tuple(plan.rows), plan.base, done, complete)


def run_evals(run_dir: str | Path) -> list[EvalInfo]:
    """The readable evals of a run, newest first."""
    return [info for folder in ev.list_evals(Path(run_dir)) if (info := read_info(folder)) is not None]


def all_evals(runs_dir: str | Path) -> list[EvalInfo]:
    """Every readable eval of every run under `runs_dir`."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return [info for run in sorted(root.iterdir()) if run.is_dir() for info in run_evals(run)]


def comparable(info: EvalInfo, candidates: Iterable[EvalInfo]) -> list[tuple[EvalInfo, int]]:
    """The other evals made on the same held-out rows (the same source, at least one row in common), with
    how many rows they share with `info`: the ones a per-row comparison means something for."""
    mine = set(info.rows)
    out = []
    for other in candidates:
        if Path(other.folder).absolute() == Path(info.folder).absolute() or other.heldout != info.heldout:
            continue
        shared = len(mine & set(other.rows))
        if shared:
            out.append((other, shared))
    return out


def compare_label(other: EvalInfo, shared: int) -> str:
    return f"{other.run} / {other.name} · {shared} shared rows"


# -- base and tuned, side by side ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SummaryLine:
    label: str
    tuned: str
    base: str
    """Empty when the eval has no base model."""
    gap: str = ""
    """tuned minus base, when it has an interval."""
    interval: str = ""
    significant: bool | None = None
    """The 95% interval excludes 0 (None: no interval for this line)."""


def points(value: float) -> str:
    """A 0-100 score with one decimal."""
    return f"{value:.1f}"


def signed(value: float) -> str:
    return f"{value:+.1f}"


def interval(low: float, high: float) -> str:
    return f"[{low:+.1f}, {high:+.1f}]"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def summary_lines(report: ev.Report, compact: bool = False,
                  against: tuple[sc.Summary, Sequence[sc.Difference]] | None = None) -> list[SummaryLine]:
    """The scores of each model over the scored rows: ROUGE-1/2/L F1 and chrF++ (the mean of the rows, which
    the difference is taken over, then corpus-level), length ratio, Devanagari share and how many rows
    raised each flag (`compact`: on one line, 80x24). The second column is the base model with the report's tuned-minus-base differences,
    or `against`: another eval's tuned model and this one's differences from it (`compare`)."""
    tuned = report.models.get("tuned")
    if tuned is None:
        return []
    base, differences = against if against is not None else (report.models.get("base"), report.differences)
    diffs = {d.metric: d for d in differences}

    def pair(get: Callable[[sc.Summary], str]) -> tuple[str, str]:
        return get(tuned), get(base) if base is not None else ""

    lines = []
    for metric in METRICS:
        def score(s: sc.Summary, metric: str = metric) -> str:
            return points(s.chrf_mean if metric == "chrf" else 100 * s.rouge_f1[metric])
        label = "chrF++ (row mean)" if metric == "chrf" else METRIC_NAMES[metric]
        d = diffs.get(metric)
        if d is None:
            lines.append(SummaryLine(label, *pair(score)))
        else:
            lines.append(SummaryLine(label, *pair(score), signed(d.mean), interval(d.low, d.high), d.significant))
    lines.append(SummaryLine("chrF++ (corpus)", *pair(lambda s: points(s.chrf_corpus))))
    lines.append(SummaryLine("length ratio", *pair(lambda s: _ratio(s.length_ratio))))
    lines.append(SummaryLine("Devanagari share", *pair(lambda s: f"{100 * s.devanagari_share:.0f}%")))
    if compact:  # the wrong script is left to the Devanagari share above
        names = [name for name, _title in FLAGS if name != "script"]
        lines.append(SummaryLine("/".join(names), *pair(lambda s: "/".join(str(s.flagged.get(n, 0)) for n in names))))
    else:
        for name, title in FLAGS:
            def count(s: sc.Summary, name: str = name) -> str:
                return str(s.flagged.get(name, 0))
            lines.append(SummaryLine(f"{title} (rows)", *pair(count)))
    return lines


# -- row by row -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowLine:
    """One scored row: the tuned model's scores, and the other side's (the base model's, or a compared
    eval's tuned model) when there is one."""

    row: int
    scores: dict[str, float]
    flags: tuple[str, ...]
    other: dict[str, float] | None = None
    other_flags: tuple[str, ...] = ()

    def gap(self, metric: str) -> float | None:
        """tuned minus the other side on `metric` (None when this row has no other side)."""
        return None if self.other is None else self.scores[metric] - self.other[metric]


def metric_scores(scores: sc.RowScores) -> dict[str, float]:
    return {m: sc.row_metric(scores, m) for m in METRICS}


def model_scores(report: ev.Report, model: ev.Model) -> dict[int, sc.RowScores]:
    """A model's scores by row number."""
    return {r.record.row: r.scores[model] for r in report.rows if model in r.scores}


def row_lines(report: ev.Report, other: dict[int, sc.RowScores] | None = None) -> list[RowLine]:
    """The report's scored rows in row order; `other` (by row) is what the gap is taken against."""
    lines = []
    for result in report.rows:
        if "tuned" not in result.scores:
            continue
        mine = result.scores["tuned"]
        theirs = other.get(result.record.row) if other is not None else None
        lines.append(RowLine(result.record.row, metric_scores(mine), tuple(mine.flags),
                             metric_scores(theirs) if theirs is not None else None,
                             tuple(theirs.flags) if theirs is not None else ()))
    return sorted(lines, key=lambda line: line.row)


def default_descending(key: SortKey) -> bool:
    """Rows in file order; scores and gaps best first."""
    return key != "row"


def sort_lines(lines: Sequence[RowLine], key: SortKey, metric: str = "rougeL",
               descending: bool | None = None) -> list[RowLine]:
    """The lines sorted by `key` (`metric` names the score the "other" and "gap" keys are about). Rows with
    no value for the key (no other side) go last either way; ties keep row order."""
    if descending is None:
        descending = default_descending(key)

    def value(line: RowLine) -> float | None:
        if key == "row":
            return float(line.row)
        if key == "gap":
            return line.gap(metric)
        if key == "other":
            return None if line.other is None else line.other[metric]
        return line.scores[key]

    by_row = sorted(lines, key=lambda line: line.row)
    present = [line for line in by_row if value(line) is not None]
    missing = [line for line in by_row if value(line) is None]
    # Python's sort is stable: sorting on the value alone keeps row order among equals, both ways.
    present.sort(key=lambda line: value(line) or 0.0, reverse=descending)
    return present + missing


def next_sort_key(key: SortKey, has_other: bool) -> SortKey:
    """The sort key after `key` in the table's column order (the gap columns only when there is a side)."""
    keys = [k for k in SORT_KEYS if has_other or k not in ("other", "gap")]
    return keys[(keys.index(key) + 1) % len(keys)] if key in keys else keys[0]


def row_cells(line: RowLine, metric: str) -> tuple[str, ...]:
    """row, R-1, R-2, R-L, chrF++, then (with another side) its score and the gap on `metric`, then flags."""
    cells = [str(line.row), *(points(line.scores[m]) for m in METRICS)]
    if line.other is not None:
        gap = line.gap(metric)
        cells += [points(line.other[metric]), signed(gap) if gap is not None else "–"]
    return (*cells, " ".join(line.flags))


# -- two runs on the same rows ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    metric: str
    rows: int
    """Rows both evals scored."""
    difference: sc.Difference
    """This eval's tuned model minus the other's, with its paired bootstrap 95% interval."""


def compare(first: ev.LoadedEval, second: ev.LoadedEval, metrics: Sequence[str] = METRICS) -> list[Comparison]:
    """Per metric: first's tuned minus second's tuned over the rows both have (`evaluation.compare_rows`)."""
    out = []
    for metric in metrics:
        pairs = ev.compare_rows(first, second, metric)
        d = sc.paired_bootstrap([a for _row, a, _b in pairs], [b for _row, _a, b in pairs], metric)
        out.append(Comparison(metric, len(pairs), d))
    return out


# -- one row, whole -----------------------------------------------------------------------------------------

def scores_line(scores: sc.RowScores) -> str:
    """R-1 45.0 · R-2 20.1 · R-L 40.0 · chrF++ 50.2 · length 0.90 · Devanagari 100% · flags: loop"""
    parts = [f"{METRIC_TITLES[m]} {points(sc.row_metric(scores, m))}" for m in METRICS]
    parts += [f"length {_ratio(scores.length_ratio)}", f"Devanagari {100 * scores.devanagari_share:.0f}%"]
    flags = scores.flags
    return " · ".join(parts) + (f" · flags: {', '.join(flags)}" if flags else "")


def output_note(output: ev.Output) -> str:
    """12 tokens, 0.40 s (and whether it hit max_new_tokens)."""
    tokens = f"{output.tokens} token{'' if output.tokens == 1 else 's'}"
    return f"{tokens}, {output.seconds:.2f} s" + (" · hit max_new_tokens" if output.unended else "")


# -- an eval being made -------------------------------------------------------------------------------------

def progress_line(done: int, total: int, made: int, elapsed_s: float) -> str:
    """"12/24 rows · 1.3 rows/s · ETA 0:09": `made` rows in `elapsed_s` seconds give the rate (rows done
    before a resume do not count towards it)."""
    text = f"{done}/{total} rows"
    if made > 0 and elapsed_s > 0:
        rate = made / elapsed_s
        text += f" · {rate:.2f} rows/s · ETA {duration((total - done) / rate)}"
    return text
