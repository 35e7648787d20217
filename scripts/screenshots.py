"""Regenerate screenshots/ from the real app: the demo config, the real engine on the tiny model (CPU),
every pane after real work (rendered row, statistics, training, chat, saved model). SVG from Textual;
PNG too where `rsvg-convert` (librsvg2-bin) is installed.

    python scripts/screenshots.py            # writes screenshots/*.svg (+ .png)
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "screenshots"
sys.path.insert(0, str(ROOT))


async def main() -> None:
    from tests.ui.conftest import FakeNvml, wait_for
    from textual.widgets import TextArea

    from workbench.config import load_config, save_config
    from workbench.ui.app import WorkbenchApp
    from workbench.ui.panes.chat_pane import ChatPane
    from workbench.ui.panes.data_pane import DataPane
    from workbench.ui.panes.train_pane import TrainPane
    from workbench.ui.widgets.loss_chart import LossChart

    work = Path(tempfile.mkdtemp(prefix="wb-shots-"))
    config = load_config(ROOT / "configs" / "demo.toml")
    config.output.runs_dir = str(work / "runs")
    config.training.max_steps = 120
    path = work / "demo.toml"
    save_config(config, path)
    OUT.mkdir(exist_ok=True)
    # The GPU panel shows a fake pair of H100s (this machine has no GPU); the real-NVML capture from an
    # H200 is screenshots/tui-gpu-h200-replay.svg, made by benchmarks/gpu_tui.py.
    app = WorkbenchApp(config_path=path, gpu_module=FakeNvml())
    app.config_path = Path("configs/demo.toml")
    shots: list[Path] = []

    def shot(name: str) -> None:
        target = OUT / f"{name}.svg"
        app.save_screenshot(str(target))
        shots.append(target)

    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 300, "engine")
        shot("1-config")
        await pilot.press("2")
        await wait_for(pilot, lambda: app.pane(DataPane).stats is not None, 120, "statistics")
        await pilot.pause(0.5)
        shot("2-data")
        await pilot.press("3")
        await pilot.click("#train-start")
        await wait_for(pilot, lambda: app.pane(TrainPane).last_done is not None, 600, "training")
        app.query_one(LossChart).draw_now()  # the whole curve, drawn before the shot
        await pilot.pause(1.5)
        shot("3-train")
        await pilot.press("4")
        chat = app.pane(ChatPane)
        chat.query_one("#chat-compare").value = True
        await pilot.click("#chat-fill")
        await wait_for(pilot, lambda: bool(chat.query_one("#chat-input", TextArea).text), 60, "held-out row")
        chat.query_one("#chat-max-new").value = "48"
        await pilot.click("#chat-send")
        await wait_for(pilot, lambda: chat._request is None and "tokens" in str(chat.query_one("#chat-status").render()),
                       180, "chat")
        shot("4-chat")
        await pilot.press("5")
        await pilot.click("#save-button")
        await wait_for(pilot, lambda: "Saved" in str(app.query_one("#save-message").render()), 120, "save")
        app.query_one("#runs-table").focus()
        await wait_for(pilot, lambda: app.query_one("#save-pane").runs_shown(), 30, "runs list")  # read in a thread
        await pilot.pause(0.5)
        shot("5-save-runs")
        await pilot.press("f1")
        await pilot.pause(0.5)
        shot("6-help")
    converter = shutil.which("rsvg-convert")
    for svg in shots:
        if converter:
            subprocess.run([converter, "-w", "1600", str(svg), "-o", str(svg.with_suffix(".png"))], check=False)
    shutil.rmtree(work, ignore_errors=True)
    print("\n".join(str(s.relative_to(ROOT)) for s in shots))


if __name__ == "__main__":
    asyncio.run(main())
