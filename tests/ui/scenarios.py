"""Deterministic answers and events for UI tests without the engine: real tokenization and statistics of
the bundled Hindi data (tiny Gemma-2 tokenizer), fixed training events. `scripted.ScriptedEngine` sends
them as the engine would."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from workbench import data as wbdata
from workbench import requests as rq
from workbench.config import RunConfig
from workbench.protocol import Done, Eval, Log, Memory, TrainStart
from workbench.runs import COMPLETE_MARKER, RunDir

T0 = 1_795_800_000.0  # fixed clock for events


@cache
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from workbench.engine.tiny import build_tiny_model

    return AutoTokenizer.from_pretrained(build_tiny_model())


def preview_answer(config: RunConfig, positions: list[int], file_rows: list[int] | None = None) -> rq.PreviewAnswer:
    """What the engine's preview answers, computed the same way (data.py, the tiny tokenizer)."""
    d = config.data
    dataset = wbdata.load_rows(d.source, d.split)
    wanted = [p for p in positions if 0 <= p < len(dataset.rows)]
    by_row = {r.row: i for i, r in enumerate(dataset.rows)}
    wanted += [by_row[r] for r in file_rows or [] if r in by_row]
    items = []
    for position in wanted:
        row = dataset.rows[position]
        examples, issues = wbdata.validate_rows(wbdata.LoadedDataset(dataset.source, [row], dataset.columns, ""),
                                                d.input_column, d.output_column)
        samples = wbdata.tokenize_examples(examples, tokenizer(), d.template, d.instruction,
                                           config.model.max_seq_length, d.train_on_responses_only)
        items.append(rq.PreviewItem(
            position=position, row=row.row, sample=samples[0] if samples else None,
            issue=issues[0].describe() if issues and not samples else None,
            conversation=examples[0].conversation if examples else None,
            summary=examples[0].summary if examples else None))
    return rq.PreviewAnswer(source=dataset.source, rows_total=len(dataset.rows), columns=dataset.columns,
                            fingerprint=dataset.fingerprint, max_seq_length=config.model.max_seq_length, items=items)


def stats_answer(config: RunConfig) -> rq.StatsAnswer:
    d = config.data
    dataset = wbdata.load_rows(d.source, d.split)
    return rq.StatsAnswer(stats=wbdata.compute_stats(
        dataset, tokenizer(), d.input_column, d.output_column, d.template, d.instruction, config.model.max_seq_length,
        d.train_on_responses_only))


GEMMA2_9B = dict(hidden_size=3584, intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=256, vocab_size=256000)
"""The default recipe's model shape (its config.json), so that forecasts need no hub."""


def forecast_answer(config: RunConfig, free_gib: float | None = None, gpu: str = "no NVIDIA GPU here"
                    ) -> rq.MemoryForecastAnswer:
    """The engine's forecast answer, made by the engine's own function, for the model's shape (the tiny
    demo model's recipe, else Gemma-2-9B's) and the bundled data's longest sample; `free_gib` stands for
    what NVML would say."""
    from dataclasses import asdict

    from workbench.engine.forecast import answer
    from workbench.engine.tiny import RECIPE, TINY_MODEL_NAME
    from workbench.memory_forecast import Shape

    longest = _longest(config.model_dump_json(include={"data": True, "model": {"max_seq_length"}}))
    shape = asdict(RECIPE) if config.model.name == TINY_MODEL_NAME else GEMMA2_9B
    return answer(config, Shape.of(shape), longest, free_gib, gpu)


@lru_cache(maxsize=8)
def _longest(data_and_length: str) -> int:
    """The engine's longest_sample, once per data section and length (the JSON of both is the key)."""
    from workbench.engine.forecast import longest_sample

    config = RunConfig.model_validate_json(data_and_length)
    return longest_sample(config, tokenizer(), wbdata.load_rows(config.data.source, config.data.split))


def training_events(run_dir: str, steps: int = 60) -> list[Any]:
    events: list[Any] = [TrainStart(t=T0, run="demo", total_steps=150, run_dir=run_dir, train_rows=194, eval_rows=22,
                                    effective_batch=4, trainable_params=143_360, total_params=405_568)]
    for s in range(1, steps + 1):
        loss = 7.6 - 1.9 * (1 - 0.97**s) + 0.08 * ((s * 37) % 11 - 5) / 5
        events.append(Log(t=T0 + s, run="demo", step=s, total_steps=150, loss=loss, learning_rate=3e-3 * min(1, s / 10),
                          grad_norm=0.9 + 0.01 * (s % 7), epoch=s * 4 / 194, tokens=s * 1400,
                          tokens_per_s=1400.0, elapsed_s=float(s), eta_s=float(150 - s)))
        if s % 25 == 0:
            events.append(Eval(t=T0 + s, run="demo", step=s, eval_loss=loss + 0.05))
    events.append(Memory(t=T0, run="demo", phase="after", gpu_name="NVIDIA H100 80GB HBM3", total_gib=79.1,
                         reserved_before_gib=5.953, reserved_gib=7.2, peak_gib=7.475, lora_gib=1.521))
    return events


def finished_run(runs_dir: Path, name: str = "tiny-gemma2-20261128-101500") -> RunDir:
    from workbench.config import save_config

    run = RunDir.create(runs_dir, name)
    cfg = RunConfig()
    cfg.model.name = "builtin:tiny-gemma2"
    save_config(cfg, run.config_path)
    for ev in training_events(str(run.path), steps=150):
        run.append(ev)
    run.append(Done(t=T0 + 200, run=name, status="completed", step=150, total_steps=150, final_loss=5.71,
                    message="Training finished; adapter saved."))
    # what the Save pane lists as its weights (the files' contents are not read here)
    for folder in (run.adapter_dir, run.checkpoints_dir / "checkpoint-100"):
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}", encoding="utf-8")
    (run.checkpoints_dir / "checkpoint-100" / COMPLETE_MARKER).write_text("100", encoding="utf-8")
    return run



# -- evals (the Eval pane) -----------------------------------------------------------------------------------

HELDOUT = "builtin:hindi_dialogues (split heldout)"
Answers = Callable[[int, str, str], tuple[str, str]]
"""(row, conversation, reference) -> (the tuned model's summary, the base model's)."""


def varied_answers(row: int, conversation: str, reference: str) -> tuple[str, str]:
    """Summaries with scores that differ row by row: the tuned model keeps more or less of the reference; the
    base model copies the conversation, loops, says nothing, answers in English, or gives the second half."""
    words = reference.split()
    tuned = " ".join(words[: max(1, len(words) * (4 - row % 4) // 4)])
    base = [" ".join(conversation.split()[:12]), "ठीक है ठीक है ठीक है ठीक है", "",
            "They talked about it and will meet tomorrow.", " ".join(words[len(words) // 2 :])][row % 5]
    return tuned, base


def write_eval(run_dir: str | Path, rows: int | None = 8, base: bool = True, name: str | None = None,
               answers: Answers = varied_answers, batch: int = 4, complete: bool = True,
               on_batch: Callable[[int, int, str], None] | None = None) -> Path:
    """A real eval folder (eval.jsonl, eval.json, by evaluation.py's writers) on the bundled held-out rows,
    as the engine writes it batch by batch; `complete=False` stops after the first batch."""
    from workbench import evaluation as ev

    run = RunDir(run_dir)
    examples, _issues = wbdata.require_usable(wbdata.load_rows("builtin:hindi_dialogues", "heldout"),
                                              "dialogue", "summary", "instruction")
    chosen = examples[:rows] if rows else examples
    plan = ev.EvalPlan(run=run.name, weights="final adapter", step=150, heldout=HELDOUT, rows=[x.row for x in chosen],
                       base=base, decoding=ev.Decoding(max_new_tokens=96, do_sample=False, batch_size=batch),
                       template="instruction", instruction="नीचे दी गई बातचीत का हिंदी में संक्षिप्त सारांश लिखिए।",
                       config_fingerprint="0" * 64)
    folder = run.path / ev.EVALS_DIR / (name or ev.eval_name(plan.weights, len(plan.rows), base))
    folder.mkdir(parents=True, exist_ok=True)
    made: list[ev.RowRecord] = []
    for start in range(0, len(chosen), batch):
        for x in chosen[start : start + batch]:
            tuned, base_text = answers(x.row, x.conversation, x.summary)
            outputs = {"tuned": ev.Output(text=tuned, tokens=len(tuned.split()) + 1, unended=x.row % 6 == 5,
                                          seconds=0.25)}
            if base:
                outputs["base"] = ev.Output(text=base_text, tokens=len(base_text.split()) + 1, unended=False,
                                            seconds=0.25)
            record = ev.RowRecord(row=x.row, input=x.conversation, reference=x.summary, prompt_tokens=120,
                                  outputs=outputs, t=T0)
            ev.append_record(folder / ev.ROWS_FILE, record)
            made.append(record)
        ev.write_json_atomic(folder / ev.REPORT_FILE, ev.report_document(
            plan, ev.score_records(made), complete=len(made) == len(chosen), versions={}))
        if on_batch is not None:
            on_batch(len(made), len(chosen), str(folder))
        if not complete:
            break
    return folder
