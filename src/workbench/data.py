"""Datasets: load a source, map its columns, validate rows, render and tokenize samples with their loss
mask, and compute statistics over the whole dataset.

Local files are read by our own readers so that every problem carries the row number the user sees in
the file (a JSON Lines row is its line number; a CSV / JSON / parquet row is its 1-based record number).
Hub datasets go through `datasets.load_dataset`. The tokenizer is passed in (any fast Hugging Face
tokenizer), so this module imports neither torch nor transformers.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import statistics
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from workbench.templates import BOS, EOS, RenderedSample, render

BUILTIN_PREFIX = "builtin:"
BUILTIN_DATASETS = {"hindi_dialogues": ("hindi_dialogues_train.jsonl", "hindi_dialogues_heldout.jsonl")}
LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

# Kinds of problems. The first group makes a row unusable; the second is reported but trained on.
INVALID_KINDS = ("malformed", "invalid_utf8", "missing_column", "non_string", "empty", "whitespace")
WARNING_KINDS = ("duplicate", "over_limit", "nothing_trained")
ZERO_WIDTH = ("\u200b", "\ufeff")


class DataError(Exception):
    """A dataset problem phrased for the user (names the file and, where there is one, the row)."""


@dataclass
class RawRow:
    row: int
    """1-based row number as the user sees it in the file."""
    values: dict[str, Any] | None
    error: str | None = None
    error_kind: str | None = None


@dataclass(frozen=True)
class RowIssue:
    row: int
    kind: str
    detail: str

    def describe(self) -> str:
        return f"row {self.row}: {self.kind.replace('_', ' ')}: {self.detail}"


@dataclass(frozen=True)
class Example:
    row: int
    conversation: str
    summary: str


@dataclass
class LoadedDataset:
    source: str
    rows: list[RawRow]
    columns: list[str]
    fingerprint: str
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- loading

def builtin_path(name: str, split: str) -> Path:
    if name not in BUILTIN_DATASETS:
        raise DataError(f"{BUILTIN_PREFIX}{name}: no such built-in dataset (known: {', '.join(BUILTIN_DATASETS)})")
    train, heldout = BUILTIN_DATASETS[name]
    filename = {"train": train, "heldout": heldout, "test": heldout, "validation": heldout}.get(split)
    if filename is None:
        raise DataError(f"{BUILTIN_PREFIX}{name}: split {split!r} does not exist (use train or heldout)")
    return Path(str(resources.files("workbench.sample").joinpath(filename)))


def is_local_source(source: str) -> bool:
    return source.startswith(BUILTIN_PREFIX) or Path(source).suffix.lower() in LOCAL_SUFFIXES or Path(source).exists()


def _clean_text(value: Any) -> Any:
    """Undo file-format noise that nobody means as content: a byte-order mark and Windows line ends."""
    if isinstance(value, str):
        if value.startswith("\ufeff"):
            value = value[1:]
        value = value.replace("\r\n", "\n")
    return value


def _read_jsonl(data: bytes) -> Iterable[RawRow]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RawRow(number, None, f"invalid UTF-8 byte at column {exc.start + 1}", "invalid_utf8")
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RawRow(number, None, f"not valid JSON ({exc.msg} at column {exc.colno})", "malformed")
            continue
        if not isinstance(value, dict):
            yield RawRow(number, None, f"is a JSON {type(value).__name__}, not an object", "malformed")
            continue
        yield RawRow(number, {k: _clean_text(v) for k, v in value.items()})


def _decode_whole(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: invalid UTF-8 byte on line {line}; save the file as UTF-8") from None


def _read_json(data: bytes, path: Path) -> Iterable[RawRow]:
    try:
        value = json.loads(_decode_whole(data, path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} on line {exc.lineno}, column {exc.colno})") from None
    if isinstance(value, dict):
        # {"data": [...]} (the layout `datasets` also accepts) or {"col": [values...]}
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(value) == 1 and lists and all(isinstance(r, dict) for r in lists[0]):
            value = lists[0]
        elif value and len(lists) == len(value) and len({len(v) for v in lists}) == 1:
            keys = list(value)
            value = [dict(zip(keys, items, strict=True)) for items in zip(*lists, strict=True)]
        else:
            raise DataError(f"{path}: expected a JSON list of objects (or JSON Lines, one object per line)")
    if not isinstance(value, list):
        raise DataError(f"{path}: expected a JSON list of objects, found a {type(value).__name__}")
    for number, item in enumerate(value, start=1):
        if isinstance(item, dict):
            yield RawRow(number, {k: _clean_text(v) for k, v in item.items()})
        else:
            yield RawRow(number, None, f"is a JSON {type(item).__name__}, not an object", "malformed")


def _read_csv(data: bytes, path: Path) -> Iterable[RawRow]:
    reader = csv.reader(io.StringIO(_decode_whole(data, path), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [h.strip() for h in header]
    for number, record in enumerate(reader, start=1):
        if not record or (all(not c.strip() for c in record) and len(record) <= 1):
            yield RawRow(number, None, "is an empty line", "empty")
            continue
        if len(record) != len(header):
            yield RawRow(
                number, None, f"has {len(record)} fields, the header has {len(header)}", "malformed"
            )
            continue
        yield RawRow(number, {k: _clean_text(v) for k, v in zip(header, record, strict=True)})


def _read_parquet(path: Path) -> Iterable[RawRow]:
    import pyarrow.parquet as pq  # installed with `datasets`

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"{path}: cannot be read as parquet ({exc})") from None
    for number, item in enumerate(table.to_pylist(), start=1):
        yield RawRow(number, {k: _clean_text(v) for k, v in item.items()})


def _read_hub(source: str, split: str) -> list[RawRow]:
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        import datasets

        ds = datasets.load_dataset(source, split=split)
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise DataError(f"{source}: {exc}") from None
        raise DataError(_hub_message(source, exc, offline)) from None
    except Exception as exc:
        raise DataError(_hub_message(source, exc, offline)) from None
    return [RawRow(i, {k: _clean_text(v) for k, v in item.items()}) for i, item in enumerate(ds, start=1)]


def _hub_message(source: str, exc: Exception, offline: bool) -> str:
    name = type(exc).__name__
    if offline or "offline" in str(exc).lower() or "connection" in name.lower():
        return (
            f"{source}: not found on disk and the Hugging Face hub cannot be reached (offline). "
            "Use a local file (jsonl / json / csv / parquet), or download the dataset on a machine with "
            "network access into the datasets cache first."
        )
    if "gated" in str(exc).lower() or "401" in str(exc) or "403" in str(exc):
        return f"{source}: the dataset is gated or private; accept its terms on the hub and log in (huggingface-cli login)."
    return f"{source}: no such local file, and loading it from the Hugging Face hub failed ({name}: {exc})"


def load_rows(source: str, split: str = "train") -> LoadedDataset:
    """Read every row of a source; per-row problems stay in the rows, file-level ones raise DataError."""
    if source.startswith(BUILTIN_PREFIX):
        path = builtin_path(source[len(BUILTIN_PREFIX) :], split)
    else:
        path = Path(source).expanduser()
    notes: list[str] = []
    if source.startswith(BUILTIN_PREFIX) or path.exists() or path.suffix.lower() in LOCAL_SUFFIXES:
        if not path.exists():
            raise DataError(f"{path}: no such file")
        if path.is_dir():
            raise DataError(f"{path}: is a folder; name a .jsonl, .json, .csv or .parquet file")
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            rows = list(_read_parquet(path))
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
            digest = hashlib.sha256(data).hexdigest()
            if suffix == ".csv":
                rows = list(_read_csv(data, path))
            elif suffix == ".json":
                rows = list(_read_json(data, path))
            elif suffix == ".jsonl" or data.lstrip()[:1] == b"{":
                rows = list(_read_jsonl(data))
            else:
                raise DataError(f"{path}: unknown file type {suffix!r} (use .jsonl, .json, .csv or .parquet)")
    else:
        rows = _read_hub(source, split)
        digest = hashlib.sha256(
            "\n".join(json.dumps(r.values, ensure_ascii=False, sort_keys=True, default=str) for r in rows).encode()
        ).hexdigest()
    columns: list[str] = []
    for r in rows:
        for key in r.values or {}:
            if key not in columns:
                columns.append(key)
    if not rows:
        raise DataError(f"{source}: holds no rows")
    return LoadedDataset(source=source, rows=rows, columns=columns, fingerprint=digest, notes=notes)


# ----------------------------------------------------------------------------------------- validation

def _check_value(row: RawRow, column: str) -> tuple[str | None, RowIssue | None]:
    assert row.values is not None
    if column not in row.values:
        return None, RowIssue(row.row, "missing_column", f"has no {column!r} column")
    value = row.values[column]
    if value is None:
        return None, RowIssue(row.row, "empty", f"{column} is null")
    if not isinstance(value, str):
        return None, RowIssue(row.row, "non_string", f"{column} is a {type(value).__name__}, not text")
    if value == "":
        return None, RowIssue(row.row, "empty", f"{column} is empty")
    if not value.replace("\u200b", "").strip():
        return None, RowIssue(row.row, "whitespace", f"{column} holds only whitespace")
    return value, None


def validate_rows(
    dataset: LoadedDataset, input_column: str, output_column: str
) -> tuple[list[Example], list[RowIssue]]:
    """Split rows into usable examples and problems; duplicates are reported but kept (trained on)."""
    if dataset.columns and (input_column not in dataset.columns or output_column not in dataset.columns):
        missing = [c for c in (input_column, output_column) if c not in dataset.columns]
        raise DataError(
            f"{dataset.source}: no column {', '.join(repr(c) for c in missing)}; "
            f"the columns are {', '.join(dataset.columns)}"
        )
    examples: list[Example] = []
    issues: list[RowIssue] = []
    seen: dict[tuple[str, str], int] = {}
    for row in dataset.rows:
        if row.values is None:
            issues.append(RowIssue(row.row, row.error_kind or "malformed", row.error or "unreadable"))
            continue
        conversation, problem = _check_value(row, input_column)
        if problem is None:
            summary, problem = _check_value(row, output_column)
        if problem is not None:
            issues.append(problem)
            continue
        assert conversation is not None and summary is not None
        key = (conversation.strip(), summary.strip())
        if key in seen:
            issues.append(RowIssue(row.row, "duplicate", f"same conversation and summary as row {seen[key]}"))
        else:
            seen[key] = row.row
        examples.append(Example(row.row, conversation, summary))
    return examples, issues


def invalid_issues(issues: Sequence[RowIssue]) -> list[RowIssue]:
    return [i for i in issues if i.kind in INVALID_KINDS]


# ----------------------------------------------------------------------------------------- tokenizing

class Tokenizer(Protocol):
    """The part of a fast Hugging Face tokenizer that this module uses."""

    bos_token: str | None
    eos_token: str | None

    def __call__(self, text: Any, **kwargs: Any) -> Any: ...


@dataclass
class TokenizedSample:
    row: int
    input_ids: list[int]
    """Token ids after truncation (what the model is trained on)."""
    trained: list[bool]
    """Per kept token: True where the loss is computed (the response), False where it is masked (-100)."""
    pieces: list[str]
    """Per kept token: the exact text it covers (special tokens as written, e.g. `<bos>`)."""
    special: list[bool]
    """Per kept token: whether it is a special token (shown styled)."""
    n_tokens: int
    """Length before truncation."""
    n_prompt_tokens: int
    n_response_tokens: int
    cut_text: str
    """The text truncation removes (empty when the sample fits)."""
    cut_trained_tokens: int
    """How many trained (response) tokens truncation removes."""
    text: str = ""

    @property
    def truncated(self) -> int:
        return self.n_tokens - len(self.input_ids)

    @property
    def n_trained(self) -> int:
        return sum(self.trained)

    def labels(self) -> list[int]:
        return [t if keep else -100 for t, keep in zip(self.input_ids, self.trained, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def special_token_strings(tokenizer: Any) -> set[str]:
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    specials.update(getattr(tokenizer, "additional_special_tokens", []) or [])
    with contextlib.suppress(AttributeError):
        specials.update(t.content for t in tokenizer.added_tokens_decoder.values() if t.special)
    return specials


def render_example(example: Example, template: str, instruction: str, tokenizer: Any) -> RenderedSample:
    return render(
        template,
        instruction,
        example.conversation,
        example.summary,
        bos=getattr(tokenizer, "bos_token", None) or BOS,
        eos=getattr(tokenizer, "eos_token", None) or EOS,
    )


def tokenize_rendered(
    rendered_list: Sequence[RenderedSample],
    rows: Sequence[int],
    tokenizer: Any,
    max_seq_length: int,
    train_on_responses_only: bool = True,
    specials: set[str] | None = None,
) -> list[TokenizedSample]:
    """Tokenize rendered samples (no added special tokens: the text holds its one `<bos>`) and mark which
    tokens are trained. A token belongs to the response when it starts at or after the prompt's end, so
    the mask comes from character offsets of the very tokenization that is trained on."""
    if not rendered_list:
        return []
    specials = special_token_strings(tokenizer) if specials is None else specials
    texts = [r.text for r in rendered_list]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out: list[TokenizedSample] = []
    for rendered, row, ids, offsets in zip(rendered_list, rows, enc["input_ids"], enc["offset_mapping"], strict=True):
        text = rendered.text
        boundary = len(rendered.prompt)
        trained_all = [start >= boundary for start, _ in offsets]
        if not train_on_responses_only:
            trained_all = [True] * len(ids)
        pieces: list[str] = []
        special: list[bool] = []
        shown_to = 0
        for start, end in offsets:
            # Byte-level tokens can split one character; show each character once, on its first token.
            piece = text[max(start, shown_to) : end]
            shown_to = max(shown_to, end)
            pieces.append(piece)
            special.append(piece in specials)
        keep = min(len(ids), max_seq_length)
        cut_from = offsets[keep][0] if keep < len(ids) else len(text)
        n_prompt = sum(1 for s, _ in offsets if s < boundary)
        out.append(
            TokenizedSample(
                row=row,
                input_ids=list(ids[:keep]),
                trained=trained_all[:keep],
                pieces=pieces[:keep],
                special=special[:keep],
                n_tokens=len(ids),
                n_prompt_tokens=n_prompt,
                n_response_tokens=len(ids) - n_prompt,
                cut_text=text[cut_from:],
                cut_trained_tokens=sum(trained_all[keep:]),
                text=text,
            )
        )
    return out


def tokenize_examples(
    examples: Sequence[Example],
    tokenizer: Any,
    template: str,
    instruction: str,
    max_seq_length: int,
    train_on_responses_only: bool = True,
) -> list[TokenizedSample]:
    rendered = [render_example(e, template, instruction, tokenizer) for e in examples]
    return tokenize_rendered(
        rendered, [e.row for e in examples], tokenizer, max_seq_length, train_on_responses_only
    )


# ----------------------------------------------------------------------------------------- statistics

@dataclass
class DatasetStats:
    source: str
    rows: int
    valid_rows: int
    columns: list[str]
    fingerprint: str
    max_seq_length: int
    token_lengths: dict[str, float]
    """min, mean, median, p95, max of tokens per sample (before truncation)."""
    histogram: list[tuple[int, int, int]]
    """(bin start, bin end, rows) over tokens per sample."""
    over_limit_rows: list[int]
    nothing_trained_rows: list[int]
    issues: list[RowIssue]
    notes: list[str]
    total_tokens: int
    trained_tokens: int
    complete: bool = True

    @property
    def invalid_rows(self) -> list[int]:
        return sorted({i.row for i in self.issues if i.kind in INVALID_KINDS})

    def count(self, kind: str) -> int:
        return sum(1 for i in self.issues if i.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["issues"] = [asdict(i) for i in self.issues]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetStats:
        d = dict(d)
        d["issues"] = [RowIssue(**i) for i in d["issues"]]
        d["histogram"] = [tuple(b) for b in d["histogram"]]
        return cls(**d)

    def summary_lines(self) -> list[str]:
        tl = self.token_lengths
        lines = [
            f"{self.rows} rows, {self.valid_rows} usable; tokens per sample: min {tl.get('min', 0):.0f}, "
            f"median {tl.get('median', 0):.0f}, mean {tl.get('mean', 0):.0f}, p95 {tl.get('p95', 0):.0f}, "
            f"max {tl.get('max', 0):.0f}",
            f"{len(self.over_limit_rows)} rows over max_seq_length {self.max_seq_length}"
            + (f" (rows {_rows_list(self.over_limit_rows)})" if self.over_limit_rows else ""),
        ]
        if self.nothing_trained_rows:
            lines.append(
                f"{len(self.nothing_trained_rows)} rows lose the whole summary to truncation and train nothing "
                f"(rows {_rows_list(self.nothing_trained_rows)})"
            )
        for kind in (*INVALID_KINDS, "duplicate"):
            rows = [i.row for i in self.issues if i.kind == kind]
            if rows:
                lines.append(f"{len(rows)} {kind.replace('_', ' ')} rows ({_rows_list(rows)})")
        lines.extend(self.notes)
        return lines


def _rows_list(rows: Sequence[int], limit: int = 12) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f", … {len(rows) - limit} more" if len(rows) > limit else "")


def histogram(values: Sequence[int], bins: int = 12) -> list[tuple[int, int, int]]:
    if not values:
        return []
    lo, hi = min(values), max(values)
    if lo == hi:
        return [(lo, hi, len(values))]
    width = max(1, -(-(hi - lo + 1) // bins))
    counts = [0] * bins
    for v in values:
        counts[min((v - lo) // width, bins - 1)] += 1
    return [(lo + i * width, lo + (i + 1) * width - 1, c) for i, c in enumerate(counts)]


def _percentile(sorted_values: Sequence[int], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[k])


def text_notes(dataset: LoadedDataset, examples: Sequence[Example]) -> list[str]:
    notes = list(dataset.notes)
    zw = [e.row for e in examples if "\u200b" in e.conversation or "\u200b" in e.summary]
    if zw:
        notes.append(f"{len(zw)} rows contain zero-width spaces (U+200B), kept as written (rows {_rows_list(zw)})")
    return notes


def compute_stats(
    dataset: LoadedDataset,
    tokenizer: Any,
    input_column: str,
    output_column: str,
    template: str,
    instruction: str,
    max_seq_length: int,
    train_on_responses_only: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    batch_size: int = 256,
) -> DatasetStats:
    """Statistics over every row; reports progress per batch and ends early (complete=False) on stop."""
    examples, issues = validate_rows(dataset, input_column, output_column)
    specials = special_token_strings(tokenizer)
    lengths: list[int] = []
    over: list[int] = []
    nothing: list[int] = []
    total = trained = 0
    complete = True
    for start in range(0, len(examples), batch_size):
        if stop is not None and stop.is_set():
            complete = False
            break
        batch = examples[start : start + batch_size]
        rendered = [render_example(e, template, instruction, tokenizer) for e in batch]
        for sample in tokenize_rendered(
            rendered, [e.row for e in batch], tokenizer, max_seq_length, train_on_responses_only, specials
        ):
            lengths.append(sample.n_tokens)
            total += len(sample.input_ids)
            trained += sample.n_trained
            if sample.truncated:
                over.append(sample.row)
            if sample.n_trained == 0:
                nothing.append(sample.row)
        if on_progress is not None:
            on_progress(min(start + batch_size, len(examples)), len(examples))
    for row in over:
        issues.append(RowIssue(row, "over_limit", f"longer than max_seq_length {max_seq_length}; the end is cut"))
    for row in nothing:
        issues.append(RowIssue(row, "nothing_trained", "no summary token survives truncation"))
    issues.sort(key=lambda i: (i.row, i.kind))
    ordered = sorted(lengths)
    token_lengths = (
        {
            "min": float(ordered[0]),
            "mean": statistics.fmean(ordered),
            "median": float(statistics.median(ordered)),
            "p95": _percentile(ordered, 0.95),
            "max": float(ordered[-1]),
        }
        if ordered
        else {}
    )
    return DatasetStats(
        source=dataset.source,
        rows=len(dataset.rows),
        valid_rows=len(examples),
        columns=dataset.columns,
        fingerprint=dataset.fingerprint,
        max_seq_length=max_seq_length,
        token_lengths=token_lengths,
        histogram=histogram(lengths),
        over_limit_rows=over,
        nothing_trained_rows=nothing,
        issues=issues,
        notes=text_notes(dataset, examples),
        total_tokens=total,
        trained_tokens=trained,
        complete=complete,
    )


def split_eval(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A deterministic train / eval split (same seed, same split)."""
    if fraction <= 0 or len(examples) < 2:
        return list(examples), []
    import random

    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(examples) * fraction))
    eval_idx = set(order[:n_eval])
    train = [e for i, e in enumerate(examples) if i not in eval_idx]
    held = [e for i, e in enumerate(examples) if i in eval_idx]
    return train, held
