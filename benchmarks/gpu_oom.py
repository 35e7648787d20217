"""The engine's CUDA out-of-memory path on a real card (issue 4 / issue 5): a real `torch.OutOfMemoryError`
from the caching allocator, not an injected one.

    python benchmarks/gpu_oom.py --cache .gpucache [--cap-gib 10]

The card is capped with `torch.cuda.set_per_process_memory_fraction` so that the 9B-shape model fits
but micro-batch 16 does not. Two runs of the engine's `run_training`:
1. auto_retry_oom off: must end `failed` with the OOM explanation (batch, accumulation, length, card);
2. auto_retry_oom on: must halve the micro-batch (doubling accumulation) until it fits and complete.
Each prints a RESULT line with the outcome, the status messages and the final micro-batch.
Build the model and data first with `gpu_bench.py build`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_bench as gb
from gpu_overhead import free_cuda


def attempt(cache: Path, shape: str, retry: bool, batch: int, steps: int) -> None:
    import torch

    from workbench.engine.train import run_training
    from workbench.protocol import Done, Status, TrainStart
    from workbench.runs import RunDir

    config = gb.run_config(cache, shape, max_steps=steps)
    config.training.per_device_train_batch_size = batch
    config.training.gradient_accumulation_steps = 1
    config.training.auto_retry_oom = retry
    config.training.save_steps = 1
    run = RunDir.create(config.output.runs_dir, f"oom-{'retry' if retry else 'plain'}-{int(time.time())}")
    events: list[Any] = []
    free_cuda()
    t0 = time.time()
    done, loaded = run_training(config, run, events.append, threading.Event())
    assert isinstance(done, Done)
    starts = [e for e in events if isinstance(e, TrainStart)]
    print("RESULT " + json.dumps({
        "arm": f"OOM, auto_retry_oom={'on' if retry else 'off'}, micro-batch {batch}",
        "status": done.status, "step": done.step, "message": done.message,
        "error_type": getattr(done, "error_type", None),
        "attempts_started": len(starts), "effective_batch": [s.effective_batch for s in starts],
        "status_lines": [e.message for e in events if isinstance(e, Status) and "memory" in e.message.lower()],
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 1024**3, 2),
        "wall_s": round(time.time() - t0, 1), "complete_checkpoints": [step for step, _ in run.checkpoints()]}),
        flush=True)
    del loaded, done, events


def main() -> None:
    p = gb.base_parser()
    p.add_argument("--cap-gib", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=2)
    a = p.parse_args()
    cache = Path(a.cache).resolve()
    gb.boot_engine()
    import torch

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, a.cap_gib * 1024**3 / total), 0)
    gb.log(f"capped at {a.cap_gib} GiB of {total / 1024**3:.0f} GiB")
    attempt(cache, a.shape, retry=False, batch=a.batch, steps=a.steps)
    attempt(cache, a.shape, retry=True, batch=a.batch, steps=a.steps)


if __name__ == "__main__":
    main()
