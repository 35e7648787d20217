"""Chat decode on the GPU (issue 12, part 4): the standard path against the fast decoder, 4-bit and merged bf16.

    python benchmarks/gpu_chat.py --cache C [--shape 9b] [--capacity 4096] [--arms standard,4bit,bf16,background]
    python benchmarks/gpu_chat.py --cache C --arms warm     # a second process: the build on a warm compile cache

The model of `gpu_bench.py build` (random weights, nf4 + double quant), loaded by the engine's loader, a
LoRA adapter (r=16, all linear layers) with random non-zero B so that merging matters. The prompt is 1,000
tokens, 256 new tokens, greedy, no end token (as `gpu_bench.py`'s chat figures). One RESULT line per arm:
- `standard`: the engine's `generate_stream` (unsloth `for_inference`), what Chat used before;
- `4bit`: `fast_decode` over the model's own 4-bit weights and unmerged adapter, captured as CUDA graphs;
- `bf16`: the adapter merged into a bf16 copy, the layer compiled, CUDA graphs; with the merge and compile
  times, the copy's size, and the compiled step's logits against the same decoder run eagerly;
- `background`: the bf16 build and compile in a thread while the standard path answers in this one (as
  the engine does): both finish, the answers keep coming, and how long until the fast path is ready;
- `warm`: only the bf16 build + compile, meant for a second process on the same inductor cache;
- `eval`: 16 prompts of 300-800 tokens, 128 new tokens each, greedy: `evaluate.generate_batch` (one
  batched `generate`) against `generate_batch_fast` (the batched fast decoder), rows per minute.
Also the relative error of each decoder's prompt logits against the model's own forward.
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

NEW_TOKENS = 256


def result(payload: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(payload), flush=True)


def load(cache: Path, shape: str) -> Any:
    import torch

    from workbench.engine.model import add_lora, load_base

    config = gb.run_config(cache, shape)
    loaded = load_base(config, lambda m: gb.log(m))
    add_lora(loaded, config)
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for name, p in loaded.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g, device="cuda", dtype=torch.float32).to(p.dtype) * 0.01)
    from workbench.engine.generate import prepare_for_inference

    prepare_for_inference(loaded.model)
    return loaded


def prompt_ids(loaded: Any) -> list[int]:
    return [int(t) for t in gb.chat_prompt_ids(loaded.tokenizer)["input_ids"][0]]


def reference_logits(loaded: Any, ids: list[int]) -> Any:
    import torch

    with torch.inference_mode():
        return loaded.model(input_ids=torch.tensor([ids], device="cuda")).logits[0, -1].float()


def rel(a: Any, b: Any) -> float:
    return round(float((a.float() - b.float()).norm() / b.float().norm()) * 100, 3)


def timed_decode(decoder: Any, loaded: Any, ids: list[int], repeats: int = 2) -> dict[str, Any]:
    import torch

    from workbench.engine import fast_decode as fd

    best: Any = None
    for _ in range(repeats):
        torch.cuda.synchronize()
        out = fd.decode(decoder, loaded.tokenizer, ids, max_new_tokens=NEW_TOKENS, temperature=0.0, top_p=1.0,
                        stop_ids=[], on_text=lambda _t: None, cancel=threading.Event())
        if best is None or (out.decode_tokens_per_s or 0) > (best.decode_tokens_per_s or 0):
            best = out
    return {"prompt_tokens": best.prompt_tokens, "new_tokens": len(best.token_ids),
            "ttft_ms": round(1000 * (best.time_to_first_token_s or 0), 1),
            "decode_tokens_per_s": round(best.decode_tokens_per_s or 0, 1)}


def arm_standard(loaded: Any, ids: list[int]) -> None:
    from workbench.engine.generate import generate_stream

    prompt = loaded.tokenizer.decode(ids)
    runs = []
    for n in (8, NEW_TOKENS):
        runs.append(generate_stream(loaded, template="instruction", instruction="", conversation="",
                                    on_text=lambda _t: None, cancel=threading.Event(), max_new_tokens=n,
                                    temperature=0.0, prompt_override=prompt))
    r = runs[-1]
    result({"arm": "chat: standard generate_stream (unsloth for_inference, 4-bit)", "prompt_tokens": r.prompt_tokens,
            "new_tokens": r.new_tokens, "ttft_ms": round(1000 * (r.time_to_first_token_s or 0), 1),
            "decode_tokens_per_s": round(r.decode_tokens_per_s or 0, 1)})


def build(loaded: Any, capacity: int, merge: bool, say: Any = None) -> tuple[Any, dict[str, Any]]:
    import torch

    from workbench.engine import fast_decode as fd

    free_cuda()
    before = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    decoder = fd.FastDecoder.build(loaded.model, capacity=capacity, merge=merge)
    torch.cuda.synchronize()
    built = time.perf_counter() - t0
    copy_gib = (torch.cuda.memory_allocated() - before) / 2**30
    t0 = time.perf_counter()
    buckets = decoder.compile(say=say)
    torch.cuda.synchronize()
    compiled = time.perf_counter() - t0
    return decoder, {"build_s": round(built, 2), "compile_s": round(compiled, 1), "buckets": list(buckets),
                     "copy_and_cache_gib": round(copy_gib, 2),
                     "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def graph_vs_eager(decoder: Any, ids: list[int], steps: int = 4) -> float:
    """The compiled graph's step logits against the same step run eagerly (the same cache writes)."""
    import torch

    from workbench.engine import fast_decode as fd

    worst = 0.0
    decoder.prefill(ids)
    token = ids[-1]
    for i in range(steps):
        position = len(ids) + i
        graphed = decoder.step(token, position).clone()
        with torch.inference_mode():
            keys = min(fd.bucket(position + 1), decoder.capacity)
            eager = decoder._forward(decoder._token, decoder._position, keys, fd.layer_forward)
        worst = max(worst, rel(graphed, eager))
        token = int(torch.argmax(eager, -1)[0])
    return worst


def arm_fast(loaded: Any, ids: list[int], capacity: int, merge: bool, reference: Any) -> None:
    label = "bf16 merged, compiled, CUDA graphs" if merge else "4-bit + LoRA unmerged, CUDA graphs"
    decoder, info = build(loaded, capacity, merge, say=gb.log)
    gb.log(f"{label}: built {info}")
    prompt_error = rel(decoder.prefill(ids)[0], reference)
    info["graph_vs_eager_rel_pct"] = graph_vs_eager(decoder, ids)
    result({"arm": f"chat: fast decoder ({label})", **timed_decode(decoder, loaded, ids), **info,
            "prompt_logits_vs_model_rel_pct": prompt_error})
    del decoder
    free_cuda()


def arm_background(loaded: Any, ids: list[int], capacity: int) -> None:
    """The engine's situation: the fast path builds in a thread while the standard path answers here."""
    from workbench.engine.generate import generate_stream

    box: dict[str, Any] = {}
    failure: list[BaseException] = []

    def work() -> None:
        try:
            box["decoder"], box["info"] = build(loaded, capacity, True)
            box["ready_at"] = time.perf_counter()
        except BaseException as exc:
            failure.append(exc)

    prompt = loaded.tokenizer.decode(ids)
    started = time.perf_counter()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    answers = []
    while thread.is_alive():
        r = generate_stream(loaded, template="instruction", instruction="", conversation="", on_text=lambda _t: None,
                            cancel=threading.Event(), max_new_tokens=32, temperature=0.0, prompt_override=prompt)
        answers.append((round(r.decode_tokens_per_s or 0, 1), r.new_tokens))
    thread.join()
    payload: dict[str, Any] = {"arm": "chat: bf16 built in the background while the standard path answers",
                               "standard_answers_meanwhile": len(answers),
                               "standard_decode_tokens_per_s": [a[0] for a in answers][:12]}
    if failure:
        payload["failed"] = f"{type(failure[0]).__name__}: {failure[0]}"[:600]
    else:
        payload.update(ready_after_s=round(box["ready_at"] - started, 1), **box["info"],
                       **timed_decode(box["decoder"], loaded, ids))
    result(payload)
    box.clear()
    free_cuda()


def arm_eval(loaded: Any, rows: int = 16, new_tokens: int = 128) -> None:
    """Judging summaries: one batch of `rows` held-out-like prompts (300-800 tokens), greedy, `new_tokens`
    each, through the standard batched `generate` and through the batched fast decoder."""
    import random

    import torch

    from workbench.engine.evaluate import generate_batch, generate_batch_fast
    from workbench.engine.fast_chat import FastChat

    rng = random.Random(5)
    prompts = [[2] + [rng.randint(6, 255999) for _ in range(rng.randint(300, 800))] for _ in range(rows)]
    settings: dict[str, Any] = dict(max_new_tokens=new_tokens, do_sample=False, temperature=1.0, top_p=1.0,
                                    stop=threading.Event())
    generate_batch(loaded, prompts[:2], use_adapter=True, **{**settings, "max_new_tokens": 4})  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    standard = generate_batch(loaded, prompts, use_adapter=True, **settings)
    torch.cuda.synchronize()
    standard_s = time.perf_counter() - t0
    free_cuda()
    t0 = time.perf_counter()
    decoder = FastChat(lambda _s: None).rows_decoder(loaded, "auto", rows, 2048, say=gb.log)
    build_s = time.perf_counter() - t0
    fast = generate_batch_fast(decoder, loaded, prompts, **settings)  # the first batch
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fast = generate_batch_fast(decoder, loaded, prompts, **settings)
    torch.cuda.synchronize()
    fast_s = time.perf_counter() - t0
    same_first8 = sum(loaded.tokenizer(a.text)["input_ids"][:8] == loaded.tokenizer(b.text)["input_ids"][:8]
                      for a, b in zip(standard, fast, strict=True))
    result({"arm": f"eval: {rows} rows x {new_tokens} new tokens, greedy", "standard_s": round(standard_s, 2),
            "standard_rows_per_min": round(rows / standard_s * 60, 1), "fast_build_s": round(build_s, 1),
            "fast_s": round(fast_s, 2), "fast_rows_per_min": round(rows / fast_s * 60, 1),
            "speedup": round(standard_s / fast_s, 2), "standard_tokens": sum(a.tokens for a in standard),
            "fast_tokens": sum(a.tokens for a in fast), "rows_same_first_8_tokens": same_first8,
            "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)})
    del decoder
    free_cuda()


def main() -> None:
    p = gb.base_parser()
    p.add_argument("--capacity", type=int, default=4096)
    p.add_argument("--arms", default="standard,4bit,bf16,background")
    a = p.parse_args()
    gb.boot_engine()
    cache = Path(a.cache).resolve()
    t0 = time.time()
    loaded = load(cache, a.shape)
    gb.log(f"loaded in {time.time() - t0:.0f} s")
    ids = prompt_ids(loaded)
    reference = reference_logits(loaded, ids)
    for arm in a.arms.split(","):
        try:
            if arm == "standard":
                arm_standard(loaded, ids)
            elif arm in ("4bit", "bf16"):
                arm_fast(loaded, ids, a.capacity, merge=(arm == "bf16"), reference=reference)
            elif arm == "background":
                arm_background(loaded, ids, a.capacity)
            elif arm == "eval":
                arm_eval(loaded)
            elif arm == "warm":
                decoder, info = build(loaded, a.capacity, True)
                result({"arm": "chat: bf16 build + compile in a second process (warm inductor cache)", **info,
                        **timed_decode(decoder, loaded, ids, repeats=1)})
        except Exception as exc:  # one arm failing must not cost the others
            import traceback

            traceback.print_exc()
            result({"arm": f"chat: {arm}", "failed": f"{type(exc).__name__}: {exc}"[:800]})
            free_cuda()


if __name__ == "__main__":
    main()
