"""Where MFU goes (issue 4): the workbench engine (A) at larger micro-batches, with packing, and with
unsloth's offloaded gradient checkpointing against none, on the same token data.

    python benchmarks/gpu_scaling.py --cache .gpucache [--variants b2,b2-nogc,b8-pack,b8-pack-nogc] [--measure 10]
    python benchmarks/gpu_scaling.py --cache .gpucache --plain b8    # B (plain HF + peft + TRL) at batch 8

A variant name is `b<micro-batch>` plus `-pack` (padding-free packing) and/or `-nogc` (no gradient
checkpointing) or `-gctrue` (transformers' own checkpointing, activations kept on the GPU, instead of
unsloth's offloaded one). Every variant runs in this one process after the first has paid the kernel compile;
each prints one RESULT line with tokens/s (real tokens), s/step, peak reserved memory and MFU
(workbench.mfu: 4N + 3A FLOPs per token). Build the model and data first with `gpu_bench.py build`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_bench as gb
from gpu_overhead import free_cuda


def parse_variant(name: str) -> tuple[int, bool, str]:
    parts = name.split("-")
    batch = int(parts[0].lstrip("b"))
    checkpointing = "false" if "nogc" in parts else "true" if "gctrue" in parts else "unsloth"
    return batch, "pack" in parts, checkpointing


def engine_variant(cache: Path, shape: str, name: str, measure: int) -> None:
    from workbench.engine.train import run_training
    from workbench.protocol import Done, Log
    from workbench.runs import RunDir

    batch, packing, checkpointing = parse_variant(name)
    config = gb.run_config(cache, shape, packing=packing, max_steps=gb.WARMUP + measure)
    config.training.per_device_train_batch_size = batch
    config.lora.gradient_checkpointing = checkpointing  # type: ignore[assignment]
    run = RunDir.create(config.output.runs_dir, f"scaling-{name}-{int(time.time())}")
    events: list[Any] = []
    free_cuda()
    t0 = time.time()
    done, loaded = run_training(config, run, events.append, threading.Event())
    if not (isinstance(done, Done) and done.status == "completed"):
        print("RESULT " + __import__("json").dumps({"arm": f"A {name}", "failed": done.message}), flush=True)
        return
    logs = [e for e in events if isinstance(e, Log)]
    gb.summarize(f"A {name}", [e.t for e in logs], [float(e.tokens) for e in logs], gb._flops_from_start(events),
                 {"batch": batch, "packing": packing, "gradient_checkpointing": checkpointing,
                  "first_step_s": round(logs[0].elapsed_s, 1), "wall_s": round(time.time() - t0, 1),
                  "tokens_per_step": round((logs[-1].tokens - logs[gb.WARMUP - 1].tokens) / measure)})
    del loaded, done, events


def main() -> None:
    p = gb.base_parser()
    p.add_argument("--variants", default="b2,b2-nogc,b8-pack,b8-pack-nogc")
    p.add_argument("--measure", type=int, default=10)
    p.add_argument("--plain", default="", help="run B (plain HF) at this micro-batch instead, e.g. b8")
    a = p.parse_args()
    cache = Path(a.cache).resolve()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    os.environ.setdefault("UNSLOTH_BLOCK_COMPILE", "0")
    if a.plain:
        gb.BATCH = int(a.plain.lstrip("b"))
        gb.MEASURE = a.measure
        gb.arm_plain(cache, a.shape, chat=False)
        return
    gb.boot_engine()
    for name in a.variants.split(","):
        gb.log(f"variant {name}")
        engine_variant(cache, a.shape, name, a.measure)


if __name__ == "__main__":
    main()
