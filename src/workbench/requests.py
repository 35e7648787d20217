"""Every command the engine takes, as a typed model of its arguments and a typed model of its answer.

On the wire a command is a `protocol.Request` (`{"id", "cmd", "args"}`): `args` is the command's model
dumped to JSON, and the answer travels as `protocol.Result.data`, the answer model dumped the same way.
Both sides validate with the same classes, so a default (max_new_tokens, say) lives in one place.

This module is not on the TUI's start-up path: pydantic builds each model class when the module is
imported (about 1.5 ms a class on a 2-core machine), and the first request is sent only after the first
frame, once the engine runs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.config import RunConfig, format_errors
from workbench.data import DatasetStats, TokenizedSample
from workbench.protocol import EngineState
from workbench.save_kinds import SaveKind

Stream = Literal["tuned", "base"]


class Answer(BaseModel):
    """What a command answers (`Result.data`)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, ser_json_inf_nan="constants")


AnswerT = TypeVar("AnswerT", bound=Answer, covariant=True)


class Expects(Generic[AnswerT]):
    """Names a command's answer type: `class Preview(Args, Expects[PreviewAnswer])`. A plain typing
    generic, not a pydantic one (a parametrized pydantic model costs ~3 ms to create, this ~0.1 ms), so
    the type checker knows what `EngineClient.call(Preview(...))` returns."""


class Args(BaseModel):
    """A command's arguments. `cmd` names it on the wire; `answer` is the model of its Result (taken from
    the class's `Expects[...]` base)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    cmd: ClassVar[str]
    answer: ClassVar[type[Answer]]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is Expects:
                cls.answer = get_args(base)[0]

    def wire_args(self) -> dict[str, Any]:
        # exclude_none: TOML-shaped configs have no nulls (see config.config_to_dict)
        return self.model_dump(mode="json", exclude_none=True)


class Nothing(Answer):
    """The answer of commands that only report success."""


# -- engine -----------------------------------------------------------------------------------------

class Pong(Answer):
    pong: bool = True


class Ping(Args, Expects[Pong]):
    cmd = "ping"


class EngineStatus(Answer):
    state: EngineState
    detail: str = ""
    run: str | None = None
    run_dir: str | None = None
    training: bool = False
    model_loaded: bool = False
    has_adapter: bool = False
    pid: int


class GetStatus(Args, Expects[EngineStatus]):
    cmd = "status"


class Shutdown(Args, Expects[Nothing]):
    """Exit once idle; refused while training (a run must never be lost to a quit)."""

    cmd = "shutdown"


class Cancel(Args, Expects[Nothing]):
    """Cancel a streaming command (generate, dataset_stats) by its request id."""

    cmd = "cancel"
    target: str


# -- model ------------------------------------------------------------------------------------------

class ModelLoaded(Answer):
    model: str
    device: str
    total_params: int
    has_adapter: bool


class Load(Args, Expects[ModelLoaded]):
    cmd = "load"
    config: RunConfig
    adapter: str | None = None
    """A saved adapter folder to put on the base model."""


class Unload(Args, Expects[Nothing]):
    cmd = "unload"


# -- data -------------------------------------------------------------------------------------------

class PreviewItem(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    position: int
    """0-based position among the dataset's rows."""
    row: int
    """The row number the user sees in the file."""
    sample: TokenizedSample | None = None
    """None when the row cannot be trained on (`issue` says why)."""
    issue: str | None = None
    conversation: str | None = None
    summary: str | None = None


class PreviewAnswer(Answer):
    source: str
    rows_total: int
    columns: list[str]
    fingerprint: str
    max_seq_length: int
    items: list[PreviewItem]
    """One per position asked for that exists; empty when none does."""


class Preview(Args, Expects[PreviewAnswer]):
    """Rendered and tokenized rows, by position (0-based) or by file row number."""

    cmd = "preview"
    config: RunConfig
    positions: list[int] = Field(default_factory=list)
    file_rows: list[int] = Field(default_factory=list)


class StatsAnswer(Answer):
    stats: DatasetStats


class Statistics(Args, Expects[StatsAnswer]):
    """Statistics over every row; streams `StatsProgress` events; cancellable."""

    cmd = "dataset_stats"
    config: RunConfig


# -- training ---------------------------------------------------------------------------------------

class TrainStarted(Answer):
    run: str
    run_dir: str


class Train(Args, Expects[TrainStarted]):
    """Start a run (or resume one) in the background; its events follow without a request id."""

    cmd = "train"
    config: RunConfig
    resume: bool = False
    run_dir: str | None = None
    """The run to resume (or the folder of a new run); default: a new folder under output.runs_dir."""
    cpu_ranks: int | None = Field(None, ge=1, le=64)
    """Train on this many CPU ranks over gloo through the multi-GPU launcher (`workbench train --nproc`):
    for trying that path without GPUs."""


class Stopping(Answer):
    stopping: bool


class Stop(Args, Expects[Stopping]):
    cmd = "stop"


class Pausing(Answer):
    pausing: bool
    """False when nothing trains."""


class Pause(Args, Expects[Pausing]):
    """Pause the run at the next step boundary (a `Paused` event says when it is there)."""

    cmd = "pause"


class Continuing(Answer):
    continuing: bool


class Continue(Args, Expects[Continuing]):
    """Let a paused run go on (a `Resumed` event follows)."""

    cmd = "continue"


class QuickEvalDone(Answer):
    step: int
    """The step the run is paused at: what the scores are of."""
    rouge_l: float
    chrf: float
    rows: int
    sample: str
    """The first row's summary."""


class QuickEval(Args, Expects[QuickEvalDone]):
    """While a run trains: pause it at the next step boundary (if it is not paused), summarize a few held-out
    rows with the live adapter and score them. The run stays paused; the scores are recorded with it."""

    cmd = "quick_eval"
    rows: int | None = Field(default=None, ge=1)
    """Held-out rows to summarize (None: the run's eval.generate_rows)."""


# -- memory ----------------------------------------------------------------------------------------

class ProfileLine(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: Literal["fits", "fast"]
    why: str
    micro_batch: int
    checkpointing: Literal["unsloth", "true", "false"]
    total_gib: float
    packing: bool = False
    stream_layers: bool = False


class MemoryForecastAnswer(Answer):
    total_gib: float
    breakdown: str
    verdict: str
    """The forecast against the card's free memory (or alone, where there is no NVIDIA GPU)."""
    free_gib: float | None
    gpu: str
    """The card the forecast was set against ("" where NVML sees none), or why there is none."""
    longest: int
    """The longest sample, in tokens after truncation, that the forecast assumed."""
    profiles: list[ProfileLine]
    gpus_ok: bool = True
    gpus_line: str = ""
    """For training.gpus other than 1: the GPUs asked for against the machine's (there, free memory for the
    forecast on each, other processes on them); "" for a run on one GPU."""


class MemoryForecast(Args, Expects[MemoryForecastAnswer]):
    """The peak GPU memory this config will need (workbench.memory_forecast), before anything is loaded,
    against the free memory of the first GPU, with the "fits" and "fast" profiles for that card."""

    cmd = "memory_forecast"
    config: RunConfig


# -- chat -------------------------------------------------------------------------------------------

class GenerationStats(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    text: str
    new_tokens: int
    prompt_tokens: int
    time_to_first_token_s: float | None = None
    decode_tokens_per_s: float | None = None
    stopped: bool = False
    path: str = ""
    """The decoder that answered: "bf16 merged, compiled", "4-bit, CUDA graphs", "standard"."""


class Generated(Answer):
    results: dict[Stream, GenerationStats]
    has_adapter: bool
    fast_chat: str = ""
    """Where the fast chat path stands (building, ready, or why the standard path answers)."""


class ChatPrepared(Answer):
    fast_chat: str
    """As `Generated.fast_chat`: the fast path's state after the model is loaded and its build started."""
    has_adapter: bool


class PrepareChat(Args, Expects[ChatPrepared]):
    """Load the model Chat will use and start building its fast decoder, before the first question (the
    Chat pane asks when it opens or its run changes)."""

    cmd = "prepare_chat"
    config: RunConfig
    run_dir: str | None = None


class Generate(Args, Expects[Generated]):
    """A summary of one conversation, streamed as `Token` events; tuned, or tuned and base side by side."""

    cmd = "generate"
    config: RunConfig
    conversation: str
    max_new_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.7, ge=0.0, le=5.0)
    """0 decodes greedily."""
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    compare: bool = False
    """Also answer with the adapter off (the base model), after the tuned answer."""
    run_dir: str | None = None
    """Chat with this run's weights (its final adapter, else its newest checkpoint) under the run's own
    config; without a run, or before the run has weights, the base model of `config` answers."""


# -- saving -----------------------------------------------------------------------------------------

class Verification(BaseModel):
    """How a saved model was reloaded the way its users will load it, and whether it answers the same."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    loader: str
    """e.g. "transformers AutoModelForCausalLM" or "peft PeftModel"."""
    prompt_row: int | None = None
    tokens_compared: int
    tokens_equal: int
    """Leading greedy tokens identical to the workbench's own answer."""
    agreement: float
    """Share of positions where the two greedy answers agree."""
    passed: bool
    detail: str = ""


class Saved(Answer):
    kind: SaveKind
    path: str
    run: str | None = None
    step: int | None = None
    checkpoint: str | None = None
    verification: Verification | None = None


class Save(Args, Expects[Saved]):
    """Export a run's weights (its final adapter, or a checkpoint), prove the export reloads, then commit it."""

    cmd = "save"
    kind: SaveKind = "lora"
    path: str
    run_dir: str
    checkpoint: int | None = None
    """A checkpoint's step; default: the run's final adapter, else its newest complete checkpoint."""
    overwrite: bool = False


# -- judging summaries --------------------------------------------------------------------------------

class EvalFinished(Answer):
    folder: str
    """The eval's folder (eval.jsonl, eval.json) inside its run."""
    complete: bool
    rows_done: int
    rows_total: int


class Evaluate(Args, Expects[EvalFinished]):
    """`workbench eval` in the engine: streams `EvalProgress` after each batch; cancel stops it between
    batches, keeping every finished row."""

    cmd = "evaluate"
    run_dir: str
    rows: int | None = None
    """Held-out rows (None: the run's eval.rows; 0: all)."""
    base: bool = True
    checkpoint: int | None = None
    resume: bool = False
    name: str | None = None


# -- registry ---------------------------------------------------------------------------------------

COMMANDS: dict[str, type[Args]] = {
    cls.cmd: cls
    for cls in (Ping, GetStatus, Shutdown, Cancel, Load, Unload, Preview, Statistics, Train, Stop, Generate,
                Save, Evaluate, Pause, Continue, QuickEval, MemoryForecast, PrepareChat)
}


class BadArguments(ValueError):
    """A request whose arguments do not fit its command; the message names the fields."""

    def __init__(self, message: str, in_config: bool = False) -> None:
        super().__init__(message)
        self.in_config = in_config
        """The problem is in the run configuration the request carries (the user can fix it)."""


def parse_args(cmd: str, args: dict[str, Any]) -> Args:
    """The typed arguments of a request, or BadArguments naming the command and the fields."""
    model = COMMANDS.get(cmd)
    if model is None:
        raise BadArguments(f"unknown command {cmd!r} (known: {', '.join(sorted(COMMANDS))})")
    try:
        return model.model_validate(args)
    except ValidationError as err:
        config_errors = [e for e in err.errors() if e.get("loc", ())[:1] == ("config",)]
        if config_errors:
            # Name the config field the way the TOML and the Config pane do (model.max_seq_length).
            message = format_errors([{**e, "loc": tuple(e["loc"][1:])} for e in config_errors], "config")
            raise BadArguments(message, in_config=True) from None
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadArguments(f"{cmd}: {where}: {first.get('msg', 'is invalid')}") from None


def parse_answer(args: Args, data: dict[str, Any]) -> Answer:
    return args.answer.model_validate(data)
