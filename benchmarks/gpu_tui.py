"""The TUI on the GPU machine, driven headless by Pilot as a user drives it: real NVML gauges and the real
engine training a Gemma-2-2B-shape model in 4-bit (random weights, word-level tokenizer: the loss curve
is that of random data, the point is the screen). Writes SVG screenshots of the Train pane mid-run.

    python benchmarks/gpu_tui.py --cache .gpucache --out $OUT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gpu_bench import build, log, run_config


async def drive(config_path: Path, out: Path, steps: int) -> dict[str, object]:
    from textual.widgets import Static

    from workbench.ui.app import WorkbenchApp
    from workbench.ui.panes.train_pane import TrainPane
    from workbench.ui.widgets.loss_chart import LossChart

    app = WorkbenchApp(config_path=config_path)
    result: dict[str, object] = {}
    async with app.run_test(size=(160, 50)) as pilot:
        await app.panes_mounted()
        started = time.monotonic()
        while not app.engine_ready:
            assert time.monotonic() - started < 120, "the engine did not start"
            await pilot.pause(0.5)
        await pilot.press("3", "t")
        chart, train = app.query_one(LossChart), app.query_one(TrainPane)
        while len(chart.steps) < steps:
            assert time.monotonic() - started < 480, f"{len(chart.steps)} steps after 480 s"
            await pilot.pause(1)
        chart.draw_now()
        await pilot.pause(1.5)  # a fresh NVML sample with the engine's memory on the card
        app.save_screenshot(str(out / "tui-gpu-h200.svg"))
        gauge = app.query("#gpu-0")
        result = {
            "gpu_line": str(app.query_one("#gpu-0 #gpu-line", Static).render()) if gauge else "no gauge",
            "gpu_processes": str(app.query_one("#gpu-0 #gpu-procs", Static).render()) if gauge else "",
            "memory_report": str(app.query_one("#gpu-memory-report", Static).render()),
            "loss_points": len(chart.steps), "seconds": round(time.monotonic() - started, 1),
            "device": app.device,
        }
        await pilot.press("x")
        while train.running and time.monotonic() - started < 560:
            await pilot.pause(0.5)
        result["done"] = train.last_done.status if train.last_done else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, default=Path(".gpucache"))
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    from workbench.config import save_config
    from workbench.engine.boot import boot

    boot()
    build("2b", args.cache)
    config = run_config(args.cache, "2b", max_steps=400)
    config.training.save_steps = 100_000
    path = args.cache / "tui.toml"
    save_config(config, path)
    result = asyncio.run(drive(path, args.out, args.steps))
    log("RESULT " + json.dumps(result, ensure_ascii=False))
    (args.out / "gpu_tui.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
