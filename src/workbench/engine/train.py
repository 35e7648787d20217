"""Training: the dataset the model sees, TRL's SFTTrainer, and a callback that turns the trainer's
hooks into protocol events written to the run's events.jsonl.

The trained samples are tokenized by `workbench.data` (the same code the preview shows), handed to TRL
pre-tokenized with a `completion_mask`, so what the Data pane shows is exactly what is trained on.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from workbench import data as wbdata
from workbench.config import RunConfig, save_config
from workbench.engine.errors import UserError, explain
from workbench.engine.model import Loaded, add_lora, count_parameters, load_base, model_key
from workbench.mfu import lora_flops_per_token, mfu
from workbench.protocol import Checkpoint, Done, Eval, Log, Memory, Status, TrainStart
from workbench.runs import COMPLETE_MARKER, RunDir

GIB = 1024**3
Emit = Callable[[BaseModel], None]

# Fault injection for the robustness tests (issue 5): a NaN loss, or a CUDA out-of-memory error, at a
# given optimizer step, so that the paths that handle them run on machines without a GPU. Unset in use.
INJECT_NAN_ENV = "WORKBENCH_INJECT_NAN_AT_STEP"
INJECT_OOM_ENV = "WORKBENCH_INJECT_OOM_AT_STEP"  # fires only while the micro-batch is above 1


def _injected_step(name: str) -> int:
    try:
        return int(os.environ.get(name, "0"))
    except ValueError:
        return 0


@dataclass
class PreparedData:
    train: list[wbdata.TokenizedSample]
    eval: list[wbdata.TokenizedSample]
    fingerprint: str
    skipped_invalid: list[wbdata.RowIssue] = field(default_factory=list)
    dropped_untrained: list[int] = field(default_factory=list)
    mean_tokens: float = 0.0


def prepare_data(config: RunConfig, tokenizer: Any) -> PreparedData:
    """Load, validate, split and tokenize; refuse invalid rows unless the config accepts skipping them."""
    d = config.data
    dataset = wbdata.load_rows(d.source, d.split)
    examples, issues = wbdata.require_usable(dataset, d.input_column, d.output_column, d.template)
    invalid = wbdata.invalid_issues(issues)
    if invalid and not d.skip_bad_rows:
        shown = "; ".join(i.describe() for i in invalid[:5])
        more = f" (and {len(invalid) - 5} more)" if len(invalid) > 5 else ""
        raise UserError(
            "data",
            f"{d.source}: {len(invalid)} invalid rows: {shown}{more}",
            "Fix the rows, or accept skipping them (data.skip_bad_rows / --skip-bad-rows).",
        )
    if d.max_rows is not None:
        examples = examples[: d.max_rows]
    if not examples:
        raise UserError("data", f"{d.source}: no usable rows", "Check the column names and the file.")
    train_ex, eval_ex = wbdata.split_eval(examples, d.eval_fraction, config.training.seed)

    def tok(exs: list[wbdata.Example]) -> list[wbdata.TokenizedSample]:
        return wbdata.tokenize_examples(
            exs, tokenizer, d.template, d.instruction, config.model.max_seq_length, d.train_on_responses_only
        )

    train = tok(train_ex)
    dropped = [s.row for s in train if s.n_trained == 0]
    train = [s for s in train if s.n_trained > 0]
    evals = [s for s in tok(eval_ex) if s.n_trained > 0]
    if not train:
        raise UserError(
            "data",
            "every sample loses its whole summary to truncation: nothing would be trained",
            "Raise model.max_seq_length or shorten the conversations.",
        )
    mean_tokens = sum(len(s.input_ids) for s in train) / len(train)
    return PreparedData(train, evals, dataset.fingerprint, invalid, dropped, mean_tokens)


def _to_hf_dataset(samples: list[wbdata.TokenizedSample]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "input_ids": [s.input_ids for s in samples],
            "completion_mask": [[int(t) for t in s.trained] for s in samples],
        }
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


class EventCallback:
    """Built lazily as a `TrainerCallback` subclass (transformers is imported only in the engine)."""


def make_callback(
    emit: Emit,
    stop: threading.Event,
    run_name: str,
    flops_per_token: float,
    peak_tflops: float | None,
    memory_before: float,
) -> Any:
    import torch
    from transformers import TrainerCallback

    class _Callback(TrainerCallback):
        def __init__(self) -> None:
            self.trainer: Any = None
            self.t0 = time.time()
            self.last_t = self.t0
            self.last_tokens = 0.0
            self.step_times: list[float] = []
            self.step_started = 0.0
            self.failure: str | None = None
            self.first_step_done = False
            self.last_loss: float | None = None
            self.logs_seen = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t0 = self.last_t = time.time()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_started = time.time()
            if not self.first_step_done and torch.cuda.is_available():
                emit(Status(run=run_name, message="First step: compiling GPU kernels; this takes 2-3 minutes once."))

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            now = time.time()
            if self.first_step_done:
                self.step_times.append(now - self.step_started)
            self.first_step_done = True
            bad = getattr(self.trainer, "_wb_nonfinite", None)
            if bad is not None:
                self.trainer._wb_nonfinite = None
                if bool(bad):
                    self._fail(control, f"the loss became NaN or infinite at step {state.global_step}")
                    return
            if stop.is_set():
                control.should_training_stop = True
                control.should_save = True

        def _fail(self, control: Any, message: str) -> None:
            self.failure = message
            control.should_training_stop = True
            control.should_save = False  # keep the last good checkpoint as the newest

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" not in logs:
                return
            now = time.time()
            loss = logs.get("loss")
            grad_norm = logs.get("grad_norm")
            # Our own count (TRL's num_tokens is missing under unsloth); resumed runs count from the resume.
            counted = getattr(self.trainer, "_wb_tokens", None)
            tokens = float(counted) if counted is not None else float(logs.get("num_tokens") or 0.0)
            tps = None
            if tokens > self.last_tokens and now > self.last_t and len(self.step_times) > 0:
                tps = (tokens - self.last_tokens) / (now - self.last_t)
            self.last_tokens, self.last_t = tokens, now
            step, total = state.global_step, state.max_steps
            eta = None
            if self.step_times:
                recent = self.step_times[-20:]
                eta = (total - step) * sum(recent) / len(recent)
            emit(
                Log(
                    run=run_name,
                    step=step,
                    total_steps=total,
                    loss=float(loss) if isinstance(loss, int | float) else None,
                    learning_rate=logs.get("learning_rate"),
                    grad_norm=float(grad_norm) if isinstance(grad_norm, int | float) else None,
                    epoch=logs.get("epoch"),
                    tokens=int(tokens),
                    tokens_per_s=tps,
                    mfu=mfu(tps, flops_per_token, peak_tflops) if tps and peak_tflops else None,
                    elapsed_s=now - self.t0,
                    eta_s=eta,
                )
            )
            if isinstance(loss, int | float):
                self.last_loss = float(loss)
            if not _finite(loss):
                self._fail(control, f"the loss became {loss} at step {step}")
            elif grad_norm is not None and not _finite(grad_norm):
                self._fail(control, f"the gradient norm became {grad_norm} at step {step}")
            self.logs_seen += 1
            if torch.cuda.is_available() and self.logs_seen % 10 == 1:
                emit(_memory_event(run_name, "step", memory_before))

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kw: Any) -> None:
            if metrics and "eval_loss" in metrics:
                emit(Eval(run=run_name, step=state.global_step, eval_loss=float(metrics["eval_loss"])))

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            from pathlib import Path

            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if path.is_dir():
                (path / COMPLETE_MARKER).write_text(str(state.global_step), encoding="utf-8")
                emit(Checkpoint(run=run_name, step=state.global_step, path=str(path)))

    return _Callback()


def _trainer_class() -> Any:
    import torch
    from trl import SFTTrainer

    oom_at, nan_at = _injected_step(INJECT_OOM_ENV), _injected_step(INJECT_NAN_ENV)  # read once, not per micro-batch

    class WorkbenchTrainer(SFTTrainer):  # type: ignore[misc, valid-type]
        """SFTTrainer that remembers whether any micro-batch's raw loss was not finite.

        The flag stays on the device (no synchronisation per micro-batch); the callback reads it once per
        optimizer step. HF's logged loss hides NaN by default, so this is the raw check."""

        _wb_nonfinite: Any = None
        _wb_tokens: Any = None
        """Real (non-pad) tokens trained on so far, kept on the device; read once per log."""

        def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            step = self.state.global_step + 1
            if step == oom_at and self.args.per_device_train_batch_size > 1:
                raise torch.OutOfMemoryError(
                    f"CUDA out of memory (injected at step {step}). Tried to allocate 2.00 GiB")
            mask = inputs.get("attention_mask")
            real = mask.sum() if mask is not None else torch.tensor(inputs["input_ids"].numel())
            self._wb_tokens = real if self._wb_tokens is None else self._wb_tokens + real
            loss = super().training_step(model, inputs, *args, **kwargs)
            if step == nan_at:
                loss = loss * float("nan")
            bad = ~torch.isfinite(loss.detach()).all()
            self._wb_nonfinite = bad if self._wb_nonfinite is None else (self._wb_nonfinite | bad)
            return loss

    return WorkbenchTrainer


def _memory_event(run_name: str, phase: str, before_gib: float) -> Memory:
    import torch

    props = torch.cuda.get_device_properties(0)
    total = props.total_memory / GIB
    peak = torch.cuda.max_memory_reserved() / GIB
    return Memory(
        run=run_name,
        phase=phase,  # type: ignore[arg-type]
        gpu_name=props.name,
        total_gib=round(total, 3),
        reserved_before_gib=round(before_gib, 3),
        reserved_gib=round(torch.cuda.memory_reserved() / GIB, 3),
        peak_gib=round(peak, 3),
        lora_gib=round(max(0.0, peak - before_gib), 3),
    )


def estimate_checkpoint_bytes(trainable_params: int) -> int:
    # LoRA weights (fp32 in the checkpoint) + two Adam moments (fp32) + scheduler/RNG/tokenizer slack.
    return trainable_params * 4 * 3 + 64 * 1024**2


def check_disk(run: RunDir, config: RunConfig, trainable_params: int) -> None:
    from workbench.runs import free_bytes

    per_checkpoint = estimate_checkpoint_bytes(trainable_params)
    keep = (config.training.save_total_limit or 10) + 1  # kept checkpoints + the final adapter
    need = per_checkpoint * keep
    free = free_bytes(run.path)
    if free < need:
        raise UserError(
            "disk_full",
            f"{run.path}: {free / GIB:.2f} GiB free, but checkpoints need about {need / GIB:.2f} GiB "
            f"({keep} x {per_checkpoint / GIB:.2f} GiB)",
            "Free disk space, lower training.save_total_limit, or choose another output.runs_dir.",
        )


def _sft_config(config: RunConfig, run: RunDir, has_eval: bool, batch: int, accum: int) -> Any:
    import torch
    from trl import SFTConfig

    kwargs = config.sft_kwargs()
    kwargs["per_device_train_batch_size"] = batch
    kwargs["gradient_accumulation_steps"] = accum
    cuda = torch.cuda.is_available()
    if not cuda and kwargs["optim"] in ("adamw_8bit", "paged_adamw_8bit", "adamw_torch_fused"):
        kwargs["optim"] = "adamw_torch"
    if cuda:
        bf16 = torch.cuda.is_bf16_supported()
        kwargs.update(bf16=bf16, fp16=not bf16)
    if has_eval:
        kwargs.update(
            eval_strategy="steps", eval_steps=config.training.eval_steps, per_device_eval_batch_size=batch
        )
    return SFTConfig(
        output_dir=str(run.checkpoints_dir),
        report_to="none",
        save_strategy="steps",
        logging_strategy="steps",
        logging_nan_inf_filter=False,  # raw loss: NaN must be seen, not averaged away
        completion_only_loss=True,
        dataset_num_proc=None,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **kwargs,
    )


def run_training(
    config: RunConfig,
    run: RunDir,
    emit: Emit,
    stop: threading.Event,
    *,
    resume: bool = False,
    loaded: Loaded | None = None,
    status: Callable[[str], None] | None = None,
) -> tuple[Done, Loaded | None]:
    """Train one run to completion, stop or failure. Never raises for expected failures: returns the
    final `Done` event (also emitted) and the loaded model (for chat and save afterwards)."""
    import torch

    from workbench.gpu import peak_tflops

    started = time.time()

    def out(event: BaseModel) -> None:
        event.run = run.name  # type: ignore[attr-defined]
        run.append(event)
        emit(event)

    def say(message: str) -> None:
        out(Status(message=message))
        if status:
            status(message)

    save_config(config, run.config_path)
    batch = config.training.per_device_train_batch_size
    accum = config.training.gradient_accumulation_steps
    step = 0
    total = config.training.max_steps
    callback: Any = None
    try:
        if loaded is None or loaded.key != model_key(config) or loaded.has_lora:
            loaded = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            loaded = load_base(config, say)
        say("Tokenizing the dataset…")
        prepared = prepare_data(config, loaded.tokenizer)
        if prepared.skipped_invalid:
            say(f"Skipping {len(prepared.skipped_invalid)} invalid rows (accepted by skip_bad_rows).")
        if prepared.dropped_untrained:
            say(f"Dropping {len(prepared.dropped_untrained)} rows whose summary is cut off entirely by truncation.")
        add_lora(loaded, config)
        trainable, total_params = count_parameters(loaded.model)
        check_disk(run, config, trainable)
        run.discard_incomplete_checkpoints()
        checkpoint = run.newest_checkpoint() if resume else None
        if resume and checkpoint is None:
            say("No complete checkpoint in this run yet: starting from step 0.")
        gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
        peak = peak_tflops(gpu_name) if gpu_name else None
        model_cfg = loaded.model.config.to_dict() if hasattr(loaded.model.config, "to_dict") else {}
        try:
            fpt = lora_flops_per_token(model_cfg, prepared.mean_tokens)
        except (KeyError, TypeError, ValueError):
            fpt = 0.0
        memory_before = torch.cuda.max_memory_reserved() / GIB if torch.cuda.is_available() else 0.0
        if torch.cuda.is_available():
            out(_memory_event(run.name, "before", memory_before))
        train_ds = _to_hf_dataset(prepared.train)
        eval_ds = _to_hf_dataset(prepared.eval) if prepared.eval else None
        attempts = 0
        initial_lora = None
        if config.training.auto_retry_oom:
            # A retry with no checkpoint yet must start from the same LoRA init, not half-trained weights.
            from peft import get_peft_model_state_dict

            initial_lora = {k: v.detach().clone() for k, v in get_peft_model_state_dict(loaded.model).items()}
        while True:
            args = _sft_config(config, run, eval_ds is not None, batch, accum)
            callback = make_callback(out, stop, run.name, fpt, peak, memory_before)
            trainer = _trainer_class()(
                model=loaded.model,
                processing_class=loaded.tokenizer,
                train_dataset=train_ds,
                eval_dataset=eval_ds,
                args=args,
                callbacks=[callback],
            )
            callback.trainer = trainer
            if config.data.packing and not getattr(trainer.args, "packing", False) and attempts == 0:
                # unsloth turns packing off where it cannot pack (Gemma-2 among them) and says so only
                # in its log; measured on an H200, "packed" runs were then exactly as fast as padded ones.
                model_type = getattr(loaded.model.config, "model_type", "this model")
                say(f"Packing is off: unsloth does not pack {model_type} models, so batches are padded "
                    "as with packing = false.")
            total = trainer.state.max_steps or _planned_steps(config, len(prepared.train), batch, accum)
            out(
                TrainStart(
                    total_steps=total,
                    start_step=_checkpoint_step(checkpoint),
                    run_dir=str(run.path),
                    train_rows=len(prepared.train),
                    eval_rows=len(prepared.eval),
                    effective_batch=batch * accum,
                    trainable_params=trainable,
                    total_params=total_params,
                    flops_per_token=fpt,
                    peak_tflops=peak,
                )
            )
            try:
                trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
                break
            except torch.OutOfMemoryError:
                if not config.training.auto_retry_oom or attempts >= 3 or batch == 1:
                    raise
                attempts += 1
                del trainer
                torch.cuda.empty_cache()
                batch, accum = max(1, batch // 2), accum * 2
                checkpoint = run.newest_checkpoint()
                if checkpoint is None and initial_lora is not None:
                    from peft import set_peft_model_state_dict

                    set_peft_model_state_dict(loaded.model, initial_lora)
                say(f"CUDA out of memory: retrying with micro-batch {batch} x accumulation {accum} "
                    f"(same effective batch; attempt {attempts} of 3).")
        step = trainer.state.global_step
        total = trainer.state.max_steps
        if torch.cuda.is_available():
            out(_memory_event(run.name, "after", memory_before))
        if callback.failure:
            done = Done(status="failed", step=step, total_steps=total, final_loss=callback.last_loss,
                        message=f"Stopped: {callback.failure}. The newest checkpoint before it is kept; "
                        "lower the learning rate or check the data, then resume.",
                        runtime_s=time.time() - started)
        elif stop.is_set() and step < total:
            done = Done(status="stopped", step=step, total_steps=total, final_loss=callback.last_loss,
                        message=f"Stopped at step {step}; checkpoint saved. Resume continues from here.",
                        runtime_s=time.time() - started)
        else:
            from workbench.engine.export import save_adapter

            say("Saving the LoRA adapter…")
            adapter = save_adapter(loaded, config, run.adapter_dir, prepared.fingerprint, overwrite=True)
            done = Done(status="completed", step=step, total_steps=total, final_loss=callback.last_loss,
                        adapter_path=str(adapter), message="Training finished; adapter saved.",
                        runtime_s=time.time() - started)
    except Exception as exc:  # every failure becomes a Done(failed) with an actionable message
        import logging

        logging.getLogger("workbench.engine").exception("training failed")
        why = explain(exc, model_name=config.model.name, batch=batch, accum=accum,
                      seq=config.model.max_seq_length)
        done = Done(status="failed", step=step, total_steps=total,
                    final_loss=getattr(callback, "last_loss", None),
                    message=f"{why.message} {why.hint}".strip(), runtime_s=time.time() - started)
        done.error_type = why.type  # type: ignore[attr-defined]
    out(done)
    return done, loaded


def _checkpoint_step(path: Any) -> int:
    if path is None:
        return 0
    try:
        return int(str(path).rsplit("-", 1)[-1])
    except ValueError:
        return 0


def _planned_steps(config: RunConfig, rows: int, batch: int, accum: int) -> int:
    if config.training.max_steps > 0:
        return config.training.max_steps
    per_epoch = max(1, math.ceil(rows / batch / accum))
    return math.ceil(per_epoch * config.training.num_train_epochs)
