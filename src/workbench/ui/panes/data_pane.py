"""Data pane: the exact text and tokens the model is trained on, row by row, and statistics over the
whole dataset (computed by the engine in the background, with progress)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, Select, Static

from workbench import requests as rq
from workbench.config import ConfigError, RunConfig, set_field
from workbench.data import INVALID_KINDS, DatasetStats
from workbench.formatting import histogram_lines
from workbench.protocol import Error, Event, StatsProgress
from workbench.templates import TEMPLATE_NAMES
from workbench.tokenview import legend, sample_counts, sample_text
from workbench.ui.bridge import EngineBridge
from workbench.ui.messages import ConfigEdited
from workbench.ui.widgets.focus_scroll import FocusScroll


def data_view(config: RunConfig) -> tuple[Any, ...]:
    """What the pane shows depends on these fields only: a change elsewhere does not re-render it."""
    d, m = config.data, config.model
    return (m.name, m.max_seq_length, d.source, d.split, d.input_column, d.output_column, d.template,
            d.instruction, d.train_on_responses_only)


class DataPane(Horizontal):
    BINDINGS = [
        ("n", "next_row", "Next row"),
        ("p", "previous_row", "Previous row"),
        ("g", "jump", "Jump to row"),
        ("s", "stats", "Statistics"),
    ]

    config: reactive[RunConfig] = reactive(RunConfig, always_update=True, init=False)
    engine_ready: reactive[bool] = reactive(False, init=False)

    def __init__(self, engine: EngineBridge, config: RunConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.set_reactive(DataPane.config, config)
        self.position = 0
        self.rows_total = 0
        self.stats: DatasetStats | None = None
        self._shown_view = data_view(config)
        # Answers arrive in any order (each request runs on an engine thread of its own): only the
        # newest request's answer is shown. Numbered here, compared when the answer comes.
        self._preview_seq = 0
        self._stats_seq = 0
        self._stats_request: str | None = None

    def compose(self) -> ComposeResult:
        config = self.config
        with Vertical(id="data-left"):
            with Horizontal(id="data-pickers"):
                yield Input(config.data.source, id="data-source", placeholder="file or hub id",
                            tooltip=config.data.source)
                yield Input(config.data.input_column, id="data-input-column", placeholder="input column")
                yield Input(config.data.output_column, id="data-output-column", placeholder="output column")
                yield Select([(t, t) for t in TEMPLATE_NAMES], value=config.data.template, allow_blank=False,
                             id="data-template")
            with Horizontal(id="data-nav"):
                yield Button("◀ Prev", id="data-prev")
                yield Button("Next ▶", id="data-next")
                yield Input("", id="data-jump", placeholder="row #", type="integer")
                yield Label("", id="data-position")
            yield Static(legend(), id="data-legend")
            yield Static("", id="data-counts")
            with FocusScroll(id="data-sample-scroll"):
                yield Static("Waiting for the engine…", id="data-sample")
        with Vertical(id="data-right"):
            yield Static("[b]Statistics[/b]", id="stats-title")
            yield ProgressBar(total=100, show_eta=False, id="stats-progress")
            yield Static("", id="stats-summary")
            yield Static("", id="stats-histogram")
            yield DataTable(id="stats-issues", cursor_type="row", zebra_stripes=True)
            yield Static("", id="stats-issue-detail")

    def on_mount(self) -> None:
        self.query_one("#stats-issues", DataTable).add_columns("row", "problem", "detail")

    def watch_engine_ready(self, ready: bool) -> None:
        if ready:
            self.show_row(self.position)
            self.action_stats()

    def watch_config(self, config: RunConfig) -> None:
        for wid, value in (("#data-source", config.data.source), ("#data-input-column", config.data.input_column),
                           ("#data-output-column", config.data.output_column)):
            box = self.query_one(wid, Input)
            if box.value != value and not box.has_focus:
                with box.prevent(Input.Changed):
                    box.value = value
        self.query_one("#data-source", Input).tooltip = config.data.source
        select = self.query_one("#data-template", Select)
        if select.value != config.data.template:
            with select.prevent(Select.Changed):
                select.value = config.data.template
        view = data_view(config)
        if view != self._shown_view and self.engine_ready:
            self._shown_view = view
            self.show_row(self.position)
            self.action_stats()

    # -- pickers edit the config (up to the App, back down through `config`) ---------------------
    def _set(self, name: str, value: Any) -> None:
        try:
            new = set_field(self.config, "data", name, value)
        except ConfigError as exc:
            self.query_one("#data-counts", Static).update(Text(str(exc).replace("form: ", ""), style="red"))
            return
        self.post_message(ConfigEdited(new, data_affecting=True))

    @on(Input.Submitted, "#data-source")
    def _source(self, event: Input.Submitted) -> None:
        self.position = 0
        self._set("source", event.value)

    @on(Input.Submitted, "#data-input-column")
    def _in_col(self, event: Input.Submitted) -> None:
        self._set("input_column", event.value)

    @on(Input.Submitted, "#data-output-column")
    def _out_col(self, event: Input.Submitted) -> None:
        self._set("output_column", event.value)

    @on(Select.Changed, "#data-template")
    def _template(self, event: Select.Changed) -> None:
        if event.value != self.config.data.template:
            self._set("template", event.value)

    # -- the row viewer ---------------------------------------------------------------------------
    def show_row(self, position: int, by_file_row: int | None = None) -> None:
        self._preview_seq += 1
        seq = self._preview_seq
        request = (rq.Preview(config=self.config, file_rows=[by_file_row]) if by_file_row is not None
                   else rq.Preview(config=self.config, positions=[max(0, position)]))
        self.engine.request(request, on_answer=lambda answer: self._on_preview(seq, answer),
                            on_error=lambda error: self._on_preview_error(seq, error))

    def _on_preview(self, seq: int, answer: rq.PreviewAnswer) -> None:
        if seq != self._preview_seq:
            return  # an older request answered late: a newer row is on its way
        self.rows_total = answer.rows_total
        if not answer.items:
            self.query_one("#data-sample", Static).update("No such row.")
            return
        item = answer.items[0]
        self.position = item.position
        self.query_one("#data-position", Label).update(
            f"row {self.position + 1} of {self.rows_total} (file row {item.row})")
        if item.sample is None:
            self.query_one("#data-counts", Static).update(Text(item.issue or "invalid row", style="bold red"))
            self.query_one("#data-sample", Static).update(
                Text("This row cannot be trained on; statistics list every such row.", style="red"))
            return
        sample = asdict(item.sample)
        self.query_one("#data-counts", Static).update(sample_counts(sample, answer.max_seq_length))
        self.query_one("#data-sample", Static).update(sample_text(sample))

    def _on_preview_error(self, seq: int, error: Error) -> None:
        if seq != self._preview_seq:
            return
        self.query_one("#data-counts", Static).update(Text(f"{error.message} {error.hint}".strip(), style="bold red"))
        self.query_one("#data-sample", Static).update("")

    def _say(self, text: str) -> None:
        self.query_one("#data-position", Label).update(Text(text, style="yellow"))

    def action_next_row(self) -> None:
        if self.position + 1 < self.rows_total:
            self.show_row(self.position + 1)
        elif self.rows_total:
            self._say(f"row {self.position + 1} is the last of {self.rows_total}")

    def action_previous_row(self) -> None:
        if self.position > 0:
            self.show_row(self.position - 1)
        else:
            self._say("this is the first row")

    def action_jump(self) -> None:
        self.query_one("#data-jump", Input).focus()

    @on(Button.Pressed, "#data-next")
    def _next(self) -> None:
        self.action_next_row()

    @on(Button.Pressed, "#data-prev")
    def _prev(self) -> None:
        self.action_previous_row()

    @on(Input.Submitted, "#data-jump")
    def _jump(self, event: Input.Submitted) -> None:
        try:
            wanted = int(event.value)
        except ValueError:
            return
        if not 1 <= wanted <= max(self.rows_total, 1):
            self._say(f"there is no row {wanted}: the dataset has rows 1 to {self.rows_total}")
            return
        self.show_row(wanted - 1)

    # -- statistics -------------------------------------------------------------------------------
    def action_stats(self) -> None:
        if self._stats_request:
            self.engine.request(rq.Cancel(target=self._stats_request))
        self._stats_seq += 1
        seq = self._stats_seq
        self.query_one("#stats-progress", ProgressBar).update(total=100, progress=0)
        self.query_one("#stats-summary", Static).update("Computing statistics over every row…")
        self._stats_request = self.engine.request(
            rq.Statistics(config=self.config), on_answer=lambda answer: self._on_stats(seq, answer),
            on_error=lambda error: self._on_stats_error(seq, error),
            on_stream=lambda event: self._on_stats_progress(seq, event))

    def _on_stats_progress(self, seq: int, event: Event) -> None:
        if seq == self._stats_seq and isinstance(event, StatsProgress):
            self.query_one("#stats-progress", ProgressBar).update(total=event.total, progress=event.done)

    def _on_stats_error(self, seq: int, error: Error) -> None:
        if seq != self._stats_seq:
            return
        self._stats_request = None
        self.query_one("#stats-summary", Static).update(Text(f"{error.message} {error.hint}", style="red"))

    def _on_stats(self, seq: int, answer: rq.StatsAnswer) -> None:
        if seq != self._stats_seq:
            return  # cancelled for a newer request: its partial result is not what the user asked for
        self._stats_request = None
        stats = self.stats = answer.stats
        bar = self.query_one("#stats-progress", ProgressBar)
        bar.update(total=max(stats.valid_rows, 1), progress=max(stats.valid_rows, 1))
        self.query_one("#stats-summary", Static).update("\n".join(stats.summary_lines()))
        lines = [f"[b]tokens per sample[/b] (max_seq_length {stats.max_seq_length})",
                 *histogram_lines(stats.histogram, 24, stats.max_seq_length)]
        self.query_one("#stats-histogram", Static).update("\n".join(lines))
        table = self.query_one("#stats-issues", DataTable)
        table.clear()
        for issue in stats.issues:
            style = "red" if issue.kind in INVALID_KINDS else "yellow"
            table.add_row(str(issue.row), Text(issue.kind.replace("_", " "), style=style), issue.detail,
                          key=f"{issue.row}-{issue.kind}")

    @on(DataTable.RowHighlighted, "#stats-issues")
    def _issue_detail(self, event: DataTable.RowHighlighted) -> None:
        # The table's columns cut long details off: the highlighted row's whole text shows below it.
        if self.stats is None or event.row_key.value is None:
            return
        row, kind = str(event.row_key.value).split("-", 1)
        issue = next((i for i in self.stats.issues if str(i.row) == row and i.kind == kind), None)
        self.query_one("#stats-issue-detail", Static).update(issue.describe() if issue else "")

    @on(DataTable.RowSelected, "#stats-issues")
    def _open_issue_row(self, event: DataTable.RowSelected) -> None:
        row = int(str(event.row_key.value).split("-", 1)[0])
        self.show_row(0, by_file_row=row)
