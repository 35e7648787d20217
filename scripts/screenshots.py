"""Regenerate screenshots/ from the real app: the demo config, the real engine on the tiny model (CPU),
every pane after real work (rendered row, statistics, training, chat, saved model).

Each shot is written twice:
- `NAME.svg`: Textual's own SVG export;
- `NAME.png`: the same screen drawn cell by cell as a terminal shows it (`scripts/terminal_png.py`):
  backgrounds on the cell grid, every word shaped by HarfBuzz at its column, so Devanagari reads
  correctly, which it does not in the SVG (nor in a PNG made from it).

The PNGs need, besides the project (Debian / Ubuntu):

    apt-get install fonts-dejavu-core fonts-noto-core libfribidi0
    pip install -e ".[screenshots]"        # Pillow with raqm, fontTools

The script checks for these before it starts the app and names what is missing.

    python scripts/screenshots.py            # writes screenshots/*.svg and *.png

The GPU panel shows what NVML finds on this machine, nothing faked. The README captions 3-train as the
CPU demo: regenerate on a machine without an NVIDIA GPU, or change the caption.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import terminal_png

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "screenshots"
sys.path.insert(0, str(ROOT))


def screen_rows(app: Any) -> list[list[Any]]:
    """The screen as the app last composed it: one list of Rich segments (text, style) per row.

    Textual has no public API for the cells of the screen. `App.export_screenshot` gets them with the
    same two steps, a full update from the screen's compositor (a Textual internal) printed by a Rich
    console, and turns them into SVG; here they are kept as segments. If a Textual upgrade breaks this,
    compare with `App.export_screenshot` in textual/app.py.
    """
    from rich.console import Console
    from rich.segment import Segment

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", legacy_windows=False, safe_box=False)
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    segments = Segment.filter_control(console.render(update, console.options))
    rows = [list(row) for row in Segment.split_lines(segments)]
    if len(rows) != height or any(Segment.get_line_length(row) != width for row in rows):
        raise RuntimeError(f"the screen's segments are not {width}x{height} cells: Textual changed; see screen_rows()")
    return rows


async def main() -> None:
    from tests.ui.conftest import wait_for
    from textual.widgets import Input, TextArea

    from workbench.config import load_config, save_config
    from workbench.ui.app import WorkbenchApp
    from workbench.ui.panes.chat_pane import ChatPane
    from workbench.ui.panes.config_pane import ConfigPane
    from workbench.ui.panes.data_pane import DataPane
    from workbench.ui.panes.eval_pane import EvalPane
    from workbench.ui.panes.train_pane import TrainPane
    from workbench.ui.widgets.loss_chart import LossChart

    work = Path(tempfile.mkdtemp(prefix="wb-shots-"))
    config = load_config(ROOT / "configs" / "demo.toml")
    config.output.runs_dir = str(work / "runs")
    config.training.max_steps = 120
    path = work / "demo.toml"
    save_config(config, path)
    OUT.mkdir(exist_ok=True)
    # The GPU panel shows what NVML says on this machine (on the CPU demo: no GPU). The capture from an
    # H200 with real NVML is screenshots/tui-gpu-h200.svg, made by benchmarks/gpu_tui.py.
    app = WorkbenchApp(config_path=path)
    app.config_path = Path("configs/demo.toml")
    shots: list[Path] = []

    def shot(name: str) -> None:
        target = OUT / f"{name}.svg"
        app.save_screenshot(str(target))
        terminal_png.render(screen_rows(app), target.with_suffix(".png"), title=app.title)
        shots.extend([target, target.with_suffix(".png")])

    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 300, "engine")
        await wait_for(pilot, lambda: app.query_one(ConfigPane).forecast is not None, 120, "the memory forecast")
        await pilot.pause(0.3)
        shot("1-config")
        await pilot.press("2")
        await wait_for(pilot, lambda: app.query_one(DataPane).stats is not None, 120, "statistics")
        await pilot.pause(0.5)
        shot("2-data")
        await pilot.press("3")
        await pilot.click("#train-start")
        await wait_for(pilot, lambda: app.query_one(TrainPane).last_done is not None, 600, "training")
        app.query_one(LossChart).draw_now()  # the whole curve, drawn before the shot
        await pilot.pause(1.5)
        shot("3-train")
        await pilot.press("4")
        chat = app.query_one(ChatPane)
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
        await pilot.press("6")
        evals = app.query_one(EvalPane)
        evals.query_one("#eval-rows", Input).value = "12"
        await pilot.press("e")  # 12 held-out rows, tuned and base, by the engine
        await wait_for(pilot, lambda: evals.loaded is not None and evals.loaded.complete, 600, "the eval")
        await pilot.press("g")  # rows sorted by the tuned-minus-base gap
        await pilot.pause(0.5)
        shot("6-eval")
        await pilot.press("f1")
        await pilot.pause(0.5)
        shot("7-help")
    shutil.rmtree(work, ignore_errors=True)
    print("\n".join(str(s.relative_to(ROOT)) for s in shots))


if __name__ == "__main__":
    try:
        terminal_png.check()
    except terminal_png.MissingPiece as missing:
        sys.exit(f"screenshots.py: cannot draw the PNGs: {missing}")
    asyncio.run(main())
