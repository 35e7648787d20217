"""Generate summaries of held-out rows, batched, and judge them (`workbench.evaluation` writes and scores).

The recipe (`run_eval`): resolve the run's weights and config; pick the held-out rows; check the adapter
was made with this run's template; plan (and on `--resume`, check the plan equals the one on disk);
generate in batches (left padding, greedy unless the config samples), tuned and, when asked, base (the
adapter off); append each finished row to eval.jsonl and rewrite eval.json after every batch. A stop
between batches (Ctrl-C, the Eval pane's Stop) keeps every finished row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from workbench import evaluation as ev
from workbench.config import ConfigError, RunConfig, load_config
from workbench.engine.generate import adapter_switch, eos_ids, prepare_for_inference
from workbench.engine.model import Loaded, check_same_prompts
from workbench.errors import UserError
from workbench.runs import RunDir, WeightsSource, resolve_weights
from workbench.templates import render_prompt

ModelSource = Callable[[RunConfig, str | None], Loaded]
FastRows = Callable[[Loaded, RunConfig, int, int], Any]
"""(the loaded model, its config, rows, cache length) -> a batched fast decoder (engine.fast_chat), or None."""
Say = Callable[[str], None]
OnRows = Callable[[list[ev.RowRecord], int, int], None]
"""(the rows just finished, rows done, rows planned)."""

CUT_MARK = "… "


@dataclass(frozen=True)
class EvalRequest:
    run: RunDir
    rows: int | None = None
    """How many held-out rows (None: the config's eval.rows; 0: all)."""
    base: bool = False
    source: str | None = None
    split: str | None = None
    max_new_tokens: int | None = None
    batch_size: int | None = None
    checkpoint: int | None = None
    resume: bool = False
    name: str | None = None


@dataclass(frozen=True)
class EvalOutcome:
    folder: Path
    report: ev.Report
    rows_done: int
    rows_planned: int

    @property
    def complete(self) -> bool:
        return self.rows_done == self.rows_planned


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    cut_tokens: int


def build_prompt(tokenizer: Any, config: RunConfig, conversation: str, max_new_tokens: int) -> Prompt:
    """The prompt's token ids; a conversation too long for max_seq_length (with room for the answer) is
    cut from the start, its latest turns kept, and how many tokens were cut is recorded."""
    d = config.data
    budget = config.model.max_seq_length - max_new_tokens

    def ids_of(text: str) -> list[int]:
        prompt = render_prompt(d.template, d.instruction, text, bos=tokenizer.bos_token)
        encoded: list[int] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return encoded

    ids = ids_of(conversation)
    if len(ids) <= budget:
        return Prompt(ids, 0)
    words = tokenizer(conversation, add_special_tokens=False)["input_ids"]
    cut = len(ids) - budget
    while cut < len(words):
        ids = ids_of(CUT_MARK + tokenizer.decode(words[cut:]))
        if len(ids) <= budget:
            return Prompt(ids, cut)
        cut += max(1, (len(ids) - budget))
    raise UserError("eval", f"max_seq_length {config.model.max_seq_length} leaves no room for a prompt and "
                    f"{max_new_tokens} new tokens", "Lower eval.max_new_tokens or raise model.max_seq_length.")


@dataclass(frozen=True)
class Generated:
    text: str
    tokens: int
    unended: bool


def generate_batch(loaded: Loaded, prompts: list[list[int]], *, max_new_tokens: int, do_sample: bool,
                   temperature: float, top_p: float, use_adapter: bool, stop: threading.Event) -> list[Generated]:
    """Greedy (or sampled) answers to several prompts at once, left-padded to the longest."""
    import torch
    from transformers import StoppingCriteriaList

    from workbench.engine.generate import _Stopper

    model, tokenizer = loaded.model, loaded.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    prepare_for_inference(model)
    ends = eos_ids(tokenizer)
    kwargs: dict[str, Any] = dict(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                                  do_sample=do_sample, eos_token_id=ends, pad_token_id=pad, use_cache=True,
                                  stopping_criteria=StoppingCriteriaList([_Stopper(stop)]))
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    with adapter_switch(loaded, use_adapter), torch.inference_mode():
        output = model.generate(**kwargs)
    answers = []
    for row in output[:, width:].tolist():
        end = next((i for i, t in enumerate(row) if t in ends), None)
        kept = row[:end] if end is not None else [t for t in row if t != pad]
        answers.append(Generated(tokenizer.decode(kept, skip_special_tokens=True).strip(),
                                 len(kept) + (1 if end is not None else 0), unended=end is None))
    return answers


def generate_batch_fast(decoder: Any, loaded: Loaded, prompts: list[list[int]], *, max_new_tokens: int,
                        do_sample: bool, temperature: float, top_p: float, stop: threading.Event) -> list[Generated]:
    """As `generate_batch` with the adapter on, from the batched fast decoder (`fast_decode.decode_rows`):
    the same prompts, end tokens and counting."""
    from workbench.engine import fast_decode as fd

    tokenizer = loaded.tokenizer
    answers = fd.decode_rows(decoder, prompts, max_new_tokens=max_new_tokens,
                             temperature=temperature if do_sample else 0.0, top_p=top_p,
                             stop_ids=eos_ids(tokenizer), cancel=stop)
    made = []
    for answer in answers:
        kept = answer.token_ids[:-1] if answer.ended else answer.token_ids
        made.append(Generated(tokenizer.decode(kept, skip_special_tokens=True).strip(),
                              len(kept) + (1 if answer.ended else 0), unended=not answer.ended))
    return made


def check_adapter_matches(source: WeightsSource) -> None:
    """An adapter saved with another template or instruction than its run's config would be judged on
    prompts it was never trained with: refused, saying what differs."""
    saved = source.adapter / "workbench-config.toml"
    if not saved.exists():
        return  # a checkpoint: written by this run's own trainer
    try:
        adapter_config = load_config(saved)
    except ConfigError as exc:
        raise UserError("eval_mismatch", f"{saved}: {exc}", "The adapter's recorded config cannot be read.") from None
    run_data, adapter_data = source.config.data, adapter_config.data
    for field in ("template", "instruction"):
        if getattr(run_data, field) != getattr(adapter_data, field):
            raise UserError("eval_mismatch", f"{source.adapter} was trained with data.{field} "
                            f"{getattr(adapter_data, field)!r}, but the run's config says {getattr(run_data, field)!r}",
                            "Evaluate with the config the adapter was trained with (the run's own).")
    if adapter_config.model.name != source.config.model.name:
        raise UserError("eval_mismatch", f"{source.adapter} is an adapter of {adapter_config.model.name}, not of "
                        f"{source.config.model.name}", "Evaluate it with its own run.")


def _versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in ("workbench", "unsloth", "torch", "transformers", "peft", "rouge-score", "sacrebleu"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def plan_eval(request: EvalRequest, source: WeightsSource, heldout: ev.HeldOut) -> ev.EvalPlan:
    config = source.config
    wanted = config.eval.rows if request.rows is None else request.rows
    rows = heldout.examples[:wanted] if wanted else heldout.examples
    e = config.eval
    decoding = ev.Decoding(max_new_tokens=request.max_new_tokens or e.max_new_tokens, do_sample=e.do_sample,
                           temperature=e.temperature if e.do_sample else None, top_p=e.top_p if e.do_sample else None,
                           batch_size=request.batch_size or e.batch_size)
    return ev.EvalPlan(run=source.run.name, weights=source.checkpoint or "final adapter", step=source.step,
                       heldout=heldout.description, rows=[x.row for x in rows], base=request.base, decoding=decoding,
                       template=config.data.template, instruction=config.data.instruction,
                       config_fingerprint=ev.config_fingerprint(config), stem=e.stem)


def eval_folder(request: EvalRequest, plan: ev.EvalPlan) -> Path:
    name = request.name or ev.eval_name(plan.weights, len(plan.rows), plan.base)
    return request.run.path / ev.EVALS_DIR / name


def _done_rows(folder: Path, plan: ev.EvalPlan, resume: bool) -> list[ev.RowRecord]:
    """The rows already made, when resuming the same eval; an existing eval is never silently replaced."""
    report = folder / ev.REPORT_FILE
    rows_file = folder / ev.ROWS_FILE
    if not rows_file.exists():
        return []
    if not resume:
        raise UserError("exists", f"{folder} already holds an eval",
                        "Continue it with --resume (the Eval pane: Resume), or give another --name.")
    import json

    try:
        recorded = ev.EvalPlan.model_validate(json.loads(report.read_text(encoding="utf-8"))["plan"])
    except (OSError, ValueError, KeyError):
        recorded = None
    if recorded is None or recorded.identity() != plan.identity():
        raise UserError("eval_mismatch", f"{folder} was made with other rows, weights or decoding settings",
                        "Start a new eval with another --name.")
    done = ev.read_records(rows_file)
    wanted = set(plan.rows)
    return [r for r in done if r.row in wanted]


def run_eval(request: EvalRequest, *, say: Say, models: ModelSource, stop: threading.Event,
             on_rows: OnRows | None = None, on_folder: Callable[[str], None] | None = None,
             fast: FastRows | None = None) -> EvalOutcome:
    """Generate and score every planned row not yet made (or until `stop`). `fast`: where the tuned model's
    answers may come from the batched fast decoder (the base model's always take `generate`)."""
    source = resolve_weights(request.run, request.checkpoint)
    check_adapter_matches(source)
    heldout = ev.heldout_rows(source.config, request.source, request.split)
    plan = plan_eval(request, source, heldout)
    folder = eval_folder(request, plan)
    folder.mkdir(parents=True, exist_ok=True)
    if on_folder is not None:
        on_folder(str(folder))
    done = _done_rows(folder, plan, request.resume)
    by_row = {x.row: x for x in heldout.examples}
    todo = [by_row[r] for r in plan.rows if r not in {d.row for d in done}]
    versions = _versions()
    records = list(done)
    ev.write_json_atomic(folder / ev.REPORT_FILE, ev.report_document(plan, ev.score_records(records, plan.stem),
                                                                      complete=not todo, versions=versions))
    if todo:
        say(f"Evaluating {source.run.name} ({plan.weights}) on {len(todo)} of {len(plan.rows)} held-out rows"
            + (" (resumed)" if done else "") + f", batches of {plan.decoding.batch_size}…")
        loaded = models(source.config, str(source.adapter))
        check_same_prompts(source.run.path, loaded.tokenizer, source.config, "the model loaded for eval")
    size = plan.decoding.batch_size
    for start in range(0, len(todo), size):
        if stop.is_set():
            break
        batch = todo[start : start + size]
        made = _generate_rows(loaded, source.config, plan, batch, stop, fast)
        if stop.is_set():
            break  # a batch cut short is thrown away: it is made again on resume
        for record in made:
            ev.append_record(folder / ev.ROWS_FILE, record)
        records += made
        ev.write_json_atomic(folder / ev.REPORT_FILE, ev.report_document(
            plan, ev.score_records(records, plan.stem), complete=len(records) == len(plan.rows), versions=versions))
        if on_rows is not None:
            on_rows(made, len(records), len(plan.rows))
    return EvalOutcome(folder, ev.score_records(records, plan.stem), len(records), len(plan.rows))


def _generate_rows(loaded: Loaded, config: RunConfig, plan: ev.EvalPlan, batch: list[Any],
                   stop: threading.Event, fast: FastRows | None = None) -> list[ev.RowRecord]:
    d = plan.decoding
    prompts = [build_prompt(loaded.tokenizer, config, x.conversation, d.max_new_tokens) for x in batch]
    outputs: dict[ev.Model, list[tuple[Generated, float]]] = {}
    for model in ("tuned", "base") if plan.base else ("tuned",):
        started = time.perf_counter()
        settings: dict[str, Any] = dict(max_new_tokens=d.max_new_tokens, do_sample=d.do_sample,
                                        temperature=d.temperature or 1.0, top_p=d.top_p or 1.0, stop=stop)
        # Prompts are cut to leave room for the answer within max_seq_length: that is the cache's length.
        decoder = fast(loaded, config, d.batch_size, config.model.max_seq_length) if fast and model == "tuned" else None
        if decoder is not None:
            answers = generate_batch_fast(decoder, loaded, [p.ids for p in prompts], **settings)
        else:
            answers = generate_batch(loaded, [p.ids for p in prompts], use_adapter=(model == "tuned"), **settings)
        share = (time.perf_counter() - started) / len(batch)
        outputs[model] = [(a, share) for a in answers]
    return [ev.RowRecord(row=x.row, input=x.conversation, reference=x.summary, prompt_tokens=len(p.ids),
                         cut_tokens=p.cut_tokens,
                         outputs={m: ev.Output(text=a.text, tokens=a.tokens, unended=a.unended, seconds=round(t, 4))
                                  for m, made in outputs.items() for a, t in [made[i]]})
            for i, (x, p) in enumerate(zip(batch, prompts, strict=True))]
