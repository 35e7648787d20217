"""Chat through the real engine process on the GPU (issue 12, part 4), as the Chat pane drives it: train a
short run, open Chat on it (`PrepareChat`: the fast decoder builds in the background), ask for a summary
(`Generate`), then the same with `model.chat_path = 4bit`. Run it twice on the same inductor / unsloth
cache folders: the second process is "a warm cache" (and its training run is "a rerun": first step time).

    python benchmarks/gpu_chat_engine.py --cache C [--shape 9b] [--steps 3] [--label cold|warm]

One RESULT line per phase: the training run's first-step time; seconds from PrepareChat to its answer
and to the ChatPath "ready" event; the answer's time to first token, tokens/s and path as the engine
reports them (the Chat pane shows the same); the time from PrepareChat to the end of that first answer.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_bench as gb


def result(payload: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(payload), flush=True)


def wait_for(events: list[Any], test: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in list(events):
            if test(event):
                return event
        time.sleep(0.05)
    return None


def main() -> None:
    p = gb.base_parser()
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--label", default="cold")
    a = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from workbench import requests as rq
    from workbench.client import EngineClient
    from workbench.protocol import ChatPath, Done, Log

    cache = Path(a.cache).resolve()
    config = gb.run_config(cache, a.shape, packing=True, max_steps=a.steps)
    config.training.per_device_train_batch_size = 8
    events: list[Any] = []
    client = EngineClient(on_event=events.append)
    t0 = time.perf_counter()
    client.start(timeout=300)
    gb.log(f"engine up in {time.perf_counter() - t0:.1f} s")
    try:
        t0 = time.perf_counter()
        started = client.call(rq.Train(config=config), timeout=120)
        done = wait_for(events, lambda e: isinstance(e, Done) and e.run == started.run, 420)
        logs = [e for e in events if isinstance(e, Log) and e.run == started.run]
        result({"arm": f"engine ({a.label}): training run", "status": getattr(done, "status", None),
                "first_step_s": round(logs[0].elapsed_s, 1) if logs else None,
                "run_s": round(time.perf_counter() - t0, 1), "steps": len(logs)})
        rng = __import__("random").Random(3)
        conversation = " ".join(f"t{rng.randint(6, 255999)}" for _ in range(1000))
        for path in ("auto", "4bit"):
            config.model.chat_path = path  # type: ignore[assignment]
            events.clear()
            t0 = time.perf_counter()
            prepared = client.call(rq.PrepareChat(config=config, run_dir=started.run_dir), timeout=300)
            answered = time.perf_counter() - t0
            ready = wait_for(events, lambda e: isinstance(e, ChatPath) and e.state in ("ready", "unavailable"), 300)
            ready_s = time.perf_counter() - t0
            generated = client.call(rq.Generate(config=config, run_dir=started.run_dir, conversation=conversation,
                                                max_new_tokens=256, temperature=0.0), timeout=300)
            first_answer_s = time.perf_counter() - t0
            again = client.call(rq.Generate(config=config, run_dir=started.run_dir, conversation=conversation,
                                            max_new_tokens=256, temperature=0.0), timeout=300)
            stats = again.results["tuned"]
            result({"arm": f"engine ({a.label}): chat, model.chat_path = {path}", "prepare_answer_s": round(answered, 1),
                    "prepared": prepared.fast_chat, "ready_s": round(ready_s, 1),
                    "ready_line": getattr(ready, "line", None),
                    "first_answer_done_s": round(first_answer_s, 1), "first_answer_path": generated.results["tuned"].path,
                    "first_answer_tokens_per_s": round(generated.results["tuned"].decode_tokens_per_s or 0, 1),
                    "path": stats.path, "prompt_tokens": stats.prompt_tokens, "new_tokens": stats.new_tokens,
                    "ttft_ms": round(1000 * (stats.time_to_first_token_s or 0), 1),
                    "decode_tokens_per_s": round(stats.decode_tokens_per_s or 0, 1)})
    finally:
        client.close(shutdown=True)


if __name__ == "__main__":
    main()
