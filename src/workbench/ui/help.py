"""The help screen (F1): keys and what survives a closed terminal."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# workbench

| key | does |
|---|---|
| 1-6 | switch pane: Config, Data, Train, Chat, Save/Runs, Eval |
| ctrl+p | command palette: every action by name |
| ctrl+s | save the config (Config pane) or the model (Save pane) |
| / , d | Config: filter the fields by name or help, list what differs from the file |
| f / F | Config: apply the memory forecast's "fits" / "fast" profile for the GPU (micro-batch, checkpointing, layer streaming) |
| n / p / g / s | Data: next row, previous row, jump to row, recompute statistics |
| t / x / r | Train: start, stop (checkpoint), resume |
| p / e / r | Train, while a run trains: pause at the next step, quick eval of held-out rows with the live adapter, continue (Chat answers with the live adapter while paused) |
| + / - / s | Train: zoom the loss chart (all steps, last 1000, 200, 50), cycle its smoothing (0.6, 0.9, off) |
| / then n / N | Train: search the log, next (newer) / previous (older) match; enter goes to the log, esc closes; l focuses the log |
| c / r / d | Runs list: compare with the active run on the chart, rename, delete (asks first) |
| ctrl+g / esc | Chat: send, cancel |
| e / x / r | Eval: evaluate the active run (rows, with or without base), stop (rows made are kept), resume |
| s / g / o / m | Eval rows: sort by the next column (or click a header), by the gap, reverse; the gap's metric |
| enter, c | Eval: a row whole (n / p in it), compare with another run's eval on the same rows |
| esc | leave a text box (then 1-6 and the pane keys work) |
| F1 | this help |
| ctrl+q | quit (a run in progress keeps training; `workbench attach` re-attaches) |

Training runs in the engine process, which outlives this UI: closing the terminal or a dropped SSH
connection loses nothing. Every event is in `runs/<run>/events.jsonl`.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape", "dismiss", "Close"), ("f1", "dismiss", "Close"), ("q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-text"):
            yield Markdown(HELP)

    def on_mount(self) -> None:
        self.query_one("#help-text").focus()
