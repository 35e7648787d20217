"""Datasets: load a source, map its columns, validate rows, render and tokenize samples with their loss
mask, and compute statistics over the whole dataset.

A row is either two text columns (conversation, summary) or a list of chat turns: TRL's conversational
format (`messages`: role / content) or ShareGPT (`conversations`: from / value). Chat rows are chosen by
what the data holds (`detect_layout`): the input column holds lists of turns, or neither configured
column exists and a `messages` / `conversations` column does. Every assistant turn is trained.

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

from workbench.templates import BOS, EOS, Message, RenderedSample, render_messages, with_instruction

BUILTIN_PREFIX = "builtin:"
BUILTIN_DATASETS = {"hindi_dialogues": ("hindi_dialogues_train.jsonl", "hindi_dialogues_heldout.jsonl")}
LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

# Kinds of problems. The first group makes a row unusable; the second is reported but trained on.
INVALID_KINDS = (
    "malformed", "invalid_utf8", "missing_column", "non_string", "empty", "whitespace",
    # chat rows
    "not_a_list", "bad_turn", "unknown_role", "bad_order", "no_assistant", "multi_turn",
)

# Columns that hold chat turns by convention (TRL, then ShareGPT), and the role spellings we read.
CHAT_COLUMNS = ("messages", "conversations")
ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
}
KNOWN_ROLES = "system, user (human), assistant (gpt, model)"


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
    """Two-column rows: the conversation. Chat rows: the first user turn (what chat is filled with)."""
    summary: str
    """Two-column rows: the summary. Chat rows: the reply to the first user turn."""
    turns: tuple[Message, ...] = ()
    """Chat rows: every turn as read, roles mapped onto system / user / assistant. Empty for two columns."""

    def messages(self, instruction: str) -> list[Message]:
        """The conversation to render; the instruction stands in for a system turn where there is none."""
        turns = self.turns or (Message("user", self.conversation), Message("assistant", self.summary))
        return with_instruction(instruction, turns)


@dataclass
class LoadedDataset:
    source: str
    rows: list[RawRow]
    columns: list[str]
    fingerprint: str
    notes: list[str] = field(default_factory=list)
    checked: dict[tuple[str, str, str | None], CheckedRows] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """check_rows results by (input column, output column, template): the engine validates a dataset it
    keeps loaded once, not on every previewed row. Rows are never changed after loading."""


# ---------------------------------------------------------------------------------------------- loading

def builtin_path(name: str, split: str) -> Path:
    if name not in BUILTIN_DATASETS:
        raise DataError(f"{BUILTIN_PREFIX}{name}: no such built-in dataset (known: {', '.join(BUILTIN_DATASETS)})")
    train, heldout = BUILTIN_DATASETS[name]
    filename = {"train": train, "heldout": heldout, "test": heldout, "validation": heldout}.get(split)
    if filename is None:
        raise DataError(f"{BUILTIN_PREFIX}{name}: split {split!r} does not exist (use train or heldout)")
    return Path(str(resources.files("workbench.sample").joinpath(filename)))



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
    return _check_text(row.row, column, row.values[column])


def _check_text(row: int, what: str, value: Any) -> tuple[str | None, RowIssue | None]:
    if value is None:
        return None, RowIssue(row, "empty", f"{what} is null")
    if not isinstance(value, str):
        return None, RowIssue(row, "non_string", f"{what} is a {type(value).__name__}, not text")
    if value == "":
        return None, RowIssue(row, "empty", f"{what} is empty")
    if not value.replace("\u200b", "").strip():
        return None, RowIssue(row, "whitespace", f"{what} holds only whitespace")
    return value, None


@dataclass(frozen=True)
class Layout:
    """How rows are read: two text columns, or chat turns from one column."""

    chat_column: str | None = None
    """The column of chat turns; None for two text columns."""
    note: str = ""
    """What was detected, phrased for the statistics' notes (empty for two text columns)."""


def _turn_list(value: Any) -> list[Any] | None:
    """A list of turns as stored: a list, or (CSV has no lists) JSON text of a list of objects."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.lstrip().startswith("["):
        with contextlib.suppress(ValueError):
            decoded = json.loads(value)
            if isinstance(decoded, list) and decoded and isinstance(decoded[0], dict):
                return decoded
    return None


def _holds_turns(dataset: LoadedDataset, column: str, output_exists: bool) -> bool:
    """Whether a column holds chat turns: most of its values are lists of turns, or (with no output column
    to pair it with) any is. Decided over all rows, so that one odd row does not decide for the file."""
    turns = others = 0
    for r in dataset.rows:
        value = (r.values or {}).get(column)
        if value is not None:
            if _turn_list(value) is not None:
                turns += 1
            else:
                others += 1
    return turns > others or (turns > 0 and not output_exists)


def _chat_note(dataset: LoadedDataset, column: str, output_column: str, why: str) -> str:
    stored = (_turn_list((r.values or {}).get(column)) for r in dataset.rows)
    first = next((t[0] for t in stored if t and isinstance(t[0], dict)), {})
    sharegpt = "from" in first and "role" not in first
    kind = "ShareGPT turns: from / value" if sharegpt else "chat turns: role / content"
    unused = output_column in dataset.columns and output_column != column
    unused_note = f"; {output_column!r} is not used" if unused else ""
    return f"{why}: {column!r} holds {kind}; every assistant turn is trained, the rest is masked{unused_note}"


def detect_layout(dataset: LoadedDataset, input_column: str, output_column: str) -> Layout:
    """Chat turns when the input column holds lists of turns, or when neither configured column exists
    and a `messages` / `conversations` column does; two text columns otherwise. Raises DataError when
    the configured columns do not exist and no chat column stands in for them."""
    columns = dataset.columns
    if not columns:  # every row unreadable: the row problems say why
        return Layout()
    if input_column in columns:
        if _holds_turns(dataset, input_column, output_column in columns):
            return Layout(input_column, _chat_note(dataset, input_column, output_column, "chat format"))
        if output_column in columns:
            return Layout()
    elif output_column not in columns:
        chat = next((c for c in CHAT_COLUMNS if c in columns), None)
        if chat is not None:
            why = f"chat format (no {input_column!r} or {output_column!r} column)"
            return Layout(chat, _chat_note(dataset, chat, output_column, why))
    missing = [c for c in (input_column, output_column) if c not in columns]
    chat_hint = [c for c in CHAT_COLUMNS if c in columns]
    raise DataError(
        f"{dataset.source}: no column {', '.join(repr(c) for c in missing)}; "
        f"the columns are {', '.join(columns)}"
        + (f" (for chat turns, set the input column to {chat_hint[0]!r})" if chat_hint else "")
    )


def _read_turn(row: int, column: str, number: int, turn: Any) -> tuple[Message | None, RowIssue | None]:
    where = f"{column} turn {number}"
    if not isinstance(turn, dict):
        what = f"{where} is a {type(turn).__name__}, not an object with a role and content"
        return None, RowIssue(row, "bad_turn", what)
    # TRL's keys, else ShareGPT's (a parquet struct may hold both, the unused ones null)
    role = turn.get("role") if turn.get("role") is not None else turn.get("from")
    if role is None:
        return None, RowIssue(row, "bad_turn", f"{where} has no role (a 'role' or 'from' key)")
    if not isinstance(role, str) or role.strip().lower() not in ROLE_ALIASES:
        return None, RowIssue(row, "unknown_role", f"{where} has role {role!r}; known roles: {KNOWN_ROLES}")
    role = ROLE_ALIASES[role.strip().lower()]
    key = "content" if turn.get("content") is not None or "value" not in turn else "value"
    if key not in turn:
        return None, RowIssue(row, "bad_turn", f"{where} ({role}) has no content (a 'content' or 'value' key)")
    content, problem = _check_text(row, f"{where} ({role}) content", _clean_text(turn[key]))
    if problem is not None:
        return None, problem
    assert content is not None
    return Message(role, content), None


def _order_problem(row: int, column: str, turns: Sequence[Message]) -> RowIssue | None:
    """An optional first system turn, then user and assistant alternating from user, ending with a reply."""
    offset = 1 if turns[0].role == "system" else 0  # user turns sit at even places after it
    for number, message in enumerate(turns, start=1):
        if message.role == "system":
            if number > 1:
                what = f"{column} turn {number} is a system turn; only the first turn may be one"
                return RowIssue(row, "bad_order", what)
            continue
        expected = "user" if (number - 1 - offset) % 2 == 0 else "assistant"
        if message.role != expected:
            what = (
                f"{column} turn {number} is {message.role}, {expected} expected: roles alternate user / "
                "assistant, starting with user (after an optional system turn)"
            )
            return RowIssue(row, "bad_order", what)
    if not any(m.role == "assistant" for m in turns):
        return RowIssue(row, "no_assistant", f"{column} has no assistant turn: nothing to train on")
    if turns[-1].role == "user":
        what = f"{column} ends with a user turn (turn {len(turns)}) that no assistant turn answers"
        return RowIssue(row, "bad_order", what)
    return None


def _read_chat_row(row: RawRow, column: str, template: str | None) -> tuple[Example | None, RowIssue | None]:
    assert row.values is not None
    if column not in row.values:
        return None, RowIssue(row.row, "missing_column", f"has no {column!r} column")
    value = row.values[column]
    if value is None:
        return None, RowIssue(row.row, "empty", f"{column} is null")
    stored = _turn_list(value)
    if stored is None:
        what = f"{column} is a {type(value).__name__}, not a list of turns"
        return None, RowIssue(row.row, "not_a_list", what)
    if not stored:
        return None, RowIssue(row.row, "empty", f"{column} holds no turns")
    turns: list[Message] = []
    for number, turn in enumerate(stored, start=1):
        message, problem = _read_turn(row.row, column, number, turn)
        if problem is not None:
            return None, problem
        assert message is not None
        turns.append(message)
    problem = _order_problem(row.row, column, turns)
    if problem is not None:
        return None, problem
    replies = sum(1 for m in turns if m.role == "assistant")
    if template == "instruction" and replies > 1:
        return None, RowIssue(
            row.row, "multi_turn", f"{column} holds {replies} user / assistant exchanges; the instruction "
            "template takes one: use the gemma_chat template for multi-turn rows",
        )
    user = next(m for m in turns if m.role == "user")
    reply = next(m for m in turns if m.role == "assistant")
    return Example(row.row, user.content, reply.content, tuple(turns)), None


def _read_columns_row(
    row: RawRow, input_column: str, output_column: str
) -> tuple[Example | None, RowIssue | None]:
    conversation, problem = _check_value(row, input_column)
    if problem is None:
        summary, problem = _check_value(row, output_column)
    if problem is not None:
        return None, problem
    assert conversation is not None and summary is not None
    return Example(row.row, conversation, summary), None


def _duplicate_key(example: Example) -> tuple[str, ...]:
    if example.turns:
        return tuple(f"{m.role}\0{m.content.strip()}" for m in example.turns)
    return (example.conversation.strip(), example.summary.strip())


@dataclass
class CheckedRows:
    examples: list[Example]
    """The usable rows (duplicates included: they are reported and trained on)."""
    issues: list[RowIssue]
    layout: Layout


def check_rows(
    dataset: LoadedDataset, input_column: str, output_column: str, template: str | None = None
) -> CheckedRows:
    """Read every row as two text columns or as chat turns (`detect_layout`) and split usable examples
    from problems. `template` adds the checks that depend on it (the instruction template takes one
    exchange). Cached on the dataset; the lists returned are the caller's to change."""
    key = (input_column, output_column, template)
    if key not in dataset.checked:
        dataset.checked[key] = _check_rows(dataset, input_column, output_column, template)
    cached = dataset.checked[key]
    return CheckedRows(list(cached.examples), list(cached.issues), cached.layout)


def _check_rows(
    dataset: LoadedDataset, input_column: str, output_column: str, template: str | None
) -> CheckedRows:
    layout = detect_layout(dataset, input_column, output_column)
    examples: list[Example] = []
    issues: list[RowIssue] = []
    seen: dict[tuple[str, ...], int] = {}
    for row in dataset.rows:
        if row.values is None:
            issues.append(RowIssue(row.row, row.error_kind or "malformed", row.error or "unreadable"))
            continue
        if layout.chat_column is not None:
            example, problem = _read_chat_row(row, layout.chat_column, template)
        else:
            example, problem = _read_columns_row(row, input_column, output_column)
        if problem is not None:
            issues.append(problem)
            continue
        assert example is not None
        key = _duplicate_key(example)
        if key in seen:
            what = "turns" if example.turns else "conversation and summary"
            issues.append(RowIssue(row.row, "duplicate", f"same {what} as row {seen[key]}"))
        else:
            seen[key] = row.row
        examples.append(example)
    return CheckedRows(examples, issues, layout)


def validate_rows(
    dataset: LoadedDataset, input_column: str, output_column: str, template: str | None = None
) -> tuple[list[Example], list[RowIssue]]:
    """Split rows into usable examples and problems; duplicates are reported but kept (trained on)."""
    checked = check_rows(dataset, input_column, output_column, template)
    return checked.examples, checked.issues


def require_usable(
    dataset: LoadedDataset, input_column: str, output_column: str, template: str | None = None
) -> tuple[list[Example], list[RowIssue]]:
    """`validate_rows`, raising DataError when no row is usable: a dataset that trains nothing is an
    error wherever it is used (preview, statistics, training), never "N rows, 0 usable" and success."""
    checked = check_rows(dataset, input_column, output_column, template)
    if checked.examples:
        return checked.examples, checked.issues
    problems = invalid_issues(checked.issues)
    shown = "; ".join(i.describe() for i in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    read_as = (
        f"chat turns from {checked.layout.chat_column!r}" if checked.layout.chat_column
        else f"columns {input_column!r} and {output_column!r}"
    )
    raise DataError(
        f"{dataset.source}: none of its {len(dataset.rows)} rows is usable (reading {read_as}): {shown}{more}"
    )


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
    """Per kept token: True where the loss is computed (the replies), False where it is masked (-100)."""
    pieces: list[str]
    """Per kept token: the exact text it covers (special tokens as written, e.g. `<bos>`)."""
    special: list[bool]
    """Per kept token: whether it is a special token (shown styled)."""
    n_tokens: int
    """Length before truncation."""
    n_prompt_tokens: int
    """Tokens outside the replies (the prompt, and for chat rows every user turn), before truncation."""
    n_response_tokens: int
    """Tokens of the replies (the summary, or every assistant turn), before truncation."""
    cut_text: str
    """The text truncation removes (empty when the sample fits)."""
    cut_trained_tokens: int
    """How many trained (response) tokens truncation removes."""
    text: str = ""
    n_replies: int = 1
    """How many separately trained replies the sample holds (one per assistant turn)."""

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
    try:
        return render_messages(
            template,
            example.messages(instruction),
            bos=getattr(tokenizer, "bos_token", None) or BOS,
            eos=getattr(tokenizer, "eos_token", None) or EOS,
        )
    except ValueError as exc:  # a row that validation with this template would have refused
        raise DataError(f"row {example.row}: {exc}") from None


def _in_spans(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """Per token: whether it starts inside a trained span. Offsets and spans both run left to right, so
    one pass walks them together. A token straddling a span's start belongs to the masked side."""
    flags: list[bool] = []
    k = 0
    for start, _ in offsets:
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        flags.append(k < len(spans) and spans[k][0] <= start)
    return flags


def tokenize_rendered(
    rendered_list: Sequence[RenderedSample],
    rows: Sequence[int],
    tokenizer: Any,
    max_seq_length: int,
    train_on_responses_only: bool = True,
    specials: set[str] | None = None,
) -> list[TokenizedSample]:
    """Tokenize rendered samples (no added special tokens: the text holds its one `<bos>`) and mark which
    tokens are trained. A token is trained when it starts inside a trained segment (a reply), so the mask
    comes from character offsets of the very tokenization that is trained on."""
    if not rendered_list:
        return []
    specials = special_token_strings(tokenizer) if specials is None else specials
    texts = [r.text for r in rendered_list]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out: list[TokenizedSample] = []
    for rendered, row, ids, offsets in zip(rendered_list, rows, enc["input_ids"], enc["offset_mapping"], strict=True):
        text = rendered.text
        spans = rendered.trained_spans
        in_reply = _in_spans(offsets, spans)
        trained_all = in_reply if train_on_responses_only else [True] * len(ids)
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
        n_response = sum(in_reply)
        out.append(
            TokenizedSample(
                row=row,
                input_ids=list(ids[:keep]),
                trained=trained_all[:keep],
                pieces=pieces[:keep],
                special=special[:keep],
                n_tokens=len(ids),
                n_prompt_tokens=len(ids) - n_response,
                n_response_tokens=n_response,
                cut_text=text[cut_from:],
                cut_trained_tokens=sum(trained_all[keep:]),
                text=text,
                n_replies=len(spans),
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


def _texts(example: Example) -> list[str]:
    return [m.content for m in example.turns] if example.turns else [example.conversation, example.summary]


def text_notes(dataset: LoadedDataset, examples: Sequence[Example]) -> list[str]:
    notes = list(dataset.notes)
    zw = [e.row for e in examples if any("\u200b" in t for t in _texts(e))]
    if zw:
        notes.append(f"{len(zw)} rows contain zero-width spaces (U+200B), kept as written (rows {_rows_list(zw)})")
    return notes


def chat_notes(layout: Layout, examples: Sequence[Example], template: str, instruction: str) -> list[str]:
    """What chat rows become: how they were detected, and where system turns and the instruction go."""
    if layout.chat_column is None:
        return []
    notes = [layout.note]
    own = [e.row for e in examples if e.turns and e.turns[0].role == "system"]
    merged = template == "gemma_chat"
    if own:
        where = (
            "Gemma has no system role, so it is merged into the first user turn, separated by a blank line"
            if merged else "it takes the instruction's place"
        )
        notes.append(f"{len(own)} rows have a system turn; {where} (rows {_rows_list(own)})")
    if instruction.strip() and len(own) < len(examples):
        where = ", merged into the first user turn with a blank line" if merged else ""
        without = len(examples) - len(own)
        notes.append(f"{without} rows have no system turn; the instruction stands in for one{where}")
    multi = [e.row for e in examples if sum(m.role == "assistant" for m in e.turns) > 1]
    if multi:
        notes.append(f"{len(multi)} rows are multi-turn; each assistant turn is trained (rows {_rows_list(multi)})")
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
    checked = check_rows(dataset, input_column, output_column, template)
    examples, issues = checked.examples, checked.issues
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
        notes=chat_notes(checked.layout, examples, template, instruction) + text_notes(dataset, examples),
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
