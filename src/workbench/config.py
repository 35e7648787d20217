"""The run configuration: pydantic models for a whole fine-tuning run, TOML load/save, and the mapping
to unsloth / TRL keyword arguments.

Every field carries a docstring; it becomes the field's description (`_Section.__init_subclass__`), which
the UI shows as help and the error messages quote. Nothing here imports torch or transformers.
"""

from __future__ import annotations

import ast
import codecs
import contextlib
import inspect
import itertools
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
Scheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"
]
Optimizer = Literal["adamw_8bit", "adamw_torch", "adamw_torch_fused", "paged_adamw_8bit", "adafactor", "sgd"]
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)


class ConfigError(Exception):
    """A configuration problem, already phrased for the user: file, field, value and what is allowed."""


def _attribute_docstrings() -> dict[str, dict[str, str]]:
    """{class name: {field: docstring}} for the classes of this module, from one parse of its source.

    What pydantic's `use_attribute_docstrings` finds, for less: on Python < 3.13 pydantic walks the call
    stack for every class (`inspect.getmodule`, which resolves the path of every loaded module) and
    tokenizes the class's source again; about 90 M instructions (15 ms) for these classes, before the
    TUI's first frame. This parse costs about 25 M.
    """
    try:
        tree = ast.parse(Path(__file__).read_bytes())
    except (OSError, SyntaxError, ValueError):  # no source beside the bytecode: no descriptions, as pydantic
        return {}
    docs: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            fields = docs.setdefault(node.name, {})
            for field, doc in itertools.pairwise(node.body):
                if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                        and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                        and isinstance(doc.value.value, str)):
                    fields[field.target.id] = inspect.cleandoc(doc.value.value)
    return docs


_FIELD_DOCS = _attribute_docstrings()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Each field's docstring becomes its description, as if it were annotated
        # `Annotated[type, Field(description=docstring)]`: pydantic builds the same fields and JSON schema
        # as with `use_attribute_docstrings=True` (tests/unit/test_startup_path.py compares them).
        # Called before pydantic collects the fields. For the classes of this module only.
        super().__init_subclass__(**kwargs)
        annotations = cls.__annotations__  # the class's own (Python >= 3.10), mutated before pydantic reads it
        docs = _FIELD_DOCS.get(cls.__name__, {}) if cls.__module__ == __name__ else {}
        for name, doc in docs.items():
            if name in annotations:
                annotations[name] = Annotated[annotations[name], Field(description=doc)]


class ModelSection(_Section):
    name: str = "unsloth/gemma-2-9b"
    """Hugging Face model id or a local directory holding the base model."""
    max_seq_length: int = Field(2048, ge=16, le=131072)
    """Longest sequence in tokens; longer samples are truncated (the Data pane shows what is cut)."""
    load_in_4bit: bool = True
    """Load the base weights quantized to 4-bit (QLoRA), with bitsandbytes: on an NVIDIA GPU, or on its CPU
    backend where the CPU runs it (else the weights load unquantized, and the run says so)."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Compute dtype; auto picks bfloat16 where the GPU supports it, else float16 (float32 on CPU)."""
    trust_remote_code: bool = False
    """Run Python code shipped with the model repository. Off unless you trust the repository."""
    attention: Literal["flex", "default"] = "flex"
    """Gemma-2 training attention: flex (FlexAttention with soft-capping; skips padding, keeps packed samples
    apart) or default (unsloth's own path; transformers' eager attention on the CPU). Other models keep theirs."""
    chat_path: Literal["auto", "merged", "4bit", "standard"] = "auto"
    """Chat decoding (Gemma-2): merged (a bf16 copy with the adapter merged, compiled), 4bit (the loaded weights, no copy), auto (merged where memory allows, else 4bit) or standard (generate); built in the background while standard answers."""

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class LoraSection(_Section):
    r: int = Field(16, ge=1, le=1024)
    """LoRA rank: the size of the low-rank update; 8-64 is usual."""
    alpha: int = Field(16, ge=1, le=4096)
    """LoRA alpha: the update is scaled by alpha / r (or alpha / sqrt(r) with rslora)."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA path; 0 is fastest with unsloth."""
    target_modules: list[str] = Field(default_factory=lambda: list(LINEAR_MODULES))
    """Modules that get adapters; all seven linear layers of each block by default."""
    bias: Literal["none", "all", "lora_only"] = "none"
    """Which biases are trained; none is fastest."""
    gradient_checkpointing: Literal["unsloth", "true", "false"] = "unsloth"
    """Activation checkpointing: unsloth (offloads to CPU RAM, least memory), true (standard), false."""
    stream_layers: bool = False
    """Keep the base model's frozen layer weights in host RAM while training, each layer copied to the GPU as it runs and the next one ahead (needs checkpointing; one GPU): 3.9 GiB less on the 9B in 4-bit. Probes and evals mid-run bring the layers back while they run."""
    use_rslora: bool = False
    """Rank-stabilised LoRA: scale by alpha / sqrt(r)."""

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        cleaned = [m.strip() for m in value if m.strip()]
        if not cleaned:
            raise ValueError(f"needs at least one module, e.g. {', '.join(LINEAR_MODULES)}")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("lists a module twice")
        return cleaned


class DataSection(_Section):
    source: str = "builtin:hindi_dialogues"
    """A local jsonl / json / csv / parquet file, a Hugging Face dataset id, or builtin:hindi_dialogues."""
    split: str = "train"
    """Dataset split to train on (hub datasets); local files are one split."""
    input_column: str = "dialogue"
    """Column holding the conversation (the model's input), or chat turns (TRL messages / ShareGPT conversations: every assistant turn is trained)."""
    output_column: str = "summary"
    """Column holding the summary (the part the model learns to write)."""
    template: Literal["gemma_chat", "instruction"] = "instruction"
    """Prompt template: gemma_chat (Gemma's chat turns) or instruction (the first recipe's prompt)."""
    instruction: str = "नीचे दी गई बातचीत का हिंदी में संक्षिप्त सारांश लिखिए।"
    """The instruction placed before every conversation (for chat rows: the system turn of rows without one)."""
    eval_fraction: float = Field(0.0, ge=0.0, lt=0.5)
    """Fraction of rows held out for eval loss (0 turns eval off)."""
    max_rows: int | None = Field(None, ge=1)
    """Use at most this many rows (after skipping invalid ones); empty means all."""
    train_on_responses_only: bool = True
    """Compute the loss only on the summary; the prompt tokens are masked (-100)."""
    packing: bool = False
    """Pack several samples into each row of up to max_seq_length tokens, each with its own positions and a
    mask that keeps it apart (needs model.attention = flex on Gemma-2): no padding is computed."""
    skip_bad_rows: bool = False
    """Train on the valid rows when the statistics find invalid ones (otherwise training refuses)."""

    @field_validator("source", "input_column", "output_column", "split")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class TrainingSection(_Section):
    per_device_train_batch_size: int = Field(2, ge=1, le=4096)
    """Micro-batch: samples per GPU per forward pass."""
    gradient_accumulation_steps: int = Field(4, ge=1, le=4096)
    """Micro-batches summed before each optimizer step (effective batch = batch x accumulation)."""
    max_steps: int = Field(60, ge=-1)
    """Optimizer steps to run; -1 means train for num_train_epochs instead."""
    num_train_epochs: float = Field(1.0, gt=0.0, le=1000.0)
    """Epochs over the data, used when max_steps is -1."""
    learning_rate: float = Field(2e-4, gt=0.0, le=1.0)
    """Peak learning rate."""
    lr_scheduler_type: Scheduler = "linear"
    """Learning-rate schedule after warm-up."""
    warmup_steps: int = Field(5, ge=0)
    """Steps of linear warm-up from 0 to the peak learning rate."""
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    """Decoupled weight decay of the optimizer."""
    optim: Optimizer = "adamw_8bit"
    """Optimizer; adamw_8bit saves memory on GPUs (falls back to adamw_torch on CPU)."""
    max_grad_norm: float = Field(1.0, ge=0.0)
    """Gradient clipping norm (0 turns clipping off)."""
    seed: int = Field(3407, ge=0, le=2**32 - 1)
    """Random seed for LoRA init, data order and dropout."""
    logging_steps: int = Field(1, ge=1)
    """Log loss, learning rate and grad norm every this many steps."""
    eval_steps: int = Field(20, ge=1)
    """Evaluate every this many steps (when eval_fraction > 0)."""
    save_steps: int = Field(20, ge=1)
    """Write a checkpoint every this many steps."""
    save_total_limit: int = Field(3, ge=0)
    """Keep at most this many checkpoints (oldest removed first); 0 keeps all."""
    auto_retry_oom: bool = False
    """On CUDA out-of-memory, retry with half the micro-batch and double accumulation (up to 3 times)."""
    gpus: int | list[int] | Literal["all"] = 1
    """GPUs to train on: a count, a list of indices, or all; more than one runs one rank per GPU under torchrun (effective batch x GPUs)."""
    strategy: Literal["ddp", "fsdp2"] = "ddp"
    """With several GPUs: ddp (a copy of the model per GPU) or fsdp2 (weights sharded across GPUs, 4-bit included)."""

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value: int | list[int] | str) -> int | list[int] | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1 (or a list of GPU indices, or \"all\")")
        if isinstance(value, list):
            if not value:
                raise ValueError("lists no GPU")
            if any(i < 0 for i in value) or len(set(value)) != len(value):
                raise ValueError("needs distinct GPU indices from 0")
        return value


class OutputSection(_Section):
    runs_dir: str = "runs"
    """Folder that holds one sub-folder per run."""
    run_name: str = ""
    """Name of this run's folder; empty makes one from the model name and the time."""

    @field_validator("run_name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if value and (value in (".", "..") or "/" in value or "\\" in value or "\0" in value):
            raise ValueError("must be a plain folder name without '/' or '..'")
        return value


class EvalSection(_Section):
    heldout_source: str = ""
    """Rows to judge summaries on: a file or hub id; empty means the bundled held-out split for the bundled
    data, else the rows data.eval_fraction holds out."""
    heldout_split: str = "test"
    """Split of heldout_source (hub datasets)."""
    rows: int = Field(24, ge=0)
    """Held-out rows `workbench eval` and the Eval pane summarize; 0 means all."""
    max_new_tokens: int = Field(256, ge=1, le=8192)
    """Longest summary generated; one that reaches it is flagged as unended."""
    batch_size: int = Field(8, ge=1, le=512)
    """Rows generated together (left-padded); larger is faster where memory allows."""
    do_sample: bool = False
    """Sample instead of greedy decoding (greedy is reproducible: a resumed eval gives the same rows)."""
    temperature: float = Field(0.7, gt=0.0, le=5.0)
    """Sampling temperature, when do_sample."""
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    """Nucleus sampling, when do_sample."""
    stem: bool = False
    """Strip Hindi inflection suffixes before ROUGE (XL-Sum's optional stemmer)."""
    generate_steps: int = Field(0, ge=0)
    """During training, summarize generate_rows held-out rows every this many steps (0: off) and chart ROUGE-L
    and chrF++ beside the loss."""
    generate_rows: int = Field(4, ge=1, le=256)
    """Held-out rows summarized at each generate_steps (greedy)."""
    best_metric: Literal["eval_loss", "rougeL", "chrf"] = "eval_loss"
    """What marks the best checkpoint: eval loss, or ROUGE-L / chrF++ of the generation eval. A new best is
    saved as a checkpoint at once (so it holds exactly the weights that scored it) and kept from rotation."""
    early_stopping_patience: int = Field(0, ge=0)
    """Stop when best_metric has not improved for this many evaluations (0: never stop early)."""


class RunConfig(_Section):
    model: ModelSection = Field(default_factory=ModelSection)
    """The base model."""
    lora: LoraSection = Field(default_factory=LoraSection)
    """The LoRA adapter."""
    data: DataSection = Field(default_factory=DataSection)
    """The dataset and prompt template."""
    training: TrainingSection = Field(default_factory=TrainingSection)
    """The optimisation schedule."""
    output: OutputSection = Field(default_factory=OutputSection)
    """Where runs are written."""
    eval: EvalSection = Field(default_factory=EvalSection)
    """How summaries are judged: held-out rows, decoding, and the generation eval during training."""

    @model_validator(mode="after")
    def _coherent(self) -> RunConfig:
        if self.training.max_steps == 0:
            raise ValueError("training.max_steps is 0: use a positive number, or -1 to train by epochs")
        if self.lora.stream_layers and self.lora.gradient_checkpointing == "false":
            raise ValueError("lora.stream_layers needs checkpointing (lora.gradient_checkpointing = unsloth or true): "
                             "without it the backward needs every layer's weights at once")
        return self

    # -- views used by the engine ------------------------------------------------------------------
    def effective_batch(self) -> int:
        return self.training.per_device_train_batch_size * self.training.gradient_accumulation_steps

    def lora_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for unsloth's `FastLanguageModel.get_peft_model`."""
        gc: Any = {"unsloth": "unsloth", "true": True, "false": False}[self.lora.gradient_checkpointing]
        return {
            "r": self.lora.r,
            "lora_alpha": self.lora.alpha,
            "lora_dropout": self.lora.dropout,
            "target_modules": list(self.lora.target_modules),
            "bias": self.lora.bias,
            "use_gradient_checkpointing": gc,
            "random_state": self.training.seed,
            "use_rslora": self.lora.use_rslora,
        }

    def sft_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for TRL's `SFTConfig` (the engine adds output_dir, precision and eval)."""
        t = self.training
        return {
            "per_device_train_batch_size": t.per_device_train_batch_size,
            "gradient_accumulation_steps": t.gradient_accumulation_steps,
            "max_steps": t.max_steps,
            "num_train_epochs": t.num_train_epochs,
            "learning_rate": t.learning_rate,
            "lr_scheduler_type": t.lr_scheduler_type,
            "warmup_steps": t.warmup_steps,
            "weight_decay": t.weight_decay,
            "optim": t.optim,
            "max_grad_norm": t.max_grad_norm,
            "seed": t.seed,
            "data_seed": t.seed,
            "logging_steps": t.logging_steps,
            "save_steps": t.save_steps,
            "save_total_limit": t.save_total_limit or None,
            "max_length": self.model.max_seq_length,
            "packing": False,  # the engine packs itself (workbench.packing), where the attention keeps samples apart
        }


# -- errors ---------------------------------------------------------------------------------------------

def _allowed(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """Describe what a field accepts, from its annotation and constraints, for error messages."""
    current: Any = model
    info = None
    for part in loc:
        if isinstance(part, int) or current is None or not hasattr(current, "model_fields"):
            break
        info = current.model_fields.get(part)
        if info is None:
            names = ", ".join(current.model_fields)
            return f"known keys here: {names}"
        current = info.annotation if isinstance(info.annotation, type) else None
    if info is None:
        return ""
    bits: list[str] = []
    ann = info.annotation
    args = getattr(ann, "__args__", None)
    if getattr(ann, "__origin__", None) is Literal and args:
        bits.append("one of " + ", ".join(repr(a) for a in args))
    for meta in info.metadata:
        for attr, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            val = getattr(meta, attr, None)
            if val is not None:
                bits.append(f"{word} {val}")
    if info.description:
        bits.append(info.description.rstrip("."))
    return "; ".join(bits)


def format_validation_error(err: ValidationError, source: str) -> str:
    return format_errors(list(err.errors()), source)


def format_errors(errors: list[Any], source: str) -> str:
    """pydantic's error dicts as lines naming the source, the field, the value and what is allowed."""
    lines = []
    for e in errors:
        loc = tuple(e.get("loc", ()))
        field = ".".join(str(p) for p in loc)
        value = e.get("input")
        shown = repr(value) if not isinstance(value, dict) else "a table"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        if e.get("type") == "extra_forbidden":
            msg = "is not a known setting"
        elif e.get("type") == "missing":
            msg = "is missing"
            shown = ""
        else:
            msg = e.get("msg", "is invalid")
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
        allowed = _allowed(RunConfig, loc)
        tail = f" (allowed: {allowed})" if allowed else ""
        value_part = f" = {shown}" if shown and field else ""
        lines.append(f"{source}: {field}{value_part}: {msg}{tail}" if field else f"{source}: {msg}")
    return "\n".join(lines)


# -- TOML -----------------------------------------------------------------------------------------------

def config_from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML run configuration; any problem raises ConfigError naming the file and field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a TOML config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:  # e.g. an embedded NUL byte in the path
        raise ConfigError(f"{path!r}: not a usable file path ({exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: is not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: is not valid TOML: {exc}") from None
    return config_from_dict(data, str(path))


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    # TOML has no null: fields left empty are omitted and come back as their default (None).
    return config.model_dump(mode="json", exclude_none=True)


def dumps_config(config: RunConfig) -> str:
    return tomli_w.dumps(config_to_dict(config))


def dumps_config_over(config: RunConfig, original: str) -> str:
    """`config` as TOML, written over the text of an existing config file so that the user's layout
    survives. Only what changes the file's meaning is touched: a value that differs is replaced in place
    (a comment after it stays); a setting the file leaves out (it means the default) is added, after the
    last setting of its section, only when the config's value is not that default; keys that are not
    settings, or no longer (a field emptied to None: TOML has no null), are removed. Comments, blank
    lines, key order and the spelling of unchanged values (`2e-4` stays `2e-4`) are kept.

    The result is checked: if it does not read back as exactly `config` (a layout tomlkit cannot edit
    faithfully), the plain dump is returned instead. Raises ValueError if `original` is not TOML."""
    # Imported here: tomlkit costs 25-60 ms to import, and the UI imports this module before its first
    # paint, while only a Save needs it.
    import tomlkit
    from tomlkit.items import InlineTable

    before = tomllib.loads(original)
    doc = tomlkit.parse(original)
    after = config_to_dict(config)
    try:
        # What the file means, defaults included (the settings it leaves out are these).
        meant = config_to_dict(config_from_dict(before))
    except ConfigError:
        meant = {}
    try:
        for key in [k for k in doc if k not in after]:
            del doc[key]  # not a section: loading refuses it, so the saved file must not keep it
        for section, values in after.items():
            old_values = before.get(section)
            missing = {key: value for key, value in values.items()
                       if key not in (old_values or {}) and meant.get(section, {}).get(key, _ABSENT) != value}
            if not isinstance(old_values, dict) or section not in doc:
                if missing or section in doc:
                    doc[section] = values if section in doc else missing
                continue
            table = doc[section]
            for key in [k for k in table if k not in values]:
                del table[key]
            for key, value in values.items():
                # Compared as Python values: 2e-4 == 0.0002 and 1 == 1.0 keep the file's spelling.
                if key in old_values and old_values[key] != value:
                    table[key] = value
            last = next((k for k, _ in reversed(table.value.body) if k is not None), None)
            for key, value in missing.items():
                if last is None or isinstance(table, InlineTable):
                    table[key] = value
                else:
                    # After the section's last setting, not at the end of its body: the blank lines and
                    # comments there lead into the next section (`Container.add` put keys under them).
                    table.value._insert_after(last.key, key, value)
                    last = tomlkit.key(key)
        text = tomlkit.dumps(doc)
        same = config_from_dict(tomllib.loads(text)) == config
    # tomlkit refuses some edits of unusual layouts (KeyError, TypeError, its own TOMLKitError), and a
    # layout it edits wrongly shows in the check: either way the plain dump is correct.
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError, tomlkit.exceptions.TOMLKitError):
        same = False
    return text if same else dumps_config(config)


_ABSENT: Any = object()


def save_config(config: RunConfig, path: str | Path, template: str | Path | None = None) -> None:
    """Write `config` to `path` as TOML, atomically: a crash mid-write never leaves a truncated config.

    If `path` already holds a TOML file, only the values that changed are rewritten and its comments
    and layout stay (`dumps_config_over`). A new file takes its layout from `template` (the file the
    config was loaded from, for "save as") when that is TOML, else it is a plain dump."""
    path = Path(path)
    text, bom = None, False
    for source in (path, template):
        if source is None:
            continue
        try:
            raw = Path(source).read_bytes()
            text = dumps_config_over(config, raw.decode("utf-8-sig"))
        except (OSError, ValueError):  # absent, unreadable, not UTF-8 or not TOML: nothing to keep
            continue
        bom = source == path and raw.startswith(codecs.BOM_UTF8)  # the file keeps its own byte order mark
        break
    if text is None:
        text = dumps_config(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes((codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8"))
    with contextlib.suppress(OSError):
        shutil.copymode(path, tmp)  # a file the user made private stays private
    tmp.replace(path)


# -- differences ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldChange:
    field: str
    """section.name, as the TOML and the Config pane name it."""
    old: Any
    new: Any

    def describe(self) -> str:
        return f"{self.field} {self.old!r} → {self.new!r}"


def _flat(config: RunConfig) -> dict[str, Any]:
    return {f"{section}.{name}": value
            for section, fields in config.model_dump(mode="json").items() for name, value in fields.items()}


def config_diff(old: RunConfig, new: RunConfig) -> list[FieldChange]:
    """Every field whose value differs, in the form's order."""
    before, after = _flat(old), _flat(new)
    return [FieldChange(name, before[name], after[name]) for name in after if before.get(name) != after[name]]


# What may change when a run is resumed: how long it runs and how often it logs, evaluates and saves.
# Everything else (model, LoRA, data, batch, optimiser and schedule) shapes the weights and the optimiser
# state already in the checkpoint; HF's Trainer would take some of them from the checkpoint and silently
# ignore the edit (a new learning rate: the scheduler's restored base rate wins).
RESUMABLE_FIELDS = frozenset({
    "training.max_steps", "training.num_train_epochs", "training.logging_steps", "training.eval_steps",
    "training.save_steps", "training.save_total_limit", "training.auto_retry_oom",
    "model.attention",  # the same attention computed another way: the weights and optimiser state carry over
    "model.chat_path",  # how Chat decodes; training never reads it
    "lora.stream_layers",  # where the frozen weights wait between layers: the same computation
    *(f"eval.{name}" for name in EvalSection.model_fields),  # judging summaries does not touch the weights
})
IGNORED_ON_RESUME = frozenset({"output.runs_dir", "output.run_name"})
"""The run's folder is already chosen."""


def field_help(section: str, name: str) -> str:
    """The docstring of one field, for help text in the UI."""
    model = RunConfig.model_fields[section].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    return model.model_fields[name].description or ""


def all_fields() -> list[tuple[str, str, str]]:
    """(section, name, help text) of every setting, in the order of the form and of a saved file."""
    fields = []
    for section, info in RunConfig.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        fields += [(section, name, field.description or "") for name, field in model.model_fields.items()]
    return fields


def set_field(config: RunConfig, section: str, name: str, value: Any) -> RunConfig:
    """Return a copy of `config` with one field changed, validated (raises ConfigError naming the field)."""
    data = config_to_dict(config)
    data.setdefault(section, {})[name] = value
    if value is None:
        data[section].pop(name, None)
    return config_from_dict(data, "form")
