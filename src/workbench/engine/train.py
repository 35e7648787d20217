"""Training, as a recipe of named steps: check a resume, set up the model, set up the data, build the
trainer, train (retrying an out-of-memory error with a smaller micro-batch), finish.

The trained samples are tokenized by `workbench.data` (the same code the preview shows) and handed to
TRL pre-tokenized with a `completion_mask`, so what the Data pane shows is exactly what is trained on.
The trainer's hooks become protocol events through small callbacks (`engine/callbacks.py`); every event
is appended to the run's events.jsonl and sent to whoever listens.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from workbench import data as wbdata
from workbench import distributed, fingerprint, packing
from workbench.config import (
    IGNORED_ON_RESUME,
    RESUMABLE_FIELDS,
    RunConfig,
    config_diff,
    load_config,
    save_config,
)
from workbench.engine import layer_stream
from workbench.engine.callbacks import GIB, RunProgress, make_callbacks
from workbench.engine.errors import explain
from workbench.engine.flex_attention import AttentionChoice
from workbench.engine.flex_attention import install as install_attention
from workbench.engine.model import (
    Loaded,
    add_lora,
    check_same_prompts,
    count_parameters,
    load_base,
    model_key,
    release_memory,
    run_fingerprint,
)
from workbench.engine.pause import PauseControl
from workbench.engine.quick_eval import HeldOutPrompts, held_out_prompts
from workbench.engine.rank_memory import memory_events
from workbench.errors import UserError
from workbench.mfu import lora_flops_per_token
from workbench.protocol import Done, Event, Log, Status, TrainStart
from workbench.runs import RunDir, free_bytes

log = logging.getLogger("workbench.engine")
Emit = Callable[[BaseModel], None]


# -- data -------------------------------------------------------------------------------------------

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

    def tokenize(examples: list[wbdata.Example]) -> list[wbdata.TokenizedSample]:
        return wbdata.tokenize_examples(
            examples, tokenizer, d.template, d.instruction, config.model.max_seq_length, d.train_on_responses_only)

    train = tokenize(train_ex)
    dropped = [s.row for s in train if s.n_trained == 0]
    train = [s for s in train if s.n_trained > 0]
    evals = [s for s in tokenize(eval_ex) if s.n_trained > 0]
    if not train:
        raise UserError(
            "data",
            "every sample loses its whole summary to truncation: nothing would be trained",
            "Raise model.max_seq_length or shorten the conversations.",
        )
    mean_tokens = sum(len(s.input_ids) for s in train) / len(train)
    return PreparedData(train, evals, dataset.fingerprint, invalid, dropped, mean_tokens)


def _to_hf_dataset(rows: list[wbdata.TokenizedSample] | list[packing.PackedRow]) -> Any:
    """Token ids and loss masks for TRL; packed rows add `seq_lengths`, from which its collator restarts
    the positions at every sample."""
    from datasets import Dataset

    columns: dict[str, list[Any]] = {
        "input_ids": [r.input_ids for r in rows],
        "completion_mask": [[int(t) for t in r.trained] for r in rows],
    }
    if rows and isinstance(rows[0], packing.PackedRow):
        columns["seq_lengths"] = [r.seq_lengths for r in rows if isinstance(r, packing.PackedRow)]
    return Dataset.from_dict(columns)


# -- checks -----------------------------------------------------------------------------------------

def estimate_checkpoint_bytes(trainable_params: int) -> int:
    # LoRA weights (fp32 in the checkpoint) + two Adam moments (fp32) + scheduler/RNG/tokenizer slack.
    return trainable_params * 4 * 3 + 64 * 1024**2


def check_disk(run: RunDir, config: RunConfig, trainable_params: int) -> None:
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


def check_resume(config: RunConfig, run: RunDir) -> tuple[RunConfig, list[str]]:
    """The config a resumed run continues with, and what changed in it since the run started.

    A change to what shapes the weights or the optimiser state is refused, naming every such field: the
    trainer would ignore some of them without a word. A change to how long the run goes and how often it
    logs, evaluates and saves is applied and reported."""
    if not run.config_path.exists():
        return config, []
    recorded = load_config(run.config_path)
    changes = [c for c in config_diff(recorded, config) if c.field not in IGNORED_ON_RESUME]
    refused = [c for c in changes if c.field not in RESUMABLE_FIELDS]
    if refused:
        raise UserError(
            "resume_config",
            f"Resume refused: since {run.name} started, these settings changed: "
            + "; ".join(c.describe() for c in refused)
            + ". A resumed run keeps the weights, optimiser and schedule it was trained with.",
            "Undo those edits (open the run from Runs to load its config), or press Start for a new run.",
        )
    notes = [c.describe() for c in changes]
    return config.model_copy(update={"output": recorded.output}), notes


def previous_elapsed(run: RunDir) -> float:
    """Training time the run has already spent (its last step's elapsed), so a resumed run counts on."""
    last = 0.0
    for event in run.iter_events():
        if isinstance(event, Log):
            last = event.elapsed_s
    return last


# -- the trainer ------------------------------------------------------------------------------------

def _trainer_class() -> Any:
    import torch
    from trl import SFTTrainer

    from workbench import settings

    # read once, not per micro-batch (settings.VARIABLES documents them)
    oom_at = settings.injected_step("WORKBENCH_INJECT_OOM_AT_STEP")
    nan_at = settings.injected_step("WORKBENCH_INJECT_NAN_AT_STEP")

    class WorkbenchTrainer(SFTTrainer):  # type: ignore[misc]
        """SFTTrainer that remembers whether any micro-batch's raw loss was not finite, and counts real
        tokens. Both stay on the device (no synchronisation per micro-batch); the callbacks read them once
        per optimizer step. HF's logged loss hides NaN by default, so this is the raw check."""

        wb_nonfinite: Any = None
        wb_tokens: Any = None

        def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            step = self.state.global_step + 1
            if step == oom_at and self.args.per_device_train_batch_size > 1:
                raise torch.OutOfMemoryError(
                    f"CUDA out of memory (injected at step {step}). Tried to allocate 2.00 GiB")
            mask = inputs.get("attention_mask")
            real = mask.sum() if mask is not None else torch.tensor(inputs["input_ids"].numel())
            self.wb_tokens = real if self.wb_tokens is None else self.wb_tokens + real
            loss = super().training_step(model, inputs, *args, **kwargs)
            if step == nan_at:
                loss = loss * float("nan")
            bad = ~torch.isfinite(loss.detach()).all()
            self.wb_nonfinite = bad if self.wb_nonfinite is None else (self.wb_nonfinite | bad)
            return loss

    return WorkbenchTrainer


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
        kwargs.update(eval_strategy="steps", eval_steps=config.training.eval_steps, per_device_eval_batch_size=batch)
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


@dataclass
class Plan:
    """Everything fixed before the first step."""

    data: PreparedData
    train_ds: Any
    eval_ds: Any
    trainable: int
    total_params: int
    flops_per_token: float
    peak_tflops: float | None
    memory_before_gib: float
    checkpoint: Any
    """The checkpoint folder to resume from, or None."""
    eval_rows: HeldOutPrompts | None = None
    """Held-out rows for the generation eval during training (eval.generate_steps), or None."""
    attention: AttentionChoice | None = None
    packed: packing.PackingSummary | None = None
    """How the training samples were packed; None when they are padded per micro-batch."""


class Session:
    """One call of `run_training`: the run, where its events go, and the state its steps share."""

    def __init__(self, config: RunConfig, run: RunDir, emit: Emit, stop: threading.Event,
                 status: Callable[[str], None] | None, pause: PauseControl | None = None) -> None:
        self.config, self.run, self.stop, self.pause = config, run, stop, pause
        self._emit, self._status = emit, status
        self.started = time.time()
        self.main = distributed.current().is_main
        """Rank 0 (or the only process): it alone writes the run's files and reports."""
        self.batch = config.training.per_device_train_batch_size
        self.accum = config.training.gradient_accumulation_steps
        self.progress = RunProgress()

    def out(self, event: Event) -> None:
        if not self.main:
            return
        event.run = self.run.name
        self.run.append(event)
        self._emit(event)

    def say(self, message: str) -> None:
        self.out(Status(message=message))
        if self._status:
            self._status(message)

    def done(self, status: Literal["completed", "stopped", "failed"], message: str, step: int, total: int,
             **extra: Any) -> Done:
        return Done(status=status, step=step, total_steps=total,
                    final_loss=self.progress.last_loss, message=message, runtime_s=time.time() - self.started,
                    **extra)


def setup_model(session: Session, loaded: Loaded | None) -> Loaded:
    """The base model, loaded fresh unless the engine holds the same one without an adapter on it."""
    if loaded is not None and loaded.key == model_key(session.config) and not loaded.has_lora:
        return loaded
    release_memory()
    return load_base(session.config, session.say)


def setup_data(session: Session, loaded: Loaded) -> PreparedData:
    session.say("Tokenizing the dataset…")
    prepared = prepare_data(session.config, loaded.tokenizer)
    if prepared.skipped_invalid:
        session.say(f"Skipping {len(prepared.skipped_invalid)} invalid rows (accepted by skip_bad_rows).")
    if prepared.dropped_untrained:
        session.say(f"Dropping {len(prepared.dropped_untrained)} rows whose summary is cut off entirely by truncation.")
    return prepared


def plan_run(session: Session, loaded: Loaded, prepared: PreparedData, resume: bool) -> Plan:
    import torch

    from workbench.gpu import peak_tflops

    config, run = session.config, session.run
    record_fingerprint(session, loaded, resume)
    add_lora(loaded, config)
    trainable, total_params = count_parameters(loaded.model)
    check_disk(run, config, trainable)
    run.discard_incomplete_checkpoints()
    checkpoint = run.newest_checkpoint() if resume else None
    if resume and checkpoint is None:
        session.say("No complete checkpoint in this run yet: starting from step 0.")
    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    model_cfg = loaded.model.config.to_dict() if hasattr(loaded.model.config, "to_dict") else {}
    try:
        fpt = lora_flops_per_token(model_cfg, prepared.mean_tokens)
    except (KeyError, TypeError, ValueError):
        fpt = 0.0
    memory_before = torch.cuda.max_memory_reserved() / GIB if torch.cuda.is_available() else 0.0
    attention = install_attention(loaded.model, config.model.attention == "flex", torch.cuda.is_available())
    session.say(attention.describe()[:1].upper() + attention.describe()[1:] + ".")
    stream_layers(session, loaded)
    train_ds, packed = training_rows(session, prepared, attention)
    return Plan(prepared, train_ds, _to_hf_dataset(prepared.eval) if prepared.eval else None,
                trainable, total_params, fpt, peak_tflops(gpu_name) if gpu_name else None, memory_before, checkpoint,
                generation_eval_rows(session, loaded), attention, packed)


def stream_layers(session: Session, loaded: Loaded) -> None:
    """lora.stream_layers: the frozen layer weights in host memory while this run trains (`layer_stream`)."""
    if not session.config.lora.stream_layers:
        layer_stream.close(loaded.model)  # streamed for an earlier run of the same loaded model
        return
    streaming = layer_stream.install(loaded.model)
    session.say(streaming if isinstance(streaming, str) else streaming.describe())
    if not isinstance(streaming, str) and session.config.eval.generate_steps:
        session.say("The generation eval (eval.generate_steps) brings every layer back while it runs: the "
                    "GPU needs the whole model's memory then.")


def training_rows(session: Session, prepared: PreparedData, attention: AttentionChoice
                  ) -> tuple[Any, packing.PackingSummary | None]:
    """The training dataset: packed when data.packing asks and the attention keeps samples apart, else one
    sample per row (padded per micro-batch)."""
    config = session.config
    if not config.data.packing:
        return _to_hf_dataset(prepared.train), None
    if not attention.packing_ok:
        session.say(f"Packing is off: it needs an attention that keeps packed samples apart ({attention.path} "
                    "does not), so batches are padded as with packing = false.")
        return _to_hf_dataset(prepared.train), None
    rows = packing.pack(prepared.train, config.model.max_seq_length, config.training.seed)
    summary = packing.summarize(rows, config.model.max_seq_length)
    session.say(summary.describe())
    return _to_hf_dataset(rows), summary


def generation_eval_rows(session: Session, loaded: Loaded) -> HeldOutPrompts | None:
    """The held-out rows summarized during training, tokenized once; None when it is off or has no rows."""
    e = session.config.eval
    if not e.generate_steps:
        return None
    try:
        rows = held_out_prompts(loaded.tokenizer, session.config, e.generate_rows)
    except (UserError, wbdata.DataError) as exc:
        session.say(f"The generation eval is off: {exc}")
        return None
    session.say(f"Every {e.generate_steps} steps, {len(rows.prompts)} held-out rows are summarized and scored "
                f"(best checkpoint by {e.best_metric}).")
    return rows


def record_fingerprint(session: Session, loaded: Loaded, resume: bool) -> None:
    """The run's template fingerprint (chat, eval and every export are checked against it); a resume with
    another tokenizer or template than the run started with is refused, saying what differs."""
    if resume:
        check_same_prompts(session.run.path, loaded.tokenizer, session.config, "the tokenizer loaded now")
    if session.main:
        fingerprint.save(run_fingerprint(loaded.tokenizer, session.config), session.run.path)


def build_trainer(session: Session, loaded: Loaded, plan: Plan) -> Any:
    from transformers import PrinterCallback

    args = _sft_config(session.config, session.run, plan.eval_ds is not None, session.batch, session.accum)
    trainer = _trainer_class()(model=loaded.model, processing_class=loaded.tokenizer, train_dataset=plan.train_ds,
                               eval_dataset=plan.eval_ds, args=args)
    # Our callbacks report every step; transformers' printer would print each log as a raw dict.
    trainer.remove_callback(PrinterCallback)
    if plan.packed is not None:
        # positions that restart at every packed sample (from seq_lengths): the attention reads them
        trainer.data_collator.return_position_ids = True
    for callback in make_callbacks(trainer, session.out, session.stop, session.run.name, session.progress,
                                   plan.flops_per_token, plan.peak_tflops, plan.memory_before_gib,
                                   eval_rows=plan.eval_rows, decoding=session.config.eval, pause=session.pause):
        trainer.add_callback(callback)
    return trainer


def announce_start(session: Session, plan: Plan, trainer: Any) -> None:
    config = session.config
    rows = plan.packed.rows if plan.packed is not None else len(plan.data.train)
    total = trainer.state.max_steps or _planned_steps(config, rows, session.batch, session.accum)
    start_step = _checkpoint_step(plan.checkpoint)
    if plan.checkpoint is not None:
        session.say(f"Resuming {session.run.name} from {plan.checkpoint.name} (step {start_step} of {total}).")
    session.out(TrainStart(
        total_steps=total, start_step=start_step, run_dir=str(session.run.path), train_rows=len(plan.data.train),
        eval_rows=len(plan.data.eval), effective_batch=session.batch * session.accum * distributed.current().world,
        ranks=distributed.current().world, trainable_params=plan.trainable,
        total_params=plan.total_params, flops_per_token=plan.flops_per_token, peak_tflops=plan.peak_tflops,
        data_fingerprint=plan.data.fingerprint, attention=plan.attention.path if plan.attention else "",
        packed_rows=plan.packed.rows if plan.packed is not None else None))


def train_with_oom_retry(session: Session, loaded: Loaded, plan: Plan) -> Any:
    """Train to the end (or a stop); on CUDA out-of-memory with auto_retry_oom, halve the micro-batch and
    double the accumulation (the same effective batch), up to three times (on one process only)."""
    import torch

    initial_lora = None
    if session.config.training.auto_retry_oom:
        # A retry with no checkpoint yet must start from the same LoRA init, not half-trained weights.
        from peft import get_peft_model_state_dict

        initial_lora = {k: v.detach().clone() for k, v in get_peft_model_state_dict(loaded.model).items()}
    attempts = 0
    while True:
        trainer = build_trainer(session, loaded, plan)
        announce_start(session, plan, trainer)
        try:
            trainer.train(resume_from_checkpoint=str(plan.checkpoint) if plan.checkpoint else None)
            return trainer
        except torch.OutOfMemoryError:
            # On several ranks a retry would be one rank's alone while the others wait in a collective (a hang
            # until the NCCL timeout): the run fails at once instead, its newest checkpoint kept for a resume.
            on_ranks = distributed.current().distributed
            if not session.config.training.auto_retry_oom or attempts >= 3 or session.batch == 1 or on_ranks:
                raise
        attempts += 1
        del trainer
        release_memory()
        session.batch, session.accum = max(1, session.batch // 2), session.accum * 2
        plan.checkpoint = session.run.newest_checkpoint()
        if plan.checkpoint is None and initial_lora is not None:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(loaded.model, initial_lora)
        session.say(f"CUDA out of memory: retrying with micro-batch {session.batch} x accumulation {session.accum} "
                    f"(same effective batch; attempt {attempts} of 3).")


def report_memory(session: Session, plan: Plan, phase: Literal["before", "after"]) -> None:
    """Every rank's GPU memory, gathered (a collective: every rank calls it); rank 0 writes one event per rank."""
    for event in memory_events(session.run.name, phase, plan.memory_before_gib):
        session.out(event)


def finish(session: Session, loaded: Loaded, plan: Plan, trainer: Any) -> Done:
    """The run's end: failed (NaN), stopped (a checkpoint is kept), or completed (the adapter is saved)."""
    import torch

    from workbench.engine.export import adapter_writer, write_run_adapter

    step, total = trainer.state.global_step, trainer.state.max_steps
    if torch.cuda.is_available():
        report_memory(session, plan, "after")
    if session.progress.failure:
        return session.done("failed", f"Stopped: {session.progress.failure}. The newest checkpoint before it is "
                            "kept; lower the learning rate or check the data, then resume.", step, total)
    if session.stop.is_set() and step < total:
        newest = session.run.newest_checkpoint()
        loaded.adapter_path = str(newest) if newest is not None else None  # what the weights in memory equal
        return session.done("stopped", f"Stopped at step {step}; checkpoint saved. Resume continues from here.",
                            step, total)
    session.say("Saving the LoRA adapter…")
    adapter = None
    with adapter_writer(loaded.model, session.config, session.main) as writes:  # every rank enters (FSDP2 gathers shards)
        if writes:
            adapter = write_run_adapter(loaded, session.run, session.config)
    if not session.main or adapter is None:
        return session.done("completed", "Training finished (rank 0 saves the adapter).", step, total)
    best = session.progress.best
    kept = f" The best checkpoint is {Path(best.path).name} ({best.metric} {best.value:.4f})." if best else ""
    if session.progress.early_stop:
        return session.done("completed", f"Stopped early at step {step}: {session.progress.early_stop}. Adapter "
                            f"saved (the weights of step {step}).{kept}", step, total, adapter_path=str(adapter))
    return session.done("completed", f"Training finished; adapter saved.{kept}", step, total,
                        adapter_path=str(adapter))


def run_training(
    config: RunConfig,
    run: RunDir,
    emit: Emit,
    stop: threading.Event,
    *,
    resume: bool = False,
    loaded: Loaded | None = None,
    status: Callable[[str], None] | None = None,
    socket_path: str | None = None,
    pause: PauseControl | None = None,
) -> tuple[Done, Loaded | None]:
    """Train one run to completion, stop or failure. Never raises for expected failures: returns the
    final `Done` event (also emitted) and the loaded model (for chat and save afterwards).

    While it trains, the run's engine.json names this process (and the socket a UI re-attaches to, when
    an engine serves one): `workbench runs` and `attach` tell a live run from an interrupted one by it."""
    session = Session(config, run, emit, stop, status, pause)
    if session.main:
        run.write_engine_info(os.getpid(), socket_path)
    step = total = 0
    try:
        if resume:
            session.config, changes = check_resume(config, run)
            if changes:
                session.say("Resuming with changed settings: " + "; ".join(changes) + ".")
            session.progress.elapsed_before = previous_elapsed(run)
        if session.main:
            save_config(session.config, run.config_path)
        total = session.config.training.max_steps
        loaded = setup_model(session, loaded)
        prepared = setup_data(session, loaded)
        plan = plan_run(session, loaded, prepared, resume)
        if plan.memory_before_gib:
            report_memory(session, plan, "before")
        if session.pause is not None:
            session.pause.live = loaded  # what a probe uses while the run is paused
        trainer = train_with_oom_retry(session, loaded, plan)
        step, total = trainer.state.global_step, trainer.state.max_steps
        done = finish(session, loaded, plan, trainer)
        del trainer  # its optimizer state goes before streamed layers come back to the GPU (below)
    except Exception as exc:  # a process boundary: every failure becomes a Done(failed) with an actionable message
        if not isinstance(exc, UserError):
            log.exception("training failed")
        why = explain(exc, model_name=config.model.name, batch=session.batch, accum=session.accum,
                      seq=config.model.max_seq_length)
        step = max(step, session.progress.last_step)  # the trainer is gone with the exception, not its steps
        done = session.done("failed", f"{why.message} {why.hint}".strip(), step, total, error_type=why.type)
    finally:
        if loaded is not None:
            layer_stream.close(loaded.model)  # chat, evals and exports use an ordinary model, a failed run's too
        if session.main:
            run.clear_engine_info()
    session.out(done)
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
