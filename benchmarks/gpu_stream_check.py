"""Layer streaming on the GPU, beyond speed and memory (`gpu_flex.py ... -stream` measures those): the CUDA
paths the CPU tests cannot reach.

    python benchmarks/gpu_stream_check.py --cache C [--steps 6]

Two runs of the engine (`run_training`) on the token data of `gpu_bench.py build`, the same seed, packed,
micro-batch 2, an eval loss and a generation eval (2 held-out rows, 24 new tokens) every 3 steps: one with
the layers on the card, one streamed. Mid-run, the generation eval decodes with unsloth's inference path,
which reads the weights without the layers' hooks, so the streamed run puts every layer back for it
(`layer_stream.resident`) and streams again after. Then, on the streamed run's model after the run (the
layers back for good, `close`), a greedy answer through the chat's standard path.

One CHECK line per run: the losses, eval losses and generation-eval scores, the layer stream's copies and
misses, and the chat answer; then one SAME line: whether the two runs' losses, eval losses and scores are
equal to the last digit.
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


def one_run(cache: Path, streamed: bool, steps: int) -> dict[str, Any]:
    import torch

    from workbench.engine import layer_stream
    from workbench.engine.generate import generate_stream
    from workbench.engine.train import run_training
    from workbench.protocol import Eval, GenerationEval, Log
    from workbench.runs import RunDir

    config = gb.run_config(cache, "9b", packing=True, max_steps=steps)
    config.training.per_device_train_batch_size = 2
    config.lora.stream_layers = streamed
    config.data.eval_fraction = 0.05
    config.training.eval_steps = 3
    config.eval.generate_steps = 3
    config.eval.generate_rows = 2
    config.eval.max_new_tokens = 24
    run = RunDir.create(config.output.runs_dir, f"stream-check-{streamed}-{int(time.time())}")
    events: list[Any] = []
    if torch.cuda.is_available():
        free_cuda()
    streams: list[Any] = []
    install = layer_stream.install

    def keep(model: Any) -> Any:  # the stream object, for its counters after the run closes it
        result = install(model)
        streams.append(result)
        return result

    layer_stream.install = keep
    try:
        done, loaded = run_training(config, run, events.append, threading.Event())
    finally:
        layer_stream.install = install
    answer = generate_stream(loaded, template=config.data.template, instruction=config.data.instruction,
                             conversation="t11 t12 t13 t14 t15", on_text=lambda _t: None, cancel=threading.Event(),
                             max_new_tokens=16, temperature=0.0)
    stream = next((s for s in streams if isinstance(s, layer_stream.LayerStream)), None)
    result = {
        "streamed": streamed, "status": done.status, "message": done.message[:300],
        "losses": [e.loss for e in events if isinstance(e, Log) and e.loss is not None],
        "eval_losses": [e.eval_loss for e in events if isinstance(e, Eval)],
        "gen_evals": [[e.step, e.rouge_l, e.chrf, e.sample[:80]] for e in events if isinstance(e, GenerationEval)],
        "loads": stream.stats.loads if stream else None, "misses": stream.stats.misses if stream else None,
        "closed": stream.closed if stream else None, "chat_tokens": answer.new_tokens,
        "chat_text": answer.text[:120],
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 1024**3, 2) if torch.cuda.is_available() else None,
    }
    print("CHECK " + json.dumps(result), flush=True)
    del loaded
    return result


def main() -> None:
    p = gb.base_parser()
    p.add_argument("--steps", type=int, default=6)
    a = p.parse_args()
    gb.boot_engine()
    cache = Path(a.cache).resolve()
    resident, streamed = one_run(cache, False, a.steps), one_run(cache, True, a.steps)
    keys = ("losses", "eval_losses", "gen_evals", "chat_text")
    print("SAME " + json.dumps({k: resident[k] == streamed[k] for k in keys}), flush=True)


if __name__ == "__main__":
    main()
