"""Deterministic states of the real app for snapshot tests: real tokenization and statistics of the
bundled Hindi data (tiny Gemma-2 tokenizer), fixed training events, a fake NVML. No engine process:
panes are fed exactly the events the engine would send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench import data as wbdata
from workbench.config import RunConfig, config_to_dict
from workbench.protocol import Done, Eval, Log, Memory, Result, TrainStart
from workbench.runs import RunDir

T0 = 1_795_800_000.0  # fixed clock for events


def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from workbench.engine.tiny import build_tiny_model

    return AutoTokenizer.from_pretrained(build_tiny_model())


def preview_result(config: RunConfig, position: int = 0) -> Result:
    tok = tokenizer()
    d = config.data
    dataset = wbdata.load_rows(d.source, d.split)
    row = dataset.rows[position]
    examples, _ = wbdata.validate_rows(wbdata.LoadedDataset(dataset.source, [row], dataset.columns, ""),
                                       d.input_column, d.output_column)
    sample = wbdata.tokenize_examples(examples, tok, d.template, d.instruction, config.model.max_seq_length,
                                      d.train_on_responses_only)[0]
    return Result(t=T0, data={"rows_total": len(dataset.rows), "max_seq_length": config.model.max_seq_length,
                              "items": [{"position": position, "row": row.row, "sample": sample.to_dict(),
                                         "issue": None}]})


def stats_result(config: RunConfig) -> Result:
    d = config.data
    dataset = wbdata.load_rows(d.source, d.split)
    stats = wbdata.compute_stats(dataset, tokenizer(), d.input_column, d.output_column, d.template, d.instruction,
                                 config.model.max_seq_length, d.train_on_responses_only)
    return Result(t=T0, data=stats.to_dict())


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
    return run


def config_args(config: RunConfig) -> dict[str, Any]:
    return {"config": config_to_dict(config)}
