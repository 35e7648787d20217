"""The engine protocol: requests from the UI / CLI to the engine process and the events it sends back.

Transport: one JSON object per line, over the engine's stdin/stdout or its unix socket. The same models
describe the lines of `runs/<run>/events.jsonl`, so a run's history replays through the same parser.

Requests: `{"id": "r7", "cmd": "train", "args": {...}}`. Every request is answered by exactly one
`result` (with the same id) or one `error` (with the same id); commands that stream (`generate`,
`train`, `dataset_stats`) send their stream events with that id before the final answer.
"""

# No `from __future__ import annotations`: this module is on the TUI's start-up path, and pydantic would
# evaluate every field's annotation from its string again for each of the 15 models (eval, so compile):
# about 6 M instructions (1 ms) of start-up.
import functools
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 2
"""Bumped when a request, an answer or an event changes shape: 2 = typed requests (workbench.requests)."""

Command = Literal[
    "ping", "load", "unload", "preview", "dataset_stats", "train", "stop", "generate", "cancel", "save", "status",
    "shutdown", "evaluate", "pause", "continue", "quick_eval", "memory_forecast", "prepare_chat",
]
EngineState = Literal[
    "starting", "loading", "ready", "training", "paused", "generating", "saving", "stopping", "error"
]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    id: str
    cmd: Command
    args: dict[str, Any] = Field(default_factory=dict)


class _Event(BaseModel):
    # NaN / Infinity travel as JSON's NaN / Infinity tokens (Python's json reads them): a diverged loss
    # must arrive as NaN, not as null ("no loss").
    # defer_build: validators are built on first use, not when the TUI imports this module before its
    # first paint (the events only arrive once the engine runs); measured ~9 ms of start-up.
    model_config = ConfigDict(extra="allow", ser_json_inf_nan="constants", defer_build=True)
    t: float = Field(default_factory=time.time)
    """Wall-clock time the event was made (seconds since the epoch)."""
    run: str | None = None
    """The run it belongs to, for events written to a run's events.jsonl."""
    id: str | None = None
    """The request it answers or streams for."""


class Hello(_Event):
    event: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    pid: int
    device: str
    """"cuda:0 (NVIDIA H100 80GB HBM3)" or "cpu"."""
    versions: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    """What the user should know about this engine (e.g. it works offline: the hub is unreachable)."""


class State(_Event):
    event: Literal["state"] = "state"
    state: EngineState
    detail: str = ""


class Status(_Event):
    """Human-readable progress of a long phase (loading, the first step's kernel compile...)."""

    event: Literal["status"] = "status"
    message: str


class Result(_Event):
    event: Literal["result"] = "result"
    data: dict[str, Any] = Field(default_factory=dict)


class Error(_Event):
    event: Literal["error"] = "error"
    type: str
    message: str
    hint: str = ""
    fatal: bool = False


class TrainStart(_Event):
    event: Literal["train_start"] = "train_start"
    total_steps: int
    start_step: int = 0
    run_dir: str
    train_rows: int
    eval_rows: int = 0
    effective_batch: int
    trainable_params: int = 0
    total_params: int = 0
    flops_per_token: float = 0.0
    peak_tflops: float | None = None
    data_fingerprint: str = ""
    """sha256 of the data file (or of the hub rows) the run trains on."""
    attention: str = ""
    """Which training attention runs (`engine/flex_attention.AttentionPath`: flex, sample-masked eager, unsloth,
    eager, flash, default); the run's log says why."""
    packed_rows: int | None = None
    """Rows the samples were packed into (data.packing), or None when each sample is its own row."""
    ranks: int = 1
    """Processes training the run (one per GPU under torchrun); the effective batch counts them all."""


class Log(_Event):
    """One optimizer step (or logging interval): raw loss, never the NaN-filtered value."""

    event: Literal["log"] = "log"
    step: int
    total_steps: int
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    epoch: float | None = None
    tokens: int = 0
    """Real (non-pad) tokens seen so far."""
    tokens_per_s: float | None = None
    mfu: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None


class Eval(_Event):
    event: Literal["eval"] = "eval"
    step: int
    eval_loss: float


class Memory(_Event):
    """The first recipe's memory report, from torch.cuda (CUDA only); one per rank on several GPUs."""

    event: Literal["memory"] = "memory"
    phase: Literal["before", "step", "after"]
    gpu_name: str
    total_gib: float
    reserved_before_gib: float
    reserved_gib: float
    peak_gib: float
    lora_gib: float
    """Peak reserved minus reserved before training: what training itself took."""
    rank: int = 0
    """The rank whose GPU this is: a run on several GPUs reports one Memory per rank at each point."""
    ranks: int = 1
    gpu_index: int | None = None
    """The GPU as NVML numbers it (what the gauges show), when known."""

    @property
    def peak_pct(self) -> float:
        return 100.0 * self.peak_gib / self.total_gib if self.total_gib else 0.0

    @property
    def lora_pct(self) -> float:
        return 100.0 * self.lora_gib / self.total_gib if self.total_gib else 0.0


class GenerationEval(_Event):
    """Held-out rows summarized during training (eval.generate_steps), scored as `workbench eval` scores."""

    event: Literal["gen_eval"] = "gen_eval"
    step: int
    rouge_l: float
    """Mean ROUGE-L F1 of the rows, 0-100 (Devanagari tokenizer)."""
    chrf: float
    """Corpus chrF++, 0-100."""
    rows: int
    sample: str = ""
    """The first row's summary, to read what the model writes now."""


class BestCheckpoint(_Event):
    """A checkpoint is the best so far by eval.best_metric: marked, and kept from rotation."""

    event: Literal["best"] = "best"
    step: int
    metric: str
    value: float
    path: str


class Paused(_Event):
    """The trainer waits between two steps: Chat, held-out fills and quick evals use the live adapter."""

    event: Literal["paused"] = "paused"
    step: int


class Resumed(_Event):
    event: Literal["resumed"] = "resumed"
    step: int
    paused_s: float
    """How long it waited (not counted in tokens/s, the ETA or the elapsed time)."""


class Probe(_Event):
    """What the live model said while the run was paused, recorded with the run."""

    event: Literal["probe"] = "probe"
    step: int
    prompt: str
    output: str
    kind: Literal["chat", "eval"] = "chat"


class Checkpoint(_Event):
    event: Literal["checkpoint"] = "checkpoint"
    step: int
    path: str


class Done(_Event):
    event: Literal["done"] = "done"
    status: Literal["completed", "stopped", "failed"]
    step: int = 0
    total_steps: int = 0
    final_loss: float | None = None
    adapter_path: str | None = None
    message: str = ""
    runtime_s: float = 0.0
    error_type: str = ""
    """For a failed run: what kind of failure (config, data, oom, ...); the CLI's exit code follows it."""


class Token(_Event):
    """Streamed generated text; `stream` tells the tuned and the base model apart in side-by-side mode."""

    event: Literal["token"] = "token"
    text: str
    stream: Literal["tuned", "base"] = "tuned"


class ChatPath(_Event):
    """Where the fast chat decoder stands (engine.fast_chat): building, ready, or why the standard path
    answers. Sent when it changes; the Chat pane shows `line`."""

    event: Literal["chat_path"] = "chat_path"
    state: Literal["off", "building", "ready", "unavailable"]
    line: str


class EvalProgress(_Event):
    """Rows of a `workbench eval` (the Eval pane's) finished so far."""

    event: Literal["eval_progress"] = "eval_progress"
    done: int
    total: int
    folder: str


class StatsProgress(_Event):
    event: Literal["stats_progress"] = "stats_progress"
    done: int
    total: int


Event = Annotated[
    Hello | State | Status | Result | Error | TrainStart | Log | Eval | GenerationEval | BestCheckpoint | Memory
    | Checkpoint | Done | Token | StatsProgress | EvalProgress | Paused | Resumed | Probe | ChatPath,
    Field(discriminator="event"),
]
@functools.cache
def _event_adapter() -> TypeAdapter[Event]:
    return TypeAdapter(Event)


@functools.cache
def _request_adapter() -> TypeAdapter[Request]:
    return TypeAdapter(Request)


class ProtocolError(ValueError):
    pass


def encode(message: BaseModel) -> str:
    """One line of JSON (no newline inside: JSON escapes them), ready to write."""
    return message.model_dump_json(exclude_none=True) + "\n"


def decode_event(line: str | bytes) -> Event:
    try:
        return _event_adapter().validate_json(line)
    except ValidationError as exc:
        raise ProtocolError(f"not an engine event: {exc.errors()[0].get('msg')}: {str(line)[:200]}") from None


def decode_request(line: str | bytes) -> Request:
    try:
        return _request_adapter().validate_json(line)
    except ValidationError as exc:
        raise ProtocolError(f"bad request: {exc.errors()[0].get('msg')}") from None

