"""Eval pane: did the tuning make better Hindi summaries? The active run's evals (`runs/<run>/evals/`), one
picked: base and tuned scores side by side with the difference and its 95% interval, a per-row table sorted
by any score or by the tuned-minus-base gap, each row whole in a row view, another run's eval on the same
rows in place of the base model, and an eval started, followed and stopped from here.

What the tables say is `workbench.eval_view`'s (no Textual there); the row view is `widgets/eval_row.py`;
reading and scoring an eval runs in a thread. The eval itself runs in the engine (`requests.Evaluate`), which streams `EvalProgress`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, Select, Static
from textual.worker import Worker, WorkerState

from workbench import eval_view as view
from workbench import evaluation as ev
from workbench import requests as rq
from workbench.config import RunConfig
from workbench.errors import UserError
from workbench.protocol import Error, EvalProgress, Event
from workbench.ui.bridge import EngineBridge
from workbench.ui.widgets.eval_row import COMPACT_BELOW, RowView
from workbench.ui.widgets.state_switch import StateSwitch

BASE = "base"
"""The compare selector's value for the eval's own base model (else another eval's folder)."""


def _same(a: str | Path | None, b: str | Path | None) -> bool:
    return a is not None and b is not None and Path(a).absolute() == Path(b).absolute()


def _key(folder: str | Path) -> str:
    """An eval folder as the selectors name it (the runs folder may be given relative or absolute)."""
    return str(Path(folder).absolute())


def summary_table(lines: list[view.SummaryLine], first: str, second: str | None) -> Table:
    """The side-by-side scores as a Rich table: metric, the two sides, the gap, its interval, whether the
    interval excludes 0."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", expand=False)
    # Where the width runs short, the labels give way (cut with …), never the numbers.
    table.add_column("", no_wrap=True, overflow="ellipsis")
    table.add_column(first, justify="right", no_wrap=True, min_width=5)
    if second is not None:
        table.add_column(second, justify="right", no_wrap=True, min_width=7, max_width=14, overflow="ellipsis")
        table.add_column("Δ", justify="right", no_wrap=True, min_width=6)
        table.add_column("95% interval", no_wrap=True, min_width=16)
        table.add_column("excl. 0", no_wrap=True, min_width=7)
    for line in lines:
        cells: list[Any] = [line.label, line.tuned]
        if second is not None:
            mark = Text("")
            if line.significant is not None:
                colour = "green" if line.gap.startswith("+") else "red"
                mark = Text("yes", style=f"bold {colour}") if line.significant else Text("no", style="dim")
            cells += [line.base, line.gap, line.interval, mark]
        table.add_row(*cells)
    return table


def gap_text(value: str) -> Text:
    style = "green" if value.startswith("+") and value.strip("+0.") else "red" if value.startswith("-") else ""
    return Text(value, style=style)


class EvalPane(Vertical):
    BINDINGS = [
        Binding("e", "start", "Evaluate"),
        Binding("x", "stop", "Stop"),
        Binding("r", "resume", "Resume", show=False),
        Binding("s", "sort", "Sort (or click a header)"),
        Binding("g", "sort_gap", "Sort by gap"),
        Binding("o", "reverse", "Reverse", show=False),
        Binding("m", "metric", "Gap metric", show=False),
        Binding("c", "compare", "Compare", show=False),
    ]

    config: reactive[RunConfig] = reactive(RunConfig, always_update=True, init=False)
    run_dir: reactive[str | None] = reactive(None, init=False)
    """The active run: its evals are listed, and an eval started here judges its weights."""

    listed = 0
    """How many times the evals were listed (tests wait on it: the folders are read in a thread)."""
    shown = 0
    """How many times an eval was put on screen."""

    def __init__(self, engine: EngineBridge, config: RunConfig, run_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.set_reactive(EvalPane.config, config)
        self.set_reactive(EvalPane.run_dir, run_dir)
        self.infos: list[view.EvalInfo] = []
        """The active run's evals, newest first."""
        self.everything: list[view.EvalInfo] = []
        """Every run's evals (what can be compared)."""
        self.loaded: ev.LoadedEval | None = None
        self.other: ev.LoadedEval | None = None
        """Another eval whose tuned model stands where the base model does (None: the base model)."""
        self.lines: list[view.RowLine] = []
        """The table's rows, in the order shown."""
        self.sort_key: view.SortKey = "row"
        self.descending = False
        self.metric = "rougeL"
        """The score the gap (and the other side's column) is about."""
        self._compact = False
        self._open_after: str | None = None
        """An eval to open at the next listing (one just made), even when it is open already."""
        self._request: str | None = None
        self._started = 0.0
        self._done_before = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="eval-bar"):
            yield Select([], prompt="no evals", allow_blank=True, compact=True, id="eval-pick")
            yield Select([], prompt="vs nothing (no base model)", allow_blank=True, compact=True, id="eval-against")
        with Horizontal(id="eval-controls"):
            yield Label("rows")
            yield Input(str(self.config.eval.rows), id="eval-rows", type="integer", compact=True,
                        tooltip="held-out rows to judge (0: all of them)")
            yield Label("with base")
            yield StateSwitch(value=True, id="eval-base", tooltip="also summarize with the adapter off")
            yield Button("Evaluate", id="eval-start", variant="primary", compact=True)
            yield Button("Stop", id="eval-stop", compact=True, disabled=True)
            yield Button("Resume", id="eval-resume", compact=True, disabled=True)
        with Horizontal(id="eval-progress-row"):
            yield ProgressBar(total=None, show_eta=False, id="eval-progress")
            yield Static("", id="eval-status")
        yield Static("", id="eval-about")
        with Horizontal(id="eval-body"):
            with Vertical(id="eval-left"):
                yield Static("", id="eval-summary")
                yield Static("", id="eval-preview")
            yield DataTable(id="eval-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self._compact = self.app.size.width < COMPACT_BELOW
        self._show_run(self.run_dir)

    def on_resize(self, event: events.Resize) -> None:
        compact = event.size.width < COMPACT_BELOW
        if compact != self._compact:
            self._compact = compact
            self._show_summary()
            self._show_preview()

    def on_show(self) -> None:
        self.refresh_evals()

    def watch_run_dir(self, run_dir: str | None) -> None:
        if self.is_mounted:
            self._show_run(run_dir)

    # -- listing and opening ------------------------------------------------------------------------
    def _show_run(self, run_dir: str | None) -> None:
        self.loaded = self.other = None
        self.infos = []
        self._set_options("#eval-pick", [])
        self._set_options("#eval-against", [])
        self._show_eval()
        self.refresh_evals()

    def refresh_evals(self) -> None:
        self._read_evals(self.run_dir, self.config.output.runs_dir)

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-list")
    def _read_evals(self, run_dir: str | None, runs_dir: str) -> None:
        infos = view.run_evals(run_dir) if run_dir else []
        everything = view.all_evals(runs_dir)
        if run_dir and not any(_same(Path(i.folder).parent.parent, run_dir) for i in everything):
            everything += infos  # a run outside runs_dir (attached by path)
        self._back(self._listed, run_dir, infos, everything)

    def _back(self, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback` on the UI thread, from a worker thread (nothing, when the app closed meanwhile)."""
        with contextlib.suppress(RuntimeError):
            self.app.call_from_thread(callback, *args)

    def _listed(self, run_dir: str | None, infos: list[view.EvalInfo], everything: list[view.EvalInfo]) -> None:
        if run_dir != self.run_dir:
            return  # the active run changed meanwhile: its own listing follows
        self.infos, self.everything = infos, everything
        current = _key(self.loaded.folder) if self.loaded else None
        wanted = _key(self._open_after) if self._open_after else current or (_key(infos[0].folder) if infos else None)
        if wanted is not None and not any(_same(i.folder, wanted) for i in infos):
            wanted = _key(infos[0].folder) if infos else None
        self._set_options("#eval-pick", [(i.label(), _key(i.folder)) for i in infos], wanted)
        reopen = self._open_after is not None
        self._open_after = None
        if wanted is None:
            self.loaded = None
            self._show_eval()
        elif reopen or not _same(wanted, current):
            self._load(wanted)
        else:
            self._set_against_options()
        self._buttons()
        self.listed += 1

    def _set_options(self, selector: str, options: list[tuple[str, str]], value: str | None = None) -> None:
        select: Select[str] = self.query_one(selector, Select)
        with select.prevent(Select.Changed):
            select.set_options(options)
            if value is not None and any(v == value for _label, v in options):
                select.value = value

    def selected_info(self) -> view.EvalInfo | None:
        return next((i for i in self.infos if self.loaded and _same(i.folder, self.loaded.folder)), None)

    @on(Select.Changed, "#eval-pick")
    def _picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and not (self.loaded and _same(event.value, self.loaded.folder)):
            self._load(event.value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-load")
    def _load(self, folder: str) -> None:
        loaded = self._read_eval(folder)
        if loaded is not None:
            self._back(self._opened, loaded)

    def _read_eval(self, folder: str) -> ev.LoadedEval | None:
        """An eval folder read and scored (in a worker thread); one that cannot be read is said in the pane."""
        try:
            return ev.load_eval(Path(folder))
        except UserError as exc:
            self._back(self._say, f"{exc.message} {exc.hint}", "red")
            return None

    def _opened(self, loaded: ev.LoadedEval) -> None:
        if not _same(loaded.folder.parent.parent, self.run_dir):
            return  # read for the run that was active before: a thread is not cancelled, only ignored
        self.loaded = loaded
        self.other = None
        self._set_against_options()
        self._show_eval()
        self._buttons()

    def _set_against_options(self) -> None:
        options: list[tuple[str, str]] = []
        info = self.selected_info()
        if self.loaded is not None and "base" in self.loaded.report.models:
            options.append(("vs base model (adapter off)", BASE))
        if info is not None:
            options += [(f"vs {view.compare_label(o, shared)}", _key(o.folder))
                        for o, shared in view.comparable(info, self.everything)]
        value = _key(self.other.folder) if self.other is not None else BASE
        self._set_options("#eval-against", options, value)

    @on(Select.Changed, "#eval-against")
    def _against(self, event: Select.Changed) -> None:
        if event.value == BASE or not isinstance(event.value, str):
            self.other = None
            self._show_eval()
        elif not (self.other and _same(self.other.folder, event.value)):
            self._load_other(event.value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-other")
    def _load_other(self, folder: str) -> None:
        other = self._read_eval(folder)
        if other is not None:
            self._back(self._compared, other)

    def _compared(self, other: ev.LoadedEval) -> None:
        if self.query_one("#eval-against", Select).value != _key(other.folder):
            return  # another choice was made while this one was read
        self.other = other
        self._show_eval()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        # Reading an eval turns what it expects into a message itself; anything else still shows here.
        if event.state == WorkerState.ERROR and str(event.worker.group).startswith("eval-"):
            error = event.worker.error
            self._say(f"{type(error).__name__}: {error}", "red")

    # -- showing ----------------------------------------------------------------------------------
    def _other_title(self) -> str | None:
        if self.other is not None:
            return f"{self.other.plan.run}"
        if self.loaded is not None and "base" in self.loaded.report.models:
            return "base"
        return None

    def _other_scores(self) -> dict[int, Any] | None:
        if self.loaded is None:
            return None
        if self.other is not None:
            return view.model_scores(self.other.report, "tuned")
        if "base" in self.loaded.report.models:
            return view.model_scores(self.loaded.report, "base")
        return None

    def _show_eval(self) -> None:
        self._show_about()
        self._show_summary()
        self._show_rows()
        self.shown += 1

    def _show_about(self) -> None:
        about = self.query_one("#eval-about", Static)
        loaded = self.loaded
        if self.run_dir is None:
            about.update(Text("No run yet: train one (3), or open one in Save/Runs (5); its evals show here.",
                              style="dim"))
            return
        run = Text.assemble("run ", (Path(self.run_dir).name, "bold"), " · ")
        if loaded is None:
            about.update(Text.assemble(run, Text("No eval of this run yet: e judges its summaries of the held-out "
                                                 "rows (with the base model beside them).", style="dim"))
                         if not self.infos else run)
            return
        plan, report = loaded.plan, loaded.report
        scored = f"{len(report.rows)} of {len(plan.rows)} rows scored"
        if report.unscored:
            scored += f", {len(report.unscored)} without a reference"
        if not loaded.complete:
            scored += " (incomplete: r resumes it)"
        step = f" (step {plan.step})" if plan.step is not None else ""
        decoding = "sampled" if plan.decoding.do_sample else "greedy"
        about.update(Text.assemble(run, (plan.weights + step, "bold"), f" · {scored} · {plan.heldout} · {decoding}, "
                                   f"≤{plan.decoding.max_new_tokens} new tokens"))

    def _show_summary(self) -> None:
        summary = self.query_one("#eval-summary", Static)
        loaded = self.loaded
        left = self.query_one("#eval-left")
        if loaded is None or "tuned" not in loaded.report.models:
            summary.update("")
            left.display = False
            return
        left.display = True
        against = None
        note = None
        if self.other is not None:
            comparisons = view.compare(loaded, self.other)
            against = (self.other.report.models["tuned"], [c.difference for c in comparisons])
            rows = comparisons[0].rows if comparisons else 0
            note = Text(f"vs: {self.other.plan.run} ({self.other.name}); Δ over the {rows} rows both scored",
                        style="dim")
        lines = view.summary_lines(loaded.report, compact=self._compact, against=against)
        second = "vs" if self.other is not None else self._other_title()
        table = summary_table(lines, "tuned", second)
        summary.update(Group(table, note) if note is not None else table)

    def _columns(self) -> list[tuple[str, str]]:
        """(key, label) of the rows table's columns, the sorted one marked."""
        title = view.METRIC_TITLES[self.metric]
        other = self._other_title()
        columns = [("row", "row"), *((m, view.METRIC_TITLES[m]) for m in view.METRICS)]
        if other is not None:
            columns += [("other", f"{'vs' if self.other is not None else 'base'} {title}"), ("gap", f"Δ {title}")]
        columns.append(("flags", "flags"))
        arrow = " ▼" if self.descending else " ▲"
        return [(key, label + arrow if key == self.sort_key else label) for key, label in columns]

    def _show_rows(self, top: bool = False) -> None:
        """Fill the rows table in the current order; the cursor stays on its row, or goes to the top (a new
        sort: its first rows are what the user asked to see)."""
        table: DataTable[Any] = self.query_one("#eval-table", DataTable)
        kept = None if top else self._cursor_row()
        table.clear(columns=True)
        other = self._other_scores()
        if self.loaded is None:
            self.lines = []
            return
        if other is None and self.sort_key in ("other", "gap"):
            self.sort_key, self.descending = "row", False
        for key, label in self._columns():
            table.add_column(label, key=key)
        self.lines = view.sort_lines(view.row_lines(self.loaded.report, other), self.sort_key, self.metric,
                                     self.descending)
        for line in self.lines:
            cells: list[Any] = list(view.row_cells(line, self.metric))
            if line.other is not None:
                cells[6] = gap_text(cells[6])
            if line.flags:
                cells[-1] = Text(cells[-1], style="yellow")
            table.add_row(*cells, key=str(line.row))
        if kept is not None and kept in {line.row for line in self.lines}:
            table.move_cursor(row=table.get_row_index(str(kept)), animate=False)
        self._show_preview()

    @on(DataTable.RowHighlighted, "#eval-table")
    def _highlighted(self) -> None:
        self._show_preview()

    def _show_preview(self) -> None:
        """The highlighted row's texts beside the scores (80x24: its tuned summary on one line)."""
        preview = self.query_one("#eval-preview", Static)
        row = self._cursor_row()
        result = next((r for r in self.loaded.report.rows if r.record.row == row), None) if self.loaded else None
        if result is None:
            preview.update("")
            return
        record = result.record
        tuned = record.outputs["tuned"].text if "tuned" in record.outputs else ""
        if self._compact:
            preview.update(Text.assemble((f"row {row} ", "bold"), ("tuned ", "bold cyan"), tuned.replace("\n", " ")))
            return
        parts: list[Text | str] = [Text.assemble((f"row {row}", "bold"), (" · enter shows it whole", "dim"))]
        sides = [("reference", "bold", record.reference), ("tuned", "bold cyan", tuned)]
        if self.other is not None:
            theirs = next((r.record for r in self.other.report.rows if r.record.row == row), None)
            text = theirs.outputs["tuned"].text if theirs is not None and "tuned" in theirs.outputs else "–"
            sides.append((f"vs {self.other.plan.run}", "bold magenta", text))
        elif "base" in record.outputs:
            sides.append(("base", "bold yellow", record.outputs["base"].text))
        for title, style, body in sides:
            parts.append(Text.assemble("\n", (title, style), "\n", body or Text("(empty)", style="dim italic")))
        preview.update(Text.assemble(*parts))

    def _cursor_row(self) -> int | None:
        table: DataTable[Any] = self.query_one("#eval-table", DataTable)
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return int(str(row_key.value))

    def rows_shown(self) -> list[int]:
        """The row numbers in the table, top to bottom (tests)."""
        return [line.row for line in self.lines]

    # -- sorting ----------------------------------------------------------------------------------
    def _sort(self, key: view.SortKey, descending: bool | None = None) -> None:
        self.sort_key = key
        self.descending = view.default_descending(key) if descending is None else descending
        self._show_rows(top=True)

    def action_sort(self) -> None:
        self._sort(view.next_sort_key(self.sort_key, self._other_scores() is not None))

    def action_sort_gap(self) -> None:
        if self._other_scores() is None:
            self._say("No gap to sort by: this eval has no base model. Compare it with another run's eval (c).",
                      "yellow")
            return
        self._sort("gap", not self.descending if self.sort_key == "gap" else None)

    def action_reverse(self) -> None:
        self._sort(self.sort_key, not self.descending)

    def action_metric(self) -> None:
        metrics = view.METRICS
        self.metric = metrics[(metrics.index(self.metric) + 1) % len(metrics)]
        self._show_rows()

    @on(DataTable.HeaderSelected, "#eval-table")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == "flags":
            return
        chosen = next(k for k in view.SORT_KEYS if k == key)
        self._sort(chosen, not self.descending if chosen == self.sort_key else None)

    # -- comparing --------------------------------------------------------------------------------
    def action_compare(self) -> None:
        select = self.query_one("#eval-against", Select)
        select.focus()
        select.action_show_overlay()

    # -- one row ----------------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#eval-table")
    def _open_row(self, event: DataTable.RowSelected) -> None:
        if self.loaded is None:
            return
        by_row = {r.record.row: r for r in self.loaded.report.rows}
        results = [by_row[line.row] for line in self.lines]
        index = next(i for i, line in enumerate(self.lines) if str(line.row) == str(event.row_key.value))
        other = {r.record.row: r for r in self.other.report.rows} if self.other is not None else {}
        self.app.push_screen(RowView(results, index, other, self.other.plan.run if self.other is not None else None))

    # -- making an eval ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._request is not None

    def _buttons(self) -> None:
        info = self.selected_info()
        self.query_one("#eval-start", Button).disabled = self.running
        self.query_one("#eval-stop", Button).disabled = not self.running
        self.query_one("#eval-resume", Button).disabled = self.running or info is None or info.complete

    def _say(self, text: str, style: str = "") -> None:
        status = self.query_one("#eval-status", Static)
        status.update(Text(text, style=style))
        status.display = bool(text)

    @on(Button.Pressed, "#eval-start")
    def action_start(self) -> None:
        if self.run_dir is None:
            self._say("No run to evaluate: train one (3), or open one in Save/Runs (5).", "red")
            return
        if self.running:
            self._say("An eval is running: x stops it.", "yellow")
            return
        try:
            rows = int(self.query_one("#eval-rows", Input).value)
        except ValueError:
            rows = -1
        if rows < 0:
            self._say("rows: a whole number, 0 for all the held-out rows.", "red")
            return
        base = self.query_one("#eval-base", StateSwitch).value
        self._begin(rq.Evaluate(run_dir=self.run_dir, rows=rows, base=base), 0)

    @on(Button.Pressed, "#eval-resume")
    def action_resume(self) -> None:
        info = self.selected_info()
        if self.run_dir is None or info is None or info.complete or self.running:
            self._say("Pick an incomplete eval of this run to resume." if not self.running
                      else "An eval is running: x stops it.", "yellow")
            return
        self._begin(rq.Evaluate(run_dir=self.run_dir, rows=info.rows_total, base=info.base,
                                checkpoint=info.checkpoint, resume=True, name=info.name), info.rows_done)

    def _begin(self, request: rq.Evaluate, done_before: int) -> None:
        self._started = time.monotonic()
        self._done_before = done_before
        bar = self.query_one("#eval-progress", ProgressBar)
        bar.add_class("-shown")
        bar.update(total=None, progress=0)
        self._say("Starting: loading the run's weights, then generating the first batch…")
        self._request = "starting"  # until the bridge gives the id (an error may come back before it does)
        rid = self.engine.request(request, on_answer=self._finished, on_error=self._failed, on_stream=self._progress)
        if self._request == "starting":
            self._request = rid
        self._buttons()

    def _progress(self, event: Event) -> None:
        if not isinstance(event, EvalProgress):
            return
        self.query_one("#eval-progress", ProgressBar).update(total=event.total, progress=event.done)
        self._say(view.progress_line(event.done, event.total, event.done - self._done_before,
                                     time.monotonic() - self._started))

    def _finished(self, answer: rq.EvalFinished) -> None:
        self._request = None
        name = Path(answer.folder).name
        self.query_one("#eval-progress", ProgressBar).update(total=max(answer.rows_total, 1), progress=answer.rows_done)
        if answer.complete:
            self._say(f"Finished: {answer.rows_done}/{answer.rows_total} rows, opened {name}.", "green")
        else:
            self._say(f"Stopped with {answer.rows_done}/{answer.rows_total} rows kept in {name}: r resumes it.",
                      "yellow")
        self._open_after = answer.folder
        self._buttons()
        self.refresh_evals()

    def _failed(self, error: Error) -> None:
        self._request = None
        self.query_one("#eval-progress", ProgressBar).update(total=None, progress=0)
        self._say(f"{error.message} {error.hint}".strip(), "red")
        self._buttons()
        self.refresh_evals()

    @on(Button.Pressed, "#eval-stop")
    def action_stop(self) -> None:
        if self._request is None:
            self._say("No eval is running.", "yellow")
            return
        self.engine.request(rq.Cancel(target=self._request))
        self._say("Stopping after the batch being generated (the rows finished are kept)…", "yellow")
