"""Save / Runs pane: save the tuned model (LoRA adapter, merged 16-bit, GGUF where llama.cpp is present)
with overwrite confirmation, and the list of past runs, any of which opens with its curves replayed."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, RadioButton, RadioSet, Static

from workbench.exports import SAVE_KINDS, SAVE_TITLES, unavailable_reason
from workbench.protocol import Error, Result
from workbench.runs import list_runs


class ConfirmOverwrite(ModalScreen[bool]):
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(f"{self.path} already exists. Overwrite it? (The old folder is replaced only once "
                         "the new save is complete.)", id="confirm-text")
            with Horizontal():
                yield Button("Overwrite", id="confirm-yes", variant="error")
                yield Button("Cancel", id="confirm-no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()  # Enter must not destroy anything

    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed)
    def _answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


class SavePane(Vertical):
    BINDINGS = [("ctrl+s", "save", "Save model"), ("f5", "refresh_runs", "Refresh runs")]

    runs_listed = 0
    """How many times the runs table was filled (tests wait on it: the list is read in a thread)."""

    def compose(self) -> ComposeResult:
        yield Static("[b]Save the tuned model[/b]", classes="section-title")
        with RadioSet(id="save-kind"):
            for kind in SAVE_KINDS:
                reason = unavailable_reason(kind)
                label = SAVE_TITLES[kind] + (f"  (unavailable: {reason})" if reason else "")
                yield RadioButton(label, value=(kind == "lora"), disabled=bool(reason), id=f"save-{kind}")
        with Horizontal(id="save-row"):
            yield Input("", id="save-path", placeholder="folder to save to")
            yield Button("Save", id="save-button", variant="primary")
        yield Static("", id="save-message")
        yield Static("[b]Runs[/b] (select one to open it: curves replay from its events.jsonl)", classes="section-title")
        table: DataTable[str] = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        self.query_one("#runs-table", DataTable).add_columns("run", "status", "step", "final loss", "model")
        self.action_refresh_runs()

    def default_path(self) -> str:
        run_dir = self.app.current_run_dir()  # type: ignore[attr-defined]
        kind = self._kind()
        base = Path(run_dir) if run_dir else Path(self.app.config.output.runs_dir)  # type: ignore[attr-defined]
        return str(base / f"export-{kind}")

    def _kind(self) -> str:
        pressed = self.query_one("#save-kind", RadioSet).pressed_button
        return (pressed.id or "save-lora").removeprefix("save-") if pressed else "lora"

    def on_show(self) -> None:
        box = self.query_one("#save-path", Input)
        if not box.value or box.value == getattr(self, "_last_default", None):
            box.value = self._last_default = self.default_path()
        self.action_refresh_runs()

    @on(RadioSet.Changed, "#save-kind")
    def _kind_changed(self) -> None:
        self.query_one("#save-path", Input).value = self.default_path()

    @on(Button.Pressed, "#save-button")
    def action_save(self) -> None:
        path = self.query_one("#save-path", Input).value.strip()
        if not path:
            self._message("Choose a folder to save to.", error=True)
            return
        if Path(path).expanduser().exists():
            self.app.push_screen(ConfirmOverwrite(path), lambda ok: self._save(path, True) if ok else None)
        else:
            self._save(path, False)

    def _save(self, path: str, overwrite: bool) -> None:
        kind = self._kind()
        self._message(f"Saving {SAVE_TITLES[kind]} to {path}…")
        args: dict[str, Any] = {"kind": kind, "path": path, "overwrite": overwrite}
        args.update(self.app.save_source())  # type: ignore[attr-defined]
        self.app.bridge.request("save", args, on_result=self._saved, on_error=self._failed)  # type: ignore[attr-defined]

    def _saved(self, result: Result) -> None:
        self._message(f"Saved {result.data.get('kind')} to {result.data.get('path')}")

    def _failed(self, error: Error) -> None:
        self._message(f"{error.message} {error.hint}", error=True)

    def _message(self, text: str, error: bool = False) -> None:
        self.query_one("#save-message", Static).update(Text(text, style="red" if error else "green"))

    def action_refresh_runs(self) -> None:
        self._read_runs(self.app.config.output.runs_dir)  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def _read_runs(self, runs_dir: str) -> None:
        # A run's summary reads its whole events.jsonl (about 40 ms for a 10,000-step run), and this
        # runs after every training and on every visit to the pane: off the UI thread.
        runs = list_runs(runs_dir)
        with contextlib.suppress(RuntimeError):  # the app closed meanwhile
            self.app.call_from_thread(self._show_runs, runs)

    def _show_runs(self, runs: list[Any]) -> None:
        table = self.query_one("#runs-table", DataTable)
        selected = table.cursor_row
        table.clear()
        for r in runs:
            loss = f"{r.final_loss:.4f}" if r.final_loss is not None else "–"
            table.add_row(r.name, r.status, f"{r.step}/{r.total_steps}", loss, r.model, key=str(r.path))
        if runs:
            table.move_cursor(row=min(selected, len(runs) - 1))
        self.runs_listed += 1

    @on(DataTable.RowSelected, "#runs-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(str(event.row_key.value))  # type: ignore[attr-defined]

    def runs_shown(self) -> list[Any]:
        table = self.query_one("#runs-table", DataTable)
        return [table.get_row_at(i)[0] for i in range(table.row_count)]
