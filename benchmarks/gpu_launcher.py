"""The launcher's overhead (issue 14): the same short run in-process and through torchrun with one rank.

    python benchmarks/gpu_launcher.py --cache C [--shape 2b] [--steps 12] [--arms in-process,torchrun,fsdp2]

Every run goes through `workbench train` (the CLI, as a user runs it) on the model and data of
`gpu_bench.py build`, micro-batch 8 with packing; tokens/s is the mean of the Log events after the third
step (the first compiles). One RESULT line each (with the run's per-rank memory reports and whether the
adapter was written whole), then the ratio torchrun / in-process. `fsdp2` is torchrun with one rank and
training.strategy = "fsdp2" (unsloth's FSDP2 over NCCL, the 4-bit weights sharded over one rank).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_bench as gb


def main() -> None:
    p = gb.base_parser()
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--arms", default="in-process,torchrun")
    a = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from workbench.config import save_config
    from workbench.protocol import Done, Log, Memory
    from workbench.runs import RunDir

    cache = Path(a.cache).resolve()
    config = gb.run_config(cache, a.shape, packing=True, max_steps=a.steps)
    config.training.per_device_train_batch_size = 8
    path = cache / "launcher.toml"
    save_config(config, path)
    rates = {}
    arms = {"in-process": [], "torchrun": ["--launcher"], "fsdp2": ["--launcher", "--strategy", "fsdp2"]}
    for arm in a.arms.split(","):
        extra = arms[arm]
        run = cache / "runs" / f"launcher-{int(time.time())}"
        started = time.time()
        proc = subprocess.run([sys.executable, "-m", "workbench.cli", "train", "--config", str(path), "--run-dir",
                               str(run), *extra], capture_output=True, text=True)
        events = list(RunDir(run).iter_events())
        logs = [e for e in events if isinstance(e, Log) and e.tokens_per_s and e.step > 3]
        done = next((e for e in events if isinstance(e, Done)), None)
        rates[arm] = sum(e.tokens_per_s for e in logs) / max(1, len(logs))
        memory = [(e.phase, e.rank, e.ranks, e.gpu_index, e.peak_gib) for e in events if isinstance(e, Memory)]
        adapter = RunDir(run).adapter_dir / "adapter_model.safetensors"
        print("RESULT " + json.dumps({"arm": f"launcher overhead: {arm}", "rc": proc.returncode,
                                      "status": getattr(done, "status", None), "tokens_per_s": round(rates[arm], 1),
                                      "steps_measured": len(logs), "wall_s": round(time.time() - started, 1),
                                      "losses": [round(e.loss, 5) for e in events if isinstance(e, Log) and e.loss][:6],
                                      "memory": memory, "adapter_bytes": adapter.stat().st_size if adapter.exists() else 0,
                                      "stdout_tail": proc.stdout[-600:], "stderr_tail": proc.stderr[-600:] if proc.returncode else ""}),
              flush=True)
    if rates.get("in-process") and rates.get("torchrun"):
        print("RESULT " + json.dumps({"arm": "launcher overhead: ratio torchrun / in-process",
                                      "ratio": round(rates["torchrun"] / rates["in-process"], 3)}), flush=True)


if __name__ == "__main__":
    main()
