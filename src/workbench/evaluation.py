"""Judging a run's summaries: which held-out rows, the record of each generated row, and the report.

An eval lives in a folder of its run (`runs/<run>/evals/<name>/`):
  eval.jsonl   one line per finished row (its input, reference, each model's output, token counts, time),
               appended as each row is made, so a stopped or crashed eval loses nothing and `--resume`
               continues it;
  eval.json    the scores (per model, and tuned minus base with bootstrap intervals), the rows used, the
               config fingerprint, the template, the decoding settings and the versions; rewritten
               atomically after every batch.
The generation itself is `workbench.engine.evaluate`; this module has no torch and no Textual (the CLI's
`score` command and the Eval pane use it as it is).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench import data as wbdata
from workbench import scores as sc
from workbench.config import RunConfig, config_to_dict
from workbench.errors import UserError

Model = Literal["tuned", "base"]
EVALS_DIR = "evals"
ROWS_FILE = "eval.jsonl"
REPORT_FILE = "eval.json"


# -- which rows ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeldOut:
    examples: list[wbdata.Example]
    description: str
    """Where the rows come from, for the report and the screen."""


def heldout_rows(config: RunConfig, source: str | None = None, split: str | None = None) -> HeldOut:
    """The rows a run is judged on: an explicit source, else the config's eval source, else the bundled
    held-out split for the bundled data, else the rows data.eval_fraction holds out of training."""
    d = config.data
    source = source or config.eval.heldout_source or None
    if source is None and d.source.startswith(wbdata.BUILTIN_PREFIX):
        source, split = d.source, "heldout"
    if source is not None:
        split = split or config.eval.heldout_split
        dataset = wbdata.load_rows(source, split)
        examples, _issues = wbdata.require_usable(dataset, d.input_column, d.output_column, d.template)
        return HeldOut(examples, f"{source} (split {split})" if not Path(source).exists() else source)
    if d.eval_fraction > 0:
        dataset = wbdata.load_rows(d.source, d.split)
        examples, _issues = wbdata.require_usable(dataset, d.input_column, d.output_column, d.template)
        _train, held = wbdata.split_eval(examples, d.eval_fraction, config.training.seed)
        return HeldOut(held, f"{d.source}: the {len(held)} rows data.eval_fraction = {d.eval_fraction} held out")
    raise UserError("no_heldout", f"{d.source}: no held-out rows to judge the summaries on",
                    "Give --data FILE (and --split), set eval.heldout_source, or set data.eval_fraction above 0.")


# -- what was made ------------------------------------------------------------------------------------------

class Output(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    tokens: int
    unended: bool
    """It reached max_new_tokens before the model ended it."""
    seconds: float
    """This row's share of its batch's generation time."""


class RowRecord(BaseModel):
    """One held-out row, generated: a line of eval.jsonl."""

    model_config = ConfigDict(extra="forbid")
    row: int
    """The row number in its file."""
    input: str
    reference: str
    prompt_tokens: int
    cut_tokens: int = 0
    """Tokens cut from the start of a conversation too long for max_seq_length (0: none)."""
    outputs: dict[Model, Output]
    t: float = Field(default_factory=time.time)


class Decoding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int
    do_sample: bool
    temperature: float | None = None
    top_p: float | None = None
    batch_size: int


class EvalPlan(BaseModel):
    """What an eval is: its identity decides whether `--resume` may continue an existing eval.jsonl."""

    model_config = ConfigDict(extra="forbid")
    run: str
    weights: str
    """final adapter, or checkpoint-N."""
    step: int | None
    heldout: str
    rows: list[int]
    base: bool
    decoding: Decoding
    template: str
    instruction: str
    config_fingerprint: str
    stem: bool = False

    def identity(self) -> dict[str, Any]:
        return self.model_dump(exclude={"stem"})


def config_fingerprint(config: RunConfig) -> str:
    return hashlib.sha256(json.dumps(config_to_dict(config), sort_keys=True).encode()).hexdigest()


def eval_name(weights: str, rows: int, base: bool) -> str:
    return f"{weights.replace(' ', '-')}-{rows}rows{'-vs-base' if base else ''}"


def read_records(path: Path) -> list[RowRecord]:
    """Every whole line of an eval.jsonl (a line torn by a crash is skipped: its row is made again)."""
    records: list[RowRecord] = []
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return records
    for raw in lines:
        if raw.strip():
            try:
                records.append(RowRecord.model_validate_json(raw))
            except ValidationError:
                continue
    return records


def append_record(path: Path, record: RowRecord) -> None:
    """One line per write: a crash tears at most the last line, which read_records skips."""
    line = record.model_dump_json().encode("utf-8") + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as existing:
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)


# -- the report ----------------------------------------------------------------------------------------------

@dataclass
class RowResult:
    record: RowRecord
    scores: dict[Model, sc.RowScores]


@dataclass
class Report:
    models: dict[Model, sc.Summary]
    differences: list[sc.Difference]
    """tuned minus base (empty without the base model)."""
    rows: list[RowResult]
    unscored: list[int]
    """Rows generated without a reference (not scored)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": {m: sc.as_dict(s) for m, s in self.models.items()},
            "differences": [sc.as_dict(d) | {"significant": d.significant} for d in self.differences],
            "rows_scored": len(self.rows),
            "rows_unscored": self.unscored,
        }


def score_records(records: Sequence[RowRecord], stem: bool = False, seed: int = 0) -> Report:
    """Scores of every record with a reference, per model, and tuned minus base when both were made."""
    scorer = sc.Scorer(stem=stem)
    scored = [r for r in records if r.reference.strip()]
    unscored = [r.row for r in records if not r.reference.strip()]
    models: list[Model] = [m for m in ("tuned", "base") if scored and all(m in r.outputs for r in scored)]
    results = [RowResult(r, {m: scorer.row(r.outputs[m].text, r.reference, r.input, r.outputs[m].unended)
                             for m in models}) for r in scored]
    summaries = {m: sc.summarize(scorer, [res.scores[m] for res in results], [r.outputs[m].text for r in scored],
                                 [r.reference for r in scored]) for m in models}
    diffs = (sc.differences([res.scores["tuned"] for res in results], [res.scores["base"] for res in results], seed)
             if "tuned" in models and "base" in models else [])
    return Report(summaries, diffs, results, unscored)


def report_document(plan: EvalPlan, report: Report, complete: bool, versions: dict[str, str]) -> dict[str, Any]:
    """eval.json: the plan (rows, decoding, template, fingerprint), the scores, and whether it finished."""
    return {"plan": plan.model_dump(), "complete": complete, "rows_done": len(report.rows) + len(report.unscored),
            **report.to_dict(), "versions": versions, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


# -- two files, as `workbench score` takes them ----------------------------------------------------------

def read_texts(path: Path, column: str | None) -> list[str]:
    """The texts of a jsonl / json / csv file (from `column`), or of a plain text file (one per line)."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".csv", ".parquet"):
        dataset = wbdata.load_rows(str(path))
        if column is None:
            raise UserError("score", f"{path}: name the column that holds the texts",
                            f"Its columns are {', '.join(dataset.columns)}.")
        texts = []
        for raw in dataset.rows:
            value = (raw.values or {}).get(column)
            if raw.values is None or not isinstance(value, str):
                problem = raw.error or (f"has no {column!r} column" if raw.values is not None and column not in raw.values
                                        else f"{column} is not text")
                raise UserError("score", f"{path}: row {raw.row}: {problem}", "Every row needs the text column.")
            texts.append(value)
        return texts
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise UserError("score", f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise UserError("score", f"{path}: not UTF-8 text (byte {exc.start})") from None


def score_pairs(references: Sequence[str], predictions: Sequence[str], stem: bool = False) -> Report:
    if len(references) != len(predictions):
        raise UserError("score", f"{len(references)} references but {len(predictions)} predictions",
                        "The files must be aligned: one prediction per reference, in the same order.")
    records = [RowRecord(row=i, input="", reference=ref, prompt_tokens=0,
                         outputs={"tuned": Output(text=pred, tokens=0, unended=False, seconds=0.0)})
               for i, (ref, pred) in enumerate(zip(references, predictions, strict=True), start=1)]
    return score_records(records, stem)


def per_row(report: Report, model: Model = "tuned") -> Iterable[dict[str, Any]]:
    for result in report.rows:
        scores = result.scores[model]
        yield {"row": result.record.row, **{m: round(100 * scores.rouge[m].f1, 2) for m in sc.ROUGE_TYPES},
               "chrf": round(scores.chrf, 2), "flags": scores.flags}


# -- reading evals back (the Eval pane) ----------------------------------------------------------------------

@dataclass
class LoadedEval:
    folder: Path
    plan: EvalPlan
    records: list[RowRecord]
    report: Report
    complete: bool

    @property
    def name(self) -> str:
        return self.folder.name


def load_eval(folder: Path) -> LoadedEval:
    """An eval folder's plan, rows and scores (scored again from eval.jsonl: the rows are the record)."""
    try:
        document = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        plan = EvalPlan.model_validate(document["plan"])
    except (OSError, ValueError, KeyError) as exc:
        raise UserError("bad_eval", f"{folder}: not a readable eval ({type(exc).__name__}: {exc})",
                        "Its eval.json is missing or damaged; run the eval again with another --name.") from None
    records = [r for r in read_records(folder / ROWS_FILE) if r.row in set(plan.rows)]
    return LoadedEval(folder, plan, records, score_records(records, plan.stem), len(records) == len(plan.rows))


def list_evals(run_dir: Path) -> list[Path]:
    """The eval folders of a run, newest first."""
    root = Path(run_dir) / EVALS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / REPORT_FILE).exists()]
    return sorted(found, key=lambda p: (p / REPORT_FILE).stat().st_mtime, reverse=True)


def compare_rows(first: LoadedEval, second: LoadedEval, metric: str = "rougeL") -> list[tuple[int, float, float]]:
    """(row, first's tuned score, second's tuned score) on the rows both evals have: two runs side by side."""
    mine = {r.record.row: sc.row_metric(r.scores["tuned"], metric) for r in first.report.rows if "tuned" in r.scores}
    theirs = {r.record.row: sc.row_metric(r.scores["tuned"], metric) for r in second.report.rows if "tuned" in r.scores}
    return [(row, mine[row], theirs[row]) for row in sorted(mine.keys() & theirs.keys())]
