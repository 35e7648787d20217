"""Does the offline demo visibly learn? Train configs/demo.toml on the tiny Gemma-2 (CPU) and measure.

    PYTHONPATH=src WORKBENCH_CACHE=/tmp/wbcache-bench python benchmarks/demo_learning.py [--fresh-cache]

What it prints (and writes as JSON with --json PATH):
- the tiny model's build time (with --fresh-cache: a new empty cache, so the build is measured);
- the training time and the train / eval losses the Train pane charts, with the eval loss of the base
  model (step 0) computed here, since the trainer's first evaluation comes only at `eval_steps`;
- greedy summaries of the 24 held-out rows (src/workbench/sample/hindi_dialogues_heldout.jsonl, never
  trained on) from the base model (adapter off) and the tuned model (adapter on), scored by word-overlap
  F1 on whitespace tokens against the reference summaries, and the summary-token loss on those rows.

The engine's CPU thread policy is applied (one core left to the UI, as in `workbench demo`) unless
--all-threads. Options override the demo config, to try other settings without editing it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def word_f1(prediction: str, reference: str) -> float:
    """Bag-of-words F1 on whitespace tokens (SQuAD-style), with no normalisation beyond the split."""
    pred, ref = prediction.split(), reference.split()
    if not pred or not ref:
        return 0.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def summary_loss(loaded: Any, samples: list[Any], use_adapter: bool) -> float:
    """Mean cross-entropy over the trained (summary) tokens of the samples, token-weighted."""
    import contextlib

    import torch

    model = loaded.model
    off = model.disable_adapter() if (not use_adapter and loaded.has_lora) else contextlib.nullcontext()
    total, count = 0.0, 0
    with off, torch.inference_mode():
        for s in samples:
            ids = torch.tensor([s.input_ids], device=model.device)
            labels = ids.clone()
            labels[0, [not t for t in s.trained]] = -100
            logits = model(input_ids=ids).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[0, :-1], labels[0, 1:], ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((labels[0, 1:] != -100).sum())
    return total / max(1, count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.toml"))
    parser.add_argument("--fresh-cache", action="store_true", help="build the tiny model into a new empty cache")
    parser.add_argument("--all-threads", action="store_true", help="do not leave a core to the UI")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--no-generate", action="store_true", help="losses only (faster)")
    parser.add_argument("--show", type=int, default=2, help="example outputs to print")
    parser.add_argument("--json", help="write the results here")
    for name in ("max_steps", "per_device_train_batch_size", "eval_steps", "warmup_steps"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--lora-r", type=int)
    parser.add_argument("--lora-alpha", type=int)
    parser.add_argument("--max-seq-length", type=int)
    parser.add_argument("--eval-fraction", type=float)
    parser.add_argument("--max-rows", type=int)
    args = parser.parse_args(argv)

    if args.fresh_cache:
        os.environ["WORKBENCH_CACHE"] = tempfile.mkdtemp(prefix="wb-demo-bench-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    from workbench.engine.boot import boot, limit_cpu_threads

    boot()  # unsloth before trl / transformers / peft
    threads = None if args.all_threads else limit_cpu_threads()
    import torch

    from workbench import data as wbdata
    from workbench.config import load_config
    from workbench.engine.generate import generate_stream
    from workbench.engine.tiny import BUILD_VERSION, build_tiny_model
    from workbench.engine.train import prepare_data, run_training
    from workbench.protocol import Done, Eval, Log
    from workbench.runs import RunDir

    config = load_config(args.config)
    t, lora, d = config.training, config.lora, config.data
    for name in ("max_steps", "per_device_train_batch_size", "eval_steps", "warmup_steps", "learning_rate"):
        if getattr(args, name) is not None:
            setattr(t, name, getattr(args, name))
    if args.lora_r is not None:
        lora.r = args.lora_r
    if args.lora_alpha is not None:
        lora.alpha = args.lora_alpha
    if args.max_seq_length is not None:
        config.model.max_seq_length = args.max_seq_length
    if args.eval_fraction is not None:
        d.eval_fraction = args.eval_fraction
    if args.max_rows is not None:
        d.max_rows = args.max_rows
    config.output.runs_dir = tempfile.mkdtemp(prefix="wb-demo-runs-")
    t.save_steps = max(t.max_steps or 1, 1)  # no intermediate checkpoints: they are not what is measured

    started = time.perf_counter()
    messages: list[str] = []
    build_tiny_model(status=messages.append)
    build_s = time.perf_counter() - started
    print(f"tiny model ready in {build_s:.1f} s{' (built)' if messages else ' (cached)'}; torch threads "
          f"{torch.get_num_threads()}", flush=True)

    run = RunDir.create(config.output.runs_dir, "demo-learning")
    events: list[Any] = []
    started = time.perf_counter()
    done, loaded = run_training(config, run, events.append, threading.Event())
    train_s = time.perf_counter() - started
    assert isinstance(done, Done) and done.status == "completed", getattr(done, "message", done)
    logs = [e for e in events if isinstance(e, Log) and e.loss is not None]
    evals = [(e.step, e.eval_loss) for e in events if isinstance(e, Eval)]
    first_log_t = min(e.elapsed_s for e in logs) if logs else 0.0
    steps_s = (logs[-1].elapsed_s - first_log_t) / max(1, len(logs) - 1)

    prepared = prepare_data(config, loaded.tokenizer)
    base_eval = summary_loss(loaded, prepared.eval, use_adapter=False) if prepared.eval else None
    tuned_eval = summary_loss(loaded, prepared.eval, use_adapter=True) if prepared.eval else None
    held = wbdata.load_rows("builtin:hindi_dialogues", "heldout")
    held_ex, _ = wbdata.validate_rows(held, d.input_column, d.output_column)
    held_samples = wbdata.tokenize_examples(held_ex, loaded.tokenizer, d.template, d.instruction,
                                            config.model.max_seq_length, d.train_on_responses_only)
    base_held = summary_loss(loaded, held_samples, use_adapter=False)
    tuned_held = summary_loss(loaded, held_samples, use_adapter=True)

    def window(a: int, b: int) -> float:
        return statistics.mean(e.loss for e in logs[a:b])

    k = max(1, min(10, len(logs) // 5))
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {threads or torch.get_num_threads()}",
        "build_version": BUILD_VERSION,
        "build_s": round(build_s, 1),
        "built": bool(messages),
        "config": {"max_steps": t.max_steps, "batch": t.per_device_train_batch_size, "lr": t.learning_rate,
                   "lora_r": lora.r, "lora_alpha": lora.alpha, "max_seq_length": config.model.max_seq_length,
                   "eval_fraction": d.eval_fraction, "train_rows": len(prepared.train), "eval_rows": len(prepared.eval)},
        "train_s": round(train_s, 1),
        "s_per_step": round(steps_s, 3),
        "train_loss_first": round(window(0, k), 3),
        "train_loss_last": round(window(len(logs) - k, len(logs)), 3),
        "eval_loss": {"0 (base)": round(base_eval, 3) if base_eval is not None else None,
                      **{str(s): round(v, 3) for s, v in evals}},
        "eval_loss_final_recomputed": round(tuned_eval, 3) if tuned_eval is not None else None,
        "heldout_loss": {"base": round(base_held, 3), "tuned": round(tuned_held, 3)},
    }
    print(json.dumps({k2: v for k2, v in result.items()}, ensure_ascii=False, indent=1), flush=True)

    if not args.no_generate:
        outputs: dict[str, list[str]] = {"base": [], "tuned": []}
        started = time.perf_counter()
        for ex in held_ex:
            for stream in ("base", "tuned"):
                gen = generate_stream(loaded, template=d.template, instruction=d.instruction,
                                      conversation=ex.conversation, on_text=lambda _t: None,
                                      cancel=threading.Event(), max_new_tokens=args.max_new_tokens,
                                      temperature=0.0, use_adapter=(stream == "tuned"))
                outputs[stream].append(gen.text.strip())
        gen_s = time.perf_counter() - started
        refs = [ex.summary for ex in held_ex]
        f1 = {s: statistics.mean(word_f1(o, r) for o, r in zip(outs, refs, strict=True)) for s, outs in outputs.items()}
        wins = sum(word_f1(tu, r) > word_f1(b, r) for tu, b, r in zip(outputs["tuned"], outputs["base"], refs, strict=True))
        result.update({"heldout_rows": len(refs), "word_f1": {s: round(v, 3) for s, v in f1.items()},
                       "tuned_better_rows": wins, "generate_s": round(gen_s, 1)})
        print(f"held-out word F1 over {len(refs)} rows: base {f1['base']:.3f}, tuned {f1['tuned']:.3f} "
              f"(tuned better on {wins}); generation {gen_s:.0f} s", flush=True)
        for i in range(min(args.show, len(refs))):
            print(f"\n--- held-out row {held_ex[i].row} ---\nreference: {refs[i]}\nbase:      {outputs['base'][i]}"
                  f"\ntuned:     {outputs['tuned'][i]}")
        result["examples"] = [{"reference": refs[i], "base": outputs["base"][i], "tuned": outputs["tuned"][i]}
                              for i in range(len(refs))]
    if args.json:
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
