"""The trainer's hooks turned into protocol events, one small TRL/transformers callback per concern:

- `StepClock`: step timing (for the ETA) and the first step's compile notice;
- `StepGuard`: a NaN / infinite raw loss stops the run, a user's stop ends it at the step boundary with a
  checkpoint;
- `StepReporter`: one `Log` event per logged step (raw loss, tokens/s, MFU, ETA), and the GPU memory
  report every tenth;
- `EvalReporter`: eval loss;
- `CheckpointMarker`: marks a checkpoint complete (only then is it resumed from) and reports it;
- `GenerationEvaluator`: every eval.generate_steps, summarizes a few held-out rows with the model as it is
  and scores them (training's random state, modes and caches put back exactly as they were);
- `BestTracker`: the best checkpoint by eval.best_metric is saved, marked and kept from rotation, and
  training stops early when the metric has not improved for eval.early_stopping_patience evaluations.

They share a `RunProgress`. Imported only in the process that trains (transformers is imported here).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.engine.boot import boot

boot()  # unsloth before transformers, whoever imports this module first
from transformers import TrainerCallback  # noqa: E402

from workbench.config import EvalSection  # noqa: E402
from workbench.engine.inference_mode import paused_for_inference  # noqa: E402
from workbench.engine.pause import PauseControl  # noqa: E402
from workbench.engine.quick_eval import HeldOutPrompts, summarize_and_score  # noqa: E402
from workbench.engine.rank_memory import memory_events  # noqa: E402
from workbench.mfu import mfu  # noqa: E402
from workbench.protocol import (  # noqa: E402
    BestCheckpoint,
    Checkpoint,
    Eval,
    Event,
    GenerationEval,
    Log,
    Status,
)
from workbench.runs import COMPLETE_MARKER  # noqa: E402

GIB = 1024**3
Emit = Callable[[Event], None]


@dataclass
class RunProgress:
    """What the callbacks know between steps."""

    t0: float = field(default_factory=time.time)
    elapsed_before: float = 0.0
    """Training time spent before this process resumed the run."""
    step_times: list[float] = field(default_factory=list)
    """Seconds per optimizer step, the compiling first step excluded."""
    failure: str | None = None
    last_loss: float | None = None
    last_step: int = 0
    """The last optimizer step logged: where a run that fails with an exception got to."""
    paused_total: float = 0.0
    """Seconds the run waited, paused for probes: not training time."""
    paused_pending: float = 0.0
    """Paused seconds the step reporter has not yet taken off its tokens/s clock."""
    early_stop: str | None = None
    """Why training stopped early (eval.early_stopping_patience), for the run's final message."""
    best: BestCheckpoint | None = None

    def elapsed(self, now: float) -> float:
        return self.elapsed_before + now - self.t0 - self.paused_total

    def eta(self, step: int, total: int) -> float | None:
        if not self.step_times:
            return None
        recent = self.step_times[-20:]
        return (total - step) * sum(recent) / len(recent)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class StepClock(TrainerCallback):  # type: ignore[misc]
    def __init__(self, emit: Emit, run_name: str, progress: RunProgress) -> None:
        self.emit, self.run_name, self.progress = emit, run_name, progress
        self.step_started = 0.0
        self.first_step_done = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.progress.t0 = time.time()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.step_started = time.time()
        if not self.first_step_done and _cuda():
            self.emit(Status(run=self.run_name, message="First step: compiling GPU kernels; this takes 2-3 minutes once."))

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.first_step_done:
            self.progress.step_times.append(time.time() - self.step_started)
        self.first_step_done = True


def agreed(device: Any, *flags: bool) -> tuple[bool, ...]:
    """Each flag true on any rank, for every rank (one small all-reduce per optimizer step)."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([1 if f else 0 for f in flags], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in tensor.tolist())


def summed(device: Any, value: Any) -> Any:
    """`value` (a number or a 0-d tensor) summed over the ranks."""
    import torch
    import torch.distributed as dist

    tensor = torch.as_tensor(value, dtype=torch.float64, device=device).clone().reshape(1)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item())


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class StepGuard(TrainerCallback):  # type: ignore[misc]
    def __init__(self, trainer: Any, stop: threading.Event, progress: RunProgress) -> None:
        self.trainer, self.stop, self.progress = trainer, stop, progress

    def fail(self, control: Any, message: str) -> None:
        self.progress.failure = message
        control.should_training_stop = True
        control.should_save = False  # keep the last good checkpoint as the newest

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        bad = self.trainer.wb_nonfinite
        self.trainer.wb_nonfinite = None
        nonfinite = bad is not None and bool(bad)  # one device synchronisation per optimizer step
        asked = self.stop.is_set()
        if args.world_size > 1:  # every rank takes the same decision at the same step, or DDP hangs
            nonfinite, asked = agreed(args.device, nonfinite, asked)
        if nonfinite:
            self.fail(control, f"the loss became NaN or infinite at step {state.global_step}")
            return
        if asked:
            self.stop.set()
            control.should_training_stop = True
            control.should_save = True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        logs = logs or {}
        if "loss" not in logs:
            return
        loss, grad_norm = logs.get("loss"), logs.get("grad_norm")
        if not _finite(loss):
            self.fail(control, f"the loss became {loss} at step {state.global_step}")
        elif grad_norm is not None and not _finite(grad_norm):
            self.fail(control, f"the gradient norm became {grad_norm} at step {state.global_step}")


class StepReporter(TrainerCallback):  # type: ignore[misc]
    MEMORY_EVERY = 10
    """Logged steps between GPU memory reports."""

    def __init__(self, trainer: Any, emit: Emit, run_name: str, progress: RunProgress, flops_per_token: float,
                 peak_tflops: float | None, memory_before_gib: float) -> None:
        self.trainer, self.emit, self.run_name, self.progress = trainer, emit, run_name, progress
        self.flops_per_token, self.peak_tflops, self.memory_before_gib = flops_per_token, peak_tflops, memory_before_gib
        self.last_t = time.time()
        self.last_tokens = 0.0
        self.logs_seen = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.last_t = time.time()

    def _tokens_per_s(self, tokens: float, now: float) -> float | None:
        # Not over the first step, whose time is mostly compilation.
        rate = None
        if tokens > self.last_tokens and now > self.last_t and self.progress.step_times:
            rate = (tokens - self.last_tokens) / (now - self.last_t)
        self.last_tokens, self.last_t = tokens, now
        return rate

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        logs = logs or {}
        if "loss" not in logs:
            return
        now = time.time()
        self.last_t += self.progress.paused_pending  # a pause is not time spent on these tokens
        self.progress.paused_pending = 0.0
        loss, grad_norm = logs.get("loss"), logs.get("grad_norm")
        # Our own count (TRL's num_tokens is missing under unsloth); a resumed run counts from the resume.
        counted = self.trainer.wb_tokens
        if counted is not None and args.world_size > 1:
            counted = summed(args.device, counted)  # tokens/s and MFU count every rank
        tokens = float(counted) if counted is not None else float(logs.get("num_tokens") or 0.0)
        tps = self._tokens_per_s(tokens, now)
        step, total = state.global_step, state.max_steps
        self.emit(Log(
            run=self.run_name,
            step=step,
            total_steps=total,
            loss=float(loss) if isinstance(loss, int | float) else None,
            learning_rate=logs.get("learning_rate"),
            grad_norm=float(grad_norm) if isinstance(grad_norm, int | float) else None,
            epoch=logs.get("epoch"),
            tokens=int(tokens),
            tokens_per_s=tps,
            mfu=mfu(tps, self.flops_per_token, self.peak_tflops * args.world_size)
            if tps and self.peak_tflops else None,
            elapsed_s=self.progress.elapsed(now),
            eta_s=self.progress.eta(step, total),
        ))
        if isinstance(loss, int | float):
            self.progress.last_loss = float(loss)
        self.progress.last_step = step
        self.logs_seen += 1
        if _cuda() and self.logs_seen % self.MEMORY_EVERY == 1:
            for event in memory_events(self.run_name, "step", self.memory_before_gib):  # every rank gathers
                self.emit(event)


class PauseGate(TrainerCallback):  # type: ignore[misc]
    """Where a pause happens: at the start of a step, after the previous one was logged and saved (first in
    the list, so the step's clock starts after the pause)."""

    def __init__(self, control: PauseControl, stop: threading.Event, progress: RunProgress) -> None:
        self.control, self.stop, self.progress = control, stop, progress

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        waited = self.control.gate(state.global_step, self.stop)
        self.progress.paused_total += waited
        self.progress.paused_pending += waited


class EvalReporter(TrainerCallback):  # type: ignore[misc]
    def __init__(self, emit: Emit, run_name: str) -> None:
        self.emit, self.run_name = emit, run_name

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kw: Any) -> None:
        if metrics and "eval_loss" in metrics:
            self.emit(Eval(run=self.run_name, step=state.global_step, eval_loss=float(metrics["eval_loss"])))


class CheckpointMarker(TrainerCallback):  # type: ignore[misc]
    def __init__(self, emit: Emit, run_name: str) -> None:
        self.emit, self.run_name = emit, run_name

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if args.world_size > 1:
            barrier()  # every rank's part of the checkpoint (its RNG state) is written before the mark
        if path.is_dir() and args.process_index == 0:
            # Written after everything else in the folder: a checkpoint cut short by a crash has none.
            (path / COMPLETE_MARKER).write_text(str(state.global_step), encoding="utf-8")
            self.emit(Checkpoint(run=self.run_name, step=state.global_step, path=str(path)))


class BestTracker(TrainerCallback):  # type: ignore[misc]
    """The best checkpoint by one metric: a new best is saved at once (so the checkpoint holds exactly the
    weights that scored it), marked, and kept from rotation (HF's `best_global_step` protects it); after
    `patience` evaluations without a new best, training stops (0: never)."""

    MARKER = "workbench-best"

    def __init__(self, emit: Emit, run_name: str, progress: RunProgress, metric: str, patience: int) -> None:
        self.emit, self.run_name, self.progress = emit, run_name, progress
        self.metric, self.patience = metric, patience
        self.lower_is_better = metric == "eval_loss"
        self.since_best = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.since_best = 0  # a resumed run keeps its best (state.best_metric) but counts patience anew

    def observe(self, metric: str, value: float, state: Any, control: Any) -> None:
        if metric != self.metric or not math.isfinite(value):
            return
        best = state.best_metric
        better = best is None or (value < best if self.lower_is_better else value > best)
        if better:
            state.best_metric, state.best_global_step = value, state.global_step
            self.since_best = 0
            control.should_save = True
            return
        self.since_best += 1
        if self.patience and self.since_best >= self.patience:
            self.progress.early_stop = (f"{self.metric} has not improved for {self.since_best} evaluations "
                                        f"(best {best:.4f} at step {state.best_global_step})")
            control.should_training_stop = True
            control.should_save = True

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kw: Any) -> None:
        if metrics and "eval_loss" in metrics:
            self.observe("eval_loss", float(metrics["eval_loss"]), state, control)

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.best_global_step != state.global_step or state.best_metric is None:
            return
        folder = Path(args.output_dir)
        for old in folder.glob(f"checkpoint-*/{self.MARKER}"):
            old.unlink()
        path = folder / f"checkpoint-{state.global_step}"
        if path.is_dir():
            (path / self.MARKER).write_text(f"{self.metric} {state.best_metric}", encoding="utf-8")
            self.progress.best = BestCheckpoint(run=self.run_name, step=state.global_step, metric=self.metric,
                                                value=float(state.best_metric), path=str(path))
            self.emit(self.progress.best)


class GenerationEvaluator(TrainerCallback):  # type: ignore[misc]
    def __init__(self, trainer: Any, emit: Emit, run_name: str, every: int, rows: HeldOutPrompts,
                 decoding: EvalSection, tracker: BestTracker, stop: threading.Event) -> None:
        self.trainer, self.emit, self.run_name, self.every, self.rows = trainer, emit, run_name, every, rows
        self.decoding, self.tracker, self.stop = decoding, tracker, stop

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # Also at the last step (the trainer has already decided to end there), not after a user's stop.
        if not self.every or state.global_step % self.every or self.stop.is_set():
            return
        from workbench.engine.model import Loaded

        model, tokenizer = self.trainer.model, self.trainer.processing_class
        loaded = Loaded(model=model, tokenizer=tokenizer, key=(), device=str(model.device), has_lora=True)
        with paused_for_inference(model):
            scored = summarize_and_score(loaded, self.rows, self.decoding)
        rouge_l, chrf, texts = scored.rouge_l, scored.chrf, scored.texts
        self.emit(GenerationEval(run=self.run_name, step=state.global_step, rouge_l=rouge_l, chrf=chrf,
                                 rows=len(texts), sample=texts[0] if texts else ""))
        self.tracker.observe("rougeL", rouge_l, state, control)
        self.tracker.observe("chrf", chrf, state, control)


def make_callbacks(trainer: Any, emit: Emit, stop: threading.Event, run_name: str, progress: RunProgress,
                   flops_per_token: float, peak_tflops: float | None, memory_before_gib: float,
                   eval_rows: HeldOutPrompts | None = None, decoding: EvalSection | None = None,
                   pause: PauseControl | None = None) -> list[Any]:
    # Order matters where two act on one hook: the clock times the step before the guard may stop it,
    # the guard judges a log before the reporter records its loss, and a checkpoint is marked complete
    # before it is marked best.
    decoding = decoding or EvalSection()
    tracker = BestTracker(emit, run_name, progress, decoding.best_metric, decoding.early_stopping_patience)
    callbacks = [
        StepClock(emit, run_name, progress),
        StepGuard(trainer, stop, progress),
        StepReporter(trainer, emit, run_name, progress, flops_per_token, peak_tflops, memory_before_gib),
        EvalReporter(emit, run_name),
        CheckpointMarker(emit, run_name),
        tracker,
    ]
    if pause is not None:
        callbacks.insert(0, PauseGate(pause, stop, progress))
    if eval_rows is not None and decoding.generate_steps:
        callbacks.append(GenerationEvaluator(trainer, emit, run_name, decoding.generate_steps, eval_rows, decoding,
                                             tracker, stop))
    return callbacks
