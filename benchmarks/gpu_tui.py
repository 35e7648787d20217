"""The TUI on the GPU machine, driven headless by Pilot: real NVML gauges (pynvml) while another process
loads the model onto the GPU (memory used must move), and the loss curve of a real GPU run replayed from
its events.jsonl. Writes an SVG screenshot.

    python benchmarks/gpu_tui.py --cache .gpucache --out $OUT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

LOAD = """
import sys, time, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], device_map={"": 0}, dtype=torch.bfloat16)
print("loaded", torch.cuda.memory_allocated() / 2**30, flush=True)
time.sleep(6)
"""


async def main(cache: Path, out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from workbench.ui.app import WorkbenchApp
    from workbench.ui.widgets.loss_chart import LossChart

    app = WorkbenchApp(config_path=Path(__file__).resolve().parents[1] / "configs" / "gemma2-9b-hindi.toml",
                       start_engine=False)
    readings: list[float] = []
    async with app.run_test(size=(160, 50)) as pilot:
        await app.panes_mounted()
        await pilot.press("3")
        await pilot.pause(2)
        proc = subprocess.Popen([sys.executable, "-c", LOAD, str(cache / "gemma2-9b-4bit")])
        t0 = time.time()
        while time.time() - t0 < 90 and (proc.poll() is None or len(readings) < 3):
            await pilot.pause(1)
            gauges = app.query("#gpu-0")
            if gauges:
                bar = gauges.first().query_one("#gpu-mem")
                readings.append(float(bar.progress))
            if proc.poll() is not None and time.time() - t0 > 5:
                break
        proc.wait(timeout=60)
        await pilot.pause(2)
        line = str(app.query_one("#gpu-0 #gpu-line").render()) if app.query("#gpu-0") else "no gauge"
        runs = sorted((cache / "runs").iterdir())
        app.open_run(str(runs[0]))
        await pilot.pause(1)
        chart = app.query_one(LossChart)
        app.save_screenshot(str(out / "tui_gpu.svg"))
        result = {"gpu_line": line, "mem_used_gib_min": min(readings) if readings else None,
                  "mem_used_gib_max": max(readings) if readings else None, "samples": len(readings),
                  "loss_points_replayed": len(chart.steps), "run": runs[0].name}
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--cache", default=".gpucache")
    p.add_argument("--out", default=".")
    a = p.parse_args()
    asyncio.run(main(Path(a.cache).resolve(), Path(a.out)))
