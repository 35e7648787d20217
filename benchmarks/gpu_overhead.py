"""Workbench overhead (issue 4, question 3): A (the workbench engine) against C (a bare unsloth script),
alternated in one process so that neither profits from going second.

    python benchmarks/gpu_overhead.py --cache .gpucache [--measure 20]

Order: a discarded C warm-up (pays unsloth's kernel compile), then A, C, C, A (`--order`; ACCAACCA for
two blocks). Each arm loads the same
4-bit checkpoint afresh, runs 3 warm-up steps and `--measure` measured steps on the same token data,
and prints one RESULT line. The ABBA order gives each arm the same mean position, so an order effect
(allocator and autotuner warmed by the arm before) cancels in the mean; the per-position pairs show it.
Build the model and data first with `gpu_bench.py build`.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_bench as gb


def free_cuda() -> None:
    import torch

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def arm_a(cache: Path, shape: str, measure: int, position: int) -> dict[str, Any]:
    import torch

    from workbench.engine.train import run_training
    from workbench.protocol import Done, Log
    from workbench.runs import RunDir

    config = gb.run_config(cache, shape, max_steps=gb.WARMUP + measure)
    # Patches off: C is a bare unsloth script, so A must run unsloth's own attention too (the engine's
    # default is FlexAttention since issue 12; with it A and C compute different kernels).
    config.model.attention = "default"
    run = RunDir.create(config.output.runs_dir, f"overhead-a{position}-{int(time.time())}")
    events: list[Any] = []
    free_cuda()
    done, loaded = run_training(config, run, events.append, threading.Event())
    assert isinstance(done, Done) and done.status == "completed", done.message
    logs = [e for e in events if isinstance(e, Log)]
    result = gb.summarize(f"A workbench engine (position {position})", [e.t for e in logs],
                          [float(e.tokens) for e in logs], gb._flops_from_start(events),
                          {"position": position, "first_step_s": round(logs[0].elapsed_s, 1)})
    del loaded, done, events, logs
    torch.cuda.synchronize()
    return result


def arm_c(cache: Path, shape: str, measure: int, position: int) -> dict[str, Any]:
    import torch
    from trl import SFTConfig, SFTTrainer
    from unsloth import FastLanguageModel

    config = gb.run_config(cache, shape)
    mdir = Path(config.model.name)
    free_cuda()
    model, tokenizer = FastLanguageModel.from_pretrained(str(mdir), max_seq_length=2048, load_in_4bit=True, dtype=None)
    model = FastLanguageModel.get_peft_model(
        model, r=16, lora_alpha=16, lora_dropout=0, bias="none",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        use_gradient_checkpointing="unsloth", random_state=3407)
    ds = gb.token_data(config, tokenizer)
    meter = gb.Meter.make()
    t0 = time.time()
    trainer = gb.counting(SFTTrainer)(
        model=model, processing_class=tokenizer, train_dataset=ds, callbacks=[meter],
        args=SFTConfig(output_dir=str(cache / "bare-out"), per_device_train_batch_size=gb.BATCH,
                       gradient_accumulation_steps=gb.ACCUM, max_steps=gb.WARMUP + measure, warmup_steps=2,
                       learning_rate=2e-4, optim="adamw_8bit", bf16=True, logging_steps=1, save_strategy="no",
                       report_to="none", max_length=2048, completion_only_loss=True, disable_tqdm=True,
                       seed=3407))
    meter.trainer = trainer
    trainer.train()
    result = gb.summarize(f"C bare unsloth script (position {position})", meter.times, meter.tokens,
                          gb.fpt(mdir, gb.mean_len(ds)),
                          {"position": position, "first_step_s": round(meter.times[0] - t0, 1)})
    del trainer, model, tokenizer, meter
    torch.cuda.synchronize()
    return result


def main() -> None:
    p = gb.base_parser()
    p.add_argument("--measure", type=int, default=20)
    p.add_argument("--order", default="ACCA",
                   help="the arms in order after the warm-up; ACCAACCA repeats the ABBA block for a second pair")
    a = p.parse_args()
    if set(a.order) - {"A", "C"} or a.order.count("A") != a.order.count("C"):
        p.error("--order: A and C only, as many of each")
    cache = Path(a.cache).resolve()
    gb.boot_engine()
    gb.log("warm-up arm (C, discarded): pays the kernel compile")
    arm_c(cache, a.shape, 2, 0)
    results = []
    for position, arm in enumerate(a.order, start=1):
        gb.log(f"arm {arm}, position {position}")
        fn = arm_a if arm == "A" else arm_c
        results.append((arm, fn(cache, a.shape, a.measure, position)))
    mean = {arm: sum(r["tokens_per_s"] for x, r in results if x == arm) / a.order.count(arm) for arm in ("A", "C")}
    summary = {"arm": "overhead summary (ABBA)", "A_mean_tokens_per_s": round(mean["A"], 1),
               "C_mean_tokens_per_s": round(mean["C"], 1), "A_over_C": round(mean["A"] / mean["C"], 4),
               "per_position": [(x, r["position"], r["tokens_per_s"], r["s_per_step"]) for x, r in results]}
    print("RESULT " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
