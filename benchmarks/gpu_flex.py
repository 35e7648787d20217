"""FlexAttention for Gemma-2 on the GPU (issue 12): the kernel against an fp32 reference, then training.

    python benchmarks/gpu_flex.py unit                                   # outputs and gradients vs fp32
    python benchmarks/gpu_flex.py train --cache C --variants b8,b8-default,b2 --measure 8 [--budget-s 420]

`unit`: Gemma-2-9B's attention shape (16 query heads, 8 KV heads, head_dim 256, scale 256**-0.5, cap 50),
a batch of 4 with Q and K scaled x4 so the cap bites, laid out right-padded, left-padded and packed (3
samples per row) and with a 512 sliding window; the engine's compiled flex path
(`workbench.engine.flex_attention.flex_softcap_attention`) against plain fp32 attention: relative error of
the output and of dQ / dK / dV on the real tokens. One UNIT line each.

`train`: the engine (`run_training`) on the token data of `gpu_bench.py build`, one variant after another
in this process (the first pays the compile). A variant is `b<micro-batch>` plus `-default` (model.attention
= default: unsloth's own path, the patch off), `-pack` (data.packing), `-nogc` (no checkpointing) and/or
`-stream` (lora.stream_layers: the frozen layer weights in pinned host memory).
One RESULT line each: tokens/s (real tokens), s/step, MFU, the attention the run reported, the loss of every
step (to compare paths on the same data and init), the memory forecast for it, and the peaks of reserved
memory by phase (`PhasePeaks`): `peak_load_gib` up to the trainer's start (the model loaded,
streaming set up), `peak_reserved_gib` = `peak_train_gib` the trainer's run (the window `gpu_bench.py plain`
measures for plain HF: it resets the peak after its load too), `peak_after_gib` saving and the streamed
layers' return, and `peak_whole_gib`, the largest.
"""

# ruff: noqa: B023  (the closures in unit() are called within the iteration that defines them)
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_bench as gb
from gpu_overhead import free_cuda


def unit() -> None:
    import torch

    from workbench.engine import flex_attention as fa

    torch.manual_seed(0)
    heads, kv_heads, dim, cap, batch, length = 16, 8, 256, 50.0, 4, 1400
    scale = 256 ** -0.5
    q0 = (torch.randn(batch, heads, length, dim, device="cuda") * 4).bfloat16()
    k0 = (torch.randn(batch, kv_heads, length, dim, device="cuda") * 4).bfloat16()
    v0 = torch.randn(batch, kv_heads, length, dim, device="cuda").bfloat16()
    lengths = [1400, 990, 455, 160]
    idx = torch.arange(length, device="cuda")
    right = (idx[None] < torch.tensor(lengths, device="cuda")[:, None]).long()
    left = right.flip(-1)
    packed_pos = torch.cat([torch.arange(n, device="cuda") for n in (600, 500, 300)])[None].repeat(batch, 1)
    layouts = {"right": (right, None), "left": (left, None), "packed": (torch.ones_like(right), packed_pos)}
    for name, (mask, positions) in layouts.items():
        for window in (None, 512):
            documents = fa.document_ids(mask, positions, batch, length, "cuda")
            real = mask.bool()[:, None, :, None]
            grad_out = torch.randn(batch, heads, length, dim, device="cuda").bfloat16() * real

            def run(fn: Any, dtype: Any) -> list[Any]:
                q, k, v = (t.detach().to(dtype).requires_grad_() for t in (q0, k0, v0))
                out = fn(q, k, v)
                out.backward(grad_out.to(dtype))
                return [out.detach().float() * real, q.grad.float(), k.grad.float(), v.grad.float()]

            def reference(q: Any, k: Any, v: Any) -> Any:
                kx, vx = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
                s = q @ kx.transpose(-1, -2) * scale
                s = cap * torch.tanh(s / cap)
                allowed = (idx[:, None] >= idx[None, :])[None] & (documents[:, :, None] == documents[:, None, :])
                if window is not None:
                    allowed = allowed & (idx[:, None] - idx[None, :] < window)[None]
                return torch.softmax(s.masked_fill(~allowed[:, None], float("-inf")), -1) @ vx

            state = fa.FlexState(documents=documents, compiled=True)
            t0 = time.time()
            got = run(lambda q, k, v: fa.flex_softcap_attention(q, k, v, state, scale, cap, window), torch.bfloat16)
            first = time.time() - t0
            want = run(reference, torch.float32)
            errors = {n: round(float((a - b).norm() / b.norm()) * 100, 3) for n, a, b in zip(
                ("out", "dq", "dk", "dv"), got, want, strict=True)}
            print("UNIT " + json.dumps({"layout": name, "window": window, "rel_error_pct": errors,
                                        "first_call_s": round(first, 1)}), flush=True)
            del want, got
            torch.cuda.empty_cache()


def parse_variant(name: str) -> dict[str, Any]:
    parts = name.split("-")
    return {"batch": int(parts[0].lstrip("b")), "attention": "default" if "default" in parts else "flex",
            "packing": "pack" in parts, "stream": "stream" in parts,
            "checkpointing": "false" if "nogc" in parts else "true" if "gctrue" in parts else "unsloth"}


def forecast_for(config: Any) -> float:
    """The forecast the Config pane shows for this run (`engine/forecast.py`), before the run loads."""
    from workbench import data as wbdata
    from workbench.engine import forecast
    from workbench.engine.model import load_tokenizer

    dataset = wbdata.load_rows(config.data.source, config.data.split)
    longest = forecast.longest_sample(config, load_tokenizer(config), dataset)
    return forecast.answer(config, forecast.model_shape(config), longest, None, "").total_gib


class PhasePeaks:
    """Peaks of reserved memory by phase of `run_training`: "load" (the model loaded and the run set up, up
    to the trainer's start), "train" (the trainer's run) and "after" (saving, and streamed layers coming
    back to the GPU). The peak is reset at each boundary; `install` wraps the engine's trainer call."""

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        import torch

        self.peaks[phase] = max(self.peaks.get(phase, 0.0), torch.cuda.max_memory_reserved() / 1024**3)
        torch.cuda.reset_peak_memory_stats()

    def install(self) -> None:
        from workbench.engine import train as engine_train

        train = getattr(engine_train.train_with_oom_retry, "__wrapped__", engine_train.train_with_oom_retry)

        def train_in_a_window(session: Any, loaded: Any, plan: Any) -> Any:
            self.mark("load")
            trainer = train(session, loaded, plan)
            self.mark("train")
            return trainer

        train_in_a_window.__wrapped__ = train  # type: ignore[attr-defined]
        engine_train.train_with_oom_retry = train_in_a_window


def train_variant(cache: Path, shape: str, name: str, measure: int) -> None:
    import torch

    from workbench.engine.train import run_training
    from workbench.protocol import Done, Log, Status, TrainStart
    from workbench.runs import RunDir

    v = parse_variant(name)
    config = gb.run_config(cache, shape, packing=v["packing"], max_steps=gb.WARMUP + measure)
    config.training.per_device_train_batch_size = v["batch"]
    config.lora.gradient_checkpointing = v["checkpointing"]
    config.model.attention = v["attention"]
    config.lora.stream_layers = v["stream"]
    run = RunDir.create(config.output.runs_dir, f"flex-{name}-{int(time.time())}")
    events: list[Any] = []
    free_cuda()
    try:
        forecast: Any = round(forecast_for(config), 2)
    except Exception as exc:
        forecast = f"{type(exc).__name__}: {exc}"
    phases = PhasePeaks()
    phases.install()
    t0 = time.time()
    done, loaded = run_training(config, run, events.append, threading.Event())
    phases.mark("after")
    peaks = phases.peaks
    logs = [e for e in events if isinstance(e, Log)]
    start = next((e for e in events if isinstance(e, TrainStart)), None)
    notes = [e.message for e in events if isinstance(e, Status)
             and any(word in e.message for word in ("ttention", "Packed", "streaming"))]
    if not (isinstance(done, Done) and done.status == "completed") or len(logs) <= gb.WARMUP:
        print("RESULT " + json.dumps({"arm": name, "failed": done.message, "notes": notes,
                                      "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 1024**3, 2)}),
              flush=True)
        return
    gb.summarize(name, [e.t for e in logs], [float(e.tokens) for e in logs], gb._flops_from_start(events),
                 {**v, "first_step_s": round(logs[0].elapsed_s, 1), "wall_s": round(time.time() - t0, 1),
                  "losses": [round(e.loss, 5) for e in logs if e.loss is not None], "notes": notes,
                  "attention": start.attention if start else "", "forecast_gib": forecast,
                  "tokens_per_step": round((logs[-1].tokens - logs[gb.WARMUP - 1].tokens) / measure),
                  **{f"peak_{k}_gib": round(v, 2) for k, v in peaks.items()},
                  "peak_reserved_gib": round(peaks.get("train", 0.0), 2),
                  "peak_whole_gib": round(max(peaks.values()), 2)})
    del loaded, done, events


def main() -> None:
    p = gb.base_parser()
    p.add_argument("what", choices=["unit", "train"])
    p.add_argument("--variants", default="b8,b8-default,b2")
    p.add_argument("--measure", type=int, default=8)
    p.add_argument("--budget-s", type=float, default=1e9, help="start no variant after this many seconds")
    a = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    os.environ.setdefault("UNSLOTH_BLOCK_COMPILE", "0")
    t0 = time.time()
    gb.boot_engine()
    if a.what == "unit":
        unit()
        return
    for name in a.variants.split(","):
        if time.time() - t0 > a.budget_s:
            gb.log(f"skipped {name}: past the time budget")
            continue
        gb.log(f"variant {name}")
        train_variant(Path(a.cache).resolve(), a.shape, name, a.measure)


if __name__ == "__main__":
    main()
