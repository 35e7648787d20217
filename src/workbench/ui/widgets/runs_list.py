"""The list of past runs (Save/Runs pane): open one, mark one to compare, rename, delete.

Everything that touches the disk runs in a thread: listing reads every run's events.jsonl (about 40 ms
for a 10,000-step run), a delete can remove gigabytes of checkpoints, and even a rename first asks
whether an engine still trains the run. What follows a change is not decided here: the list posts
`OpenRun`, `CompareRun` and `RunsChanged` up, and the App moves the active run, the compared run and the
config path. The list learns which runs are active and compared from attributes set from above.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Static

from workbench.errors import UserError
from workbench.runs import (
    Deleted,
    RunDir,
    RunInventory,
    RunSummary,
    check_run_name,
    delete_run,
    format_bytes,
    list_runs,
    rename_run,
    run_inventory,
)
from workbench.ui.messages import CompareRun, OpenRun, RunsChanged
from workbench.ui.widgets.confirm import Confirm

# The colours of the two curves on the loss chart (loss_chart.py): the marks in the list match them.
ACTIVE_MARK = Text("● this", style="cyan")
COMPARE_MARK = Text("◆ vs", style="magenta")
MARK_COLUMN = "chart"


def _same(a: str | Path | None, b: str | Path | None) -> bool:
    # The engine names runs by absolute path, the list by the config's (often relative) runs_dir.
    return a is not None and b is not None and Path(a).absolute() == Path(b).absolute()


class RenameRun(ModalScreen[str | None]):
    """Asks for a run's new name, checked as it is typed; answers the name, or None when cancelled."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run

    def compose(self) -> ComposeResult:
        with Vertical(id="rename-dialog"):
            yield Static(f"Rename run [b]{self.run.name}[/b] (its folder in {self.run.path.parent}/). "
                         "Its history, checkpoints and exports stay as they are.", id="rename-text")
            yield Input(self.run.name, id="rename-input")
            yield Static("", id="rename-error")
            with Horizontal():
                yield Button("Rename", id="rename-yes", variant="primary")
                yield Button("Cancel", id="rename-no")

    def on_mount(self) -> None:
        self.query_one("#rename-input", Input).focus()

    def reason(self, name: str) -> str | None:
        """Why `name` will not do, or None. The folder's existence is one stat: cheap enough per key."""
        why = check_run_name(name)
        if why:
            return why
        if name == self.run.name:
            return "that is its name now"
        target = self.run.path.parent / name
        if target.exists() or target.is_symlink():
            return f"{target} already exists"
        return None

    @on(Input.Changed, "#rename-input")
    def _typed(self, event: Input.Changed) -> None:
        why = self.reason(event.value.strip())
        self.query_one("#rename-error", Static).update(Text(why or "", style="red"))
        self.query_one("#rename-yes", Button).disabled = why is not None

    @on(Input.Submitted, "#rename-input")
    @on(Button.Pressed, "#rename-yes")
    def _submit(self) -> None:
        name = self.query_one("#rename-input", Input).value.strip()
        why = self.reason(name)
        if why:
            self.query_one("#rename-error", Static).update(Text(why, style="red"))
            self.app.bell()
            return
        self.dismiss(name)

    @on(Button.Pressed, "#rename-no")
    def action_cancel(self) -> None:
        self.dismiss(None)


class RunsList(Vertical):
    """The runs table, its keys and a line that says what the last operation did (or why it did not)."""

    BINDINGS = [
        Binding("c", "compare_run", "Compare"),
        Binding("r,f2", "rename_run", "Rename"),
        Binding("d,delete", "delete_run", "Delete"),
    ]

    active_run: reactive[str | None] = reactive(None, init=False)
    """The App's active run (marked "this" in the list)."""
    compare_run: reactive[str | None] = reactive(None, init=False)
    """The run overlaid on the active run's chart (marked "vs")."""

    listed = 0
    """How many times the table was filled (tests wait on it: the list is read in a thread)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs_dir = "runs"
        self._select_after: str | None = None
        """A row to put the cursor on after the next listing (a renamed run, under its new key)."""

    def compose(self) -> ComposeResult:
        yield Static("[b]Runs[/b] (Enter opens one: its curves, its config, its weights)", classes="section-title")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-message")

    def on_mount(self) -> None:
        self._table().add_column("chart", key=MARK_COLUMN, width=7)
        self._table().add_columns("run", "status", "step", "final loss", "model")

    def _table(self) -> DataTable[Any]:
        return self.query_one("#runs-table", DataTable)

    def _say(self, text: str, style: str = "green") -> None:
        self.query_one("#runs-message", Static).update(Text(text, style=style))

    def _fail(self, exc: UserError | OSError) -> None:
        if isinstance(exc, UserError):
            self._say(f"{exc.message} {exc.hint}".strip(), "red")
        else:  # not expected (the domain turns OS errors into UserErrors), but never a traceback
            self._say(f"{type(exc).__name__}: {exc}", "red")

    def selected(self) -> str | None:
        """The folder of the run under the cursor."""
        table = self._table()
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value)

    def shown(self) -> list[str]:
        table = self._table()
        return [str(table.get_row_at(i)[1]) for i in range(table.row_count)]

    # -- listing ------------------------------------------------------------------------------------
    def refresh_runs(self, runs_dir: str) -> None:
        self.runs_dir = runs_dir
        self._read_runs(runs_dir)

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def _read_runs(self, runs_dir: str) -> None:
        runs = list_runs(runs_dir)
        with contextlib.suppress(RuntimeError):  # the app closed meanwhile
            self.app.call_from_thread(self._show_runs, runs)

    def _show_runs(self, runs: list[RunSummary]) -> None:
        table = self._table()
        selected = table.cursor_row
        table.clear()
        for r in runs:
            loss = f"{r.final_loss:.4f}" if r.final_loss is not None else "–"
            table.add_row(self._mark(str(r.path)), r.name, r.status, f"{r.step}/{r.total_steps}", loss, r.model,
                          key=str(r.path))
        if runs:
            keys = [str(r.path) for r in runs]
            wanted = next((i for i, k in enumerate(keys) if _same(k, self._select_after)), None)
            table.move_cursor(row=wanted if wanted is not None else min(selected, len(runs) - 1))
        self._select_after = None
        self.listed += 1

    def _mark(self, path: str) -> Text:
        if _same(path, self.active_run):
            return ACTIVE_MARK
        if _same(path, self.compare_run):
            return COMPARE_MARK
        return Text("")

    def _remark(self) -> None:
        # Two cells per change, not a new listing: marking is a key press and must stay cheap.
        table = self._table()
        if not self.is_mounted or not table.columns:
            return
        for row_key in list(table.rows):
            mark = self._mark(str(row_key.value))
            if table.get_cell(row_key, MARK_COLUMN) != mark:
                table.update_cell(row_key, MARK_COLUMN, mark)

    def watch_active_run(self) -> None:
        self._remark()

    def watch_compare_run(self) -> None:
        self._remark()

    @on(DataTable.RowSelected, "#runs-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.post_message(OpenRun(str(event.row_key.value)))

    # -- compare ------------------------------------------------------------------------------------
    def action_compare_run(self) -> None:
        """Mark the run under the cursor to be overlaid on the active run's chart (again: unmark it)."""
        path = self.selected()
        if path is None:
            self._say("No run to compare: train one first.", "yellow")
        elif _same(path, self.compare_run):
            self.post_message(CompareRun(None))
            self._say("No overlay: the chart shows the active run alone.")
        elif _same(path, self.active_run):
            self._say(f"{Path(path).name} is the active run: pick another run to compare it with.", "yellow")
        else:
            self.post_message(CompareRun(path))
            self._say(f"The Train pane's chart overlays {Path(path).name} (magenta) on the active run. "
                      "c again removes it.")

    # -- rename -------------------------------------------------------------------------------------
    def action_rename_run(self) -> None:
        path = self.selected()
        if path is None:
            self._say("No run to rename.", "yellow")
            return
        run = RunDir(path)
        if run.engine_alive():  # a small file and /proc: asked before the dialog, asked again when renaming
            self._fail(UserError("run_live", f"{run.name} is training: it cannot be renamed now.",
                                 "Stop it first (Train pane, x), then try again."))
            return

        def answered(name: str | None) -> None:
            if name:
                self._rename(path, name)

        self.app.push_screen(RenameRun(run), answered)

    # Not exclusive: a rename or delete under way is never cancelled by the next key.
    @work(thread=True, exit_on_error=False, group="runs-change")
    def _rename(self, path: str, name: str) -> None:
        try:
            result: RunDir | UserError = rename_run(RunDir(path), name)
        except UserError as exc:
            result = exc
        with contextlib.suppress(RuntimeError):
            self.app.call_from_thread(self._renamed, path, result)

    def _renamed(self, old: str, result: RunDir | UserError) -> None:
        if isinstance(result, UserError):
            self._fail(result)
            return
        self._say(f"Renamed {Path(old).name} to {result.name}.")
        self._select_after = str(result.path)
        self.post_message(RunsChanged(renamed=(old, str(result.path))))
        self.refresh_runs(self.runs_dir)

    # -- delete -------------------------------------------------------------------------------------
    def action_delete_run(self) -> None:
        path = self.selected()
        if path is None:
            self._say("No run to delete.", "yellow")
            return
        self._say(f"Looking at what {Path(path).name} holds…", "dim")
        self._take_inventory(path)

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs-inventory")
    def _take_inventory(self, path: str) -> None:
        try:
            result: RunInventory | UserError = run_inventory(RunDir(path))
        except OSError as exc:
            result = UserError("os_error", f"{Path(path).name} could not be read: {exc.strerror or exc}.")
        with contextlib.suppress(RuntimeError):
            self.app.call_from_thread(self._ask_delete, result)

    def _ask_delete(self, result: RunInventory | UserError) -> None:
        if isinstance(result, UserError):
            self._fail(result)
            return
        if result.live_pid is not None:
            self._fail(UserError("run_live", f"{result.name} is training (engine pid {result.live_pid}): it "
                                 "cannot be deleted now.", "Stop it first (Train pane, x), then try again."))
            return
        self._say("")
        question = (f"Delete run {result.name}?\n\nThis removes the folder {result.path} for good, with "
                    f"{result.describe()}. It cannot be undone.")
        path, size = str(result.path), result.bytes

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(path, size)
            else:
                self._say("Not deleted.")

        self.app.push_screen(Confirm(question, yes=f"Delete {result.name}", no="Cancel"), answered)

    @work(thread=True, exit_on_error=False, group="runs-change")
    def _delete(self, path: str, size: int) -> None:
        try:
            result: Deleted | UserError = delete_run(RunDir(path))
        except UserError as exc:
            result = exc
        with contextlib.suppress(RuntimeError):
            self.app.call_from_thread(self._deleted, path, size, result)

    def _deleted(self, path: str, size: int, result: Deleted | UserError) -> None:
        if isinstance(result, UserError):
            self._fail(result)
            return
        if result.leftover is not None:
            self._say(f"{result.name} is out of the list, but some of its files could not be removed "
                      f"({result.reason}): they are in {result.leftover}.", "yellow")
        else:
            self._say(f"Deleted {result.name} ({format_bytes(size)}).")
        self.post_message(RunsChanged(deleted=path))
        self.refresh_runs(self.runs_dir)
