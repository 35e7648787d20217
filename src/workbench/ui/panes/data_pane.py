"""Data pane: the exact text and tokens the model is trained on, row by row, and statistics over the
whole dataset (computed by the engine in the background, with progress)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, Select, Static

from workbench.config import ConfigError, config_to_dict, set_field
from workbench.data import INVALID_KINDS, DatasetStats
from workbench.protocol import Error, Event, Result, StatsProgress
from workbench.templates import TEMPLATE_NAMES
from workbench.tokenview import legend, sample_counts, sample_text
from workbench.ui.widgets.focus_scroll import FocusScroll


class DataPane(Horizontal):
    BINDINGS = [
        ("n", "next_row", "Next row"),
        ("p", "previous_row", "Previous row"),
        ("g", "jump", "Jump to row"),
        ("s", "stats", "Statistics"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.position = 0
        self.rows_total = 0
        self.stats: DatasetStats | None = None
        self._stats_request: str | None = None
        self._preview_request: str | None = None

    def compose(self) -> ComposeResult:
        config = self.app.config  # type: ignore[attr-defined]
        with Vertical(id="data-left"):
            with Horizontal(id="data-pickers"):
                yield Input(config.data.source, id="data-source", placeholder="file or hub id")
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
            table: DataTable[str] = DataTable(id="stats-issues", cursor_type="row", zebra_stripes=True)
            yield table

    def on_mount(self) -> None:
        table = self.query_one("#stats-issues", DataTable)
        table.add_columns("row", "problem", "detail")

    def engine_ready(self) -> None:
        self.show_row(self.position)
        self.action_stats()

    def config_changed(self) -> None:
        config = self.app.config  # type: ignore[attr-defined]
        for wid, value in (("#data-source", config.data.source), ("#data-input-column", config.data.input_column),
                           ("#data-output-column", config.data.output_column)):
            box = self.query_one(wid, Input)
            if box.value != value and not box.has_focus:
                with box.prevent(Input.Changed):
                    box.value = value
        select = self.query_one("#data-template", Select)
        if select.value != config.data.template:
            with select.prevent(Select.Changed):
                select.value = config.data.template
        if self.app.engine_ready:  # type: ignore[attr-defined]
            self.show_row(self.position)
            self.action_stats()

    # -- pickers write to the shared config ----------------------------------------------------
    def _set(self, name: str, value: Any) -> None:
        try:
            new = set_field(self.app.config, "data", name, value)  # type: ignore[attr-defined]
        except ConfigError as exc:
            self.query_one("#data-counts", Static).update(Text(str(exc).replace("form: ", ""), style="red"))
            return
        self.app.apply_config(new, data_affecting=True)  # type: ignore[attr-defined]

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
        if event.value != self.app.config.data.template:  # type: ignore[attr-defined]
            self._set("template", event.value)

    # -- the row viewer ---------------------------------------------------------------------------
    def _args(self) -> dict[str, Any]:
        return {"config": config_to_dict(self.app.config)}  # type: ignore[attr-defined]

    def show_row(self, position: int, by_file_row: int | None = None) -> None:
        args = self._args()
        if by_file_row is not None:
            args["rows"] = [by_file_row]
        else:
            args["positions"] = [max(0, position)]
        self._preview_request = self.app.bridge.request(  # type: ignore[attr-defined]
            "preview", args, on_result=self._on_preview, on_error=self._on_error)

    def _on_preview(self, result: Result) -> None:
        data = result.data
        self.rows_total = int(data.get("rows_total", 0))
        items = data.get("items") or []
        if not items:
            self.query_one("#data-sample", Static).update("No such row.")
            return
        item = items[0]
        self.position = int(item["position"])
        self.query_one("#data-position", Label).update(
            f"row {self.position + 1} of {self.rows_total} (file row {item['row']})")
        max_len = int(data.get("max_seq_length", 0))
        sample = item.get("sample")
        if sample is None:
            self.query_one("#data-counts", Static).update(Text(item.get("issue") or "invalid row", style="bold red"))
            self.query_one("#data-sample", Static).update(
                Text("This row cannot be trained on; statistics list every such row.", style="red"))
            return
        self.query_one("#data-counts", Static).update(sample_counts(sample, max_len))
        self.query_one("#data-sample", Static).update(sample_text(sample))

    def _on_error(self, error: Error) -> None:
        self.query_one("#data-counts", Static).update(Text(f"{error.message} {error.hint}".strip(), style="bold red"))
        self.query_one("#data-sample", Static).update("")

    def action_next_row(self) -> None:
        if self.position + 1 < max(1, self.rows_total):
            self.show_row(self.position + 1)

    def action_previous_row(self) -> None:
        if self.position > 0:
            self.show_row(self.position - 1)

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
        self.show_row(min(max(wanted, 1), max(self.rows_total, 1)) - 1)

    # -- statistics -------------------------------------------------------------------------------
    def action_stats(self) -> None:
        if self._stats_request:
            self.app.bridge.request("cancel", {"target": self._stats_request})  # type: ignore[attr-defined]
        self.query_one("#stats-progress", ProgressBar).update(total=100, progress=0)
        self.query_one("#stats-summary", Static).update("Computing statistics over every row…")
        self._stats_request = self.app.bridge.request(  # type: ignore[attr-defined]
            "dataset_stats", self._args(), on_result=self._on_stats, on_error=self._on_stats_error,
            on_stream=self._on_stats_progress)

    def _on_stats_progress(self, event: Event) -> None:
        if isinstance(event, StatsProgress):
            self.query_one("#stats-progress", ProgressBar).update(total=event.total, progress=event.done)

    def _on_stats_error(self, error: Error) -> None:
        self._stats_request = None
        self.query_one("#stats-summary", Static).update(Text(f"{error.message} {error.hint}", style="red"))

    def _on_stats(self, result: Result) -> None:
        self._stats_request = None
        stats = DatasetStats.from_dict(result.data)
        self.stats = stats
        bar = self.query_one("#stats-progress", ProgressBar)
        bar.update(total=max(stats.valid_rows, 1), progress=max(stats.valid_rows, 1))
        self.query_one("#stats-summary", Static).update("\n".join(stats.summary_lines()))
        peak = max((c for _, _, c in stats.histogram), default=0)
        lines = [f"[b]tokens per sample[/b] (max_seq_length {stats.max_seq_length})"]
        for lo, hi, count in stats.histogram:
            width = round(24 * count / peak) if peak else 0
            over = lo > stats.max_seq_length
            lines.append(f"{lo:>6}-{hi:<6} [{'red' if over else 'cyan'}]{'█' * width}[/] {count}")
        self.query_one("#stats-histogram", Static).update("\n".join(lines))
        table = self.query_one("#stats-issues", DataTable)
        table.clear()
        for issue in stats.issues:
            style = "red" if issue.kind in INVALID_KINDS else "yellow"
            table.add_row(str(issue.row), Text(issue.kind.replace("_", " "), style=style), issue.detail,
                          key=f"{issue.row}-{issue.kind}")

    @on(DataTable.RowSelected, "#stats-issues")
    def _open_issue_row(self, event: DataTable.RowSelected) -> None:
        row = int(str(event.row_key.value).split("-", 1)[0])
        self.show_row(0, by_file_row=row)
