"""GPU benchmark (issue 11): how fast the workbench judges summaries on the 9B shape in 4-bit.

    python benchmarks/gpu_eval.py --cache .gpucache --out $OUT

1. Builds (once) a randomly initialised Gemma-2-9B-shape model in nf4, its word-level tokenizer and data
   (gpu_bench.build), and a run whose adapter is a freshly initialised LoRA (r=16, all linear layers):
   throughput does not depend on the weights' values.
2. In one process, with the model loaded once: generates summaries of held-out rows one at a time
   (8 rows) and batched (64 rows, batch 16, left padding), greedy, max_new_tokens 128, through
   `workbench.engine.evaluate.generate_batch` (the code `workbench eval` runs). Reports rows/minute and
   the ratio (target: batched >= 6x one at a time).
3. Times `workbench eval --run RUN --rows 24 --base --max-new-tokens 128` end to end as a user runs it
   (a fresh process: imports, 4-bit load, 24 rows tuned and 24 base, scoring, files).
A random model never writes its end-of-turn token, so every row runs to max_new_tokens in both modes:
the comparison is like for like, and an upper bound on a row's time.
Prints RESULT lines (JSON) and writes them to $OUT/gpu_eval.jsonl.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gpu_bench import build, log, run_config

NEW_TOKENS = 128


def heldout(cache: Path, rows: int = 64, seed: int = 1) -> Path:
    """Held-out rows of dialogue lengths (300-800 tokens) with a reference summary each."""
    rng = random.Random(seed)
    path = cache / "heldout.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            words = lambda n: " ".join(f"t{rng.randint(6, 255_999)}" for _ in range(n))  # noqa: E731
            fh.write(json.dumps({"dialogue": words(rng.randint(300, 800)), "summary": words(60)}) + "\n")
    return path


def make_run(cache: Path) -> Path:
    from workbench.config import save_config
    from workbench.engine.export import write_run_adapter
    from workbench.engine.model import add_lora, load_base
    from workbench.protocol import Done
    from workbench.runs import RunDir

    config = run_config(cache, "9b")
    config.eval.heldout_source = str(heldout(cache))
    config.eval.max_new_tokens = NEW_TOKENS
    run = RunDir.create(cache / "runs", "eval-bench")
    save_config(config, run.config_path)
    loaded = load_base(config, log)
    add_lora(loaded, config)
    write_run_adapter(loaded, run, config)
    run.append(Done(status="completed", step=0, total_steps=0, message="an untrained adapter, for the benchmark"))
    return run.path


def rows_per_minute(cache: Path, run_dir: Path) -> dict[str, float]:
    import torch

    from workbench.engine.evaluate import build_prompt, generate_batch
    from workbench.engine.model import load_adapter, load_base
    from workbench.evaluation import heldout_rows
    from workbench.runs import RunDir, resolve_weights

    source = resolve_weights(RunDir(run_dir))
    loaded = load_base(source.config, log)
    load_adapter(loaded, str(source.adapter))
    rows = heldout_rows(source.config).examples
    prompts = [build_prompt(loaded.tokenizer, source.config, x.conversation, NEW_TOKENS).ids for x in rows]
    stop = threading.Event()

    def timed(batch: list[list[int]]) -> float:
        torch.cuda.synchronize()
        started = time.perf_counter()
        generate_batch(loaded, batch, max_new_tokens=NEW_TOKENS, do_sample=False, temperature=1.0, top_p=1.0,
                       use_adapter=True, stop=stop)
        torch.cuda.synchronize()
        return time.perf_counter() - started

    timed(prompts[:2])  # warm-up: the first generate pays for kernels and caches
    single = [timed([p]) for p in prompts[:8]]
    batched = [timed(prompts[i : i + 16]) for i in range(0, 64, 16)]
    one = 60 * len(single) / sum(single)
    many = 60 * 64 / sum(batched)
    return {"rows_per_min_one_at_a_time": round(one, 2), "rows_per_min_batched_16": round(many, 2),
            "speedup": round(many / one, 2), "s_per_row_one_at_a_time": round(sum(single) / len(single), 2),
            "s_per_batch_of_16": round(sum(batched) / len(batched), 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)}


def end_to_end(run_dir: Path, out: Path) -> dict[str, float | int]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "eval", "--run", str(run_dir), "--rows", "24",
                           "--base", "--max-new-tokens", str(NEW_TOKENS), "--name", "e2e"],
                          capture_output=True, text=True, timeout=540)
    seconds = time.perf_counter() - started
    (out / "gpu_eval_cli.txt").write_text(proc.stdout + "\n--- stderr\n" + proc.stderr, encoding="utf-8")
    return {"returncode": proc.returncode, "seconds_24_rows_base_and_tuned": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, default=Path(".gpucache"))
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    from workbench.engine.boot import boot

    boot()
    import torch

    build("9b", args.cache)
    run_dir = make_run(args.cache)
    results = {"card": torch.cuda.get_device_name(0), "shape": "gemma-2-9b, nf4 double quant, LoRA r16 all linear",
               "max_new_tokens": NEW_TOKENS, "date": time.strftime("%Y-%m-%d"), **rows_per_minute(args.cache, run_dir)}
    log("RESULT " + json.dumps(results))
    if not args.skip_e2e:
        torch.cuda.empty_cache()
        results.update(end_to_end(run_dir, args.out))
        log("RESULT " + json.dumps(results))
    with open(args.out / "gpu_eval.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
