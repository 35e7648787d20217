"""Config pane: every field of the run configuration as a form, grouped by section, one line per field
(its help beside it on a wide terminal, under it for the focused field on a narrow one), validated as
typed (the error under the field), marked where it differs from the file on disk, narrowed by a filter
(`/`), and load / save / save-as of TOML files."""

from __future__ import annotations

import json
import typing
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Button, Input, Select, Static, Switch

from workbench.config import (
    ConfigError,
    FieldChange,
    RunConfig,
    all_fields,
    config_diff,
    load_config,
    save_config,
    set_field,
)
from workbench.runs import is_run_record
from workbench.ui.messages import ConfigEdited, ConfigFileLoaded, ConfigFileSaved, ConfigValidity
from workbench.ui.widgets.deferred import Deferred
from workbench.ui.widgets.focus_scroll import FocusScroll
from workbench.ui.widgets.one_line import OneLine
from workbench.ui.widgets.state_switch import StateSwitch

if TYPE_CHECKING:
    from workbench import requests as rq
    from workbench.protocol import Error
    from workbench.ui.bridge import EngineBridge

SECTIONS = ("model", "lora", "data", "training", "eval", "output")
# Built just after the first frame, which shows the model section: first paint pays for every widget
# composed, and these are about 200 of the form's 290 (the LoRA section alone, 7 rows with two Selects,
# cost ~65 ms on a 2-core machine). On a tall terminal its rows appear a frame later; below 50 rows
# they are below the fold anyway.
DEFERRED_SECTIONS = ("lora", "data", "training", "eval", "output")
FORECAST_AFTER_S = 0.6
"""Quiet time after the last edit before the memory forecast is asked again (typing a number is several edits)."""
# Fields whose change alters what the Data pane shows.
DATA_FIELDS = {("model", "name"), ("model", "max_seq_length")} | {
    ("data", f) for f in ("source", "split", "input_column", "output_column", "template", "instruction",
                          "train_on_responses_only")
}
CHANGES_SHOWN = 8
"""Lines of the changes list (`d`); the rest are counted, and every changed row is marked anyway."""

_SAME: Any = object()
"""A row's `saved` when its value is the file's (None is a value a field can have)."""


def _literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return None


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def shown(value: Any) -> str:
    """A value as the TOML file spells it (strings quoted, so that an empty one is visible)."""
    if value is None:
        return "(not set)"
    return json.dumps(value, ensure_ascii=False)


def matches(terms: list[str], haystack: str) -> bool:
    return all(term in haystack for term in terms)


class FieldRow(Vertical):
    """One field on one line: the label (● when it differs from the file), the editor, and the help cut
    to a line (whole for the focused field). Under the line, mounted when first needed: the error, and
    on a narrow terminal, where the help has no room beside the editor, the focused field's help."""

    def __init__(self, section: str, name: str, annotation: Any, help_text: str, value: Any) -> None:
        super().__init__(id=f"row-{section}-{name}")
        # A docstring's line breaks are the source's, not the form's: the help is one line until focused.
        self.section, self.name_, self.annotation = section, name, annotation
        self.help_text = " ".join(help_text.split())
        self.field = f"{section}.{name}"
        self.haystack = f"{self.field} {help_text}".lower()
        """What the filter searches: the field's name with its section, and its help."""
        self.value = value
        """The value the editor shows, or the last valid one while it holds an invalid edit."""
        self.saved: Any = _SAME
        """The file's value, where it differs from the config's."""
        self.editor: Input | Select[Any] | Switch | None = None
        self._label_widget: OneLine | None = None
        self._help_widgets: list[Static] = []

    def compose(self) -> ComposeResult:
        editor_id = f"f-{self.section}-{self.name_}"
        self._label_widget = OneLine(self._label(), classes="field-label")
        self._label_widget.tooltip = self.help_text  # for the mouse, on a narrow screen where the help is folded
        choices = _literal_choices(self.annotation)
        if self.annotation is bool:
            self.editor = StateSwitch(value=bool(self.value), id=editor_id, classes="field-editor")
        elif choices:
            self.editor = Select([(str(c), c) for c in choices], value=self.value, allow_blank=False, id=editor_id,
                                 classes="field-editor", compact=True)
        else:
            self.editor = Input(_to_text(self.value), id=editor_id, classes="field-editor", compact=True)
        self._help_widgets = [Static(self._help(), classes="field-help", markup=False)]
        with Horizontal(classes="field-line"):
            yield self._label_widget
            yield self.editor
            yield self._help_widgets[0]

    def _label(self) -> Content:
        if self.saved is _SAME:
            return Content("  " + self.name_)
        return Content.assemble(("● ", "$warning"), self.name_)

    def _help(self) -> Content:
        if self.saved is _SAME:
            return Content(self.help_text)
        return Content.assemble((f"file: {shown(self.saved)}", "$warning"), " · ", self.help_text)

    def show(self, value: Any, reset: bool = False) -> None:
        """Show the config's `value`. A row whose value did not change keeps what it shows (an invalid
        edit stays, with its error, until it is fixed), and the focused editor is never rewritten under
        the user's typing; `reset` (a file was loaded) rewrites the row whatever it holds."""
        editor = self.editor
        if editor is None or (not reset and (value == self.value or editor.has_focus)):
            return
        self.value = value
        with editor.prevent(Input.Changed, Switch.Changed, Select.Changed):
            if isinstance(editor, Switch):
                editor.value = bool(value)
            elif isinstance(editor, Select):
                editor.value = value
            else:
                editor.value = _to_text(value)
        self.show_error("")

    def show_error(self, message: str) -> None:
        found = self.query(f"#err-{self.section}-{self.name_}")
        if found:
            found.first(Static).update(message)
            found.first(Static).display = bool(message)
        elif message:
            error = Static(message, classes="field-error", id=f"err-{self.section}-{self.name_}", markup=False)
            self.mount(error, after=self.query_one(".field-line"))  # right under the field, above its help
        self.set_class(bool(message), "-invalid")

    def set_saved(self, saved: Any) -> None:
        """The file's value (`_SAME` when it is the config's): the ● mark and the help line say it."""
        if saved is self.saved or (saved is not _SAME and self.saved is not _SAME and saved == self.saved):
            return
        self.saved = saved
        self.set_class(saved is not _SAME, "-changed")
        if self._label_widget is not None:  # else compose draws it
            self._label_widget.show(self._label())
        # A help line is one row, clipped, except the focused field's (whole, wrapped): only then can the
        # new text change its height, which needs a layout.
        focused = self.has_class("-focused")
        for help_widget in self._help_widgets:
            help_widget.update(self._help(), layout=focused)

    def focus_editor(self) -> None:
        if self.editor is not None:
            self.editor.focus()

    # The focused field's help shows whole (workbench.tcss). A class on this row, not `:focus-within`,
    # so that a focus move restyles the two rows concerned and not the whole form.
    def on_descendant_focus(self, _event: events.DescendantFocus) -> None:
        self.add_class("-focused")
        # A change of text-wrap repaints but does not lay out: the help's new height needs asking for.
        self._help_widgets[0].refresh(layout=True)
        if len(self._help_widgets) == 1:  # the help under the line, shown on a narrow screen only
            below = Static(self._help(), classes="field-help-below", markup=False)
            self._help_widgets.append(below)
            self.mount(below)

    def on_descendant_blur(self, _event: events.DescendantBlur) -> None:
        self.remove_class("-focused")
        self._help_widgets[0].refresh(layout=True)


class ConfigSection(Vertical):
    """One section of the form (model, lora, ...): its title and a row per field."""

    DEFAULT_CSS = "ConfigSection { height: auto; }"

    def __init__(self, section: str, values: BaseModel, id: str | None = None) -> None:
        super().__init__(id=id)
        self.section = section
        self.values = values
        self.rows: list[FieldRow] = []

    def compose(self) -> ComposeResult:
        model = self.values
        yield Static(f"[b]{self.section}[/b]  {RunConfig.model_fields[self.section].description or ''}",
                     classes="section-title")
        self.rows = [FieldRow(self.section, name, info.annotation, info.description or "", getattr(model, name))
                     for name, info in type(model).model_fields.items()]
        yield from self.rows


class ConfigPane(Vertical):
    """The form. It edits a copy of the App's config: each valid edit goes up as `ConfigEdited`, and the
    App's config comes back down through `config`. It reads the file at `config_path` itself, to mark
    the fields that differ from it."""

    BINDINGS = [
        ("ctrl+s", "save", "Save config"),
        Binding("slash", "find", "Find field", key_display="/"),
        ("d", "changes", "Changes"),
        # Not in the key bar (it is full at 80 columns): the help (F1) and the palette (ctrl+p) list them.
        Binding("f", "profile('fits')", "Fits profile", show=False),
        Binding("F", "profile('fast')", "Fast profile", show=False),
        # Only where there is a filter to clear (check_action): elsewhere esc is the App's "Leave field".
        Binding("escape", "clear_filter", "All fields"),
    ]

    config: reactive[RunConfig] = reactive(RunConfig, always_update=True, init=False)
    config_path: reactive[Path] = reactive(Path("config.toml"), init=False)
    engine_ready: reactive[bool] = reactive(False, init=False)

    def __init__(self, config: RunConfig, config_path: Path, engine: EngineBridge | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.forecast: rq.MemoryForecastAnswer | None = None
        self._forecast_seq = 0
        self._forecast_timer: Any = None
        self.set_reactive(ConfigPane.config, config)
        self.set_reactive(ConfigPane.config_path, config_path)
        self._invalid: tuple[str, ...] = ()
        self._sections: dict[str, ConfigSection] = {}
        self._saved: RunConfig | None = None
        """The config in the file at config_path, as last read or written; None when it has none."""
        self._saved_note = ""
        self._changes: list[FieldChange] = []
        self._filter: list[str] = []
        self._reset_pending = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="config-bar"):
            yield Input(str(self.config_path), id="config-path", placeholder="configs/name.toml", compact=True)
            yield Button("Load", id="config-load", compact=True)
            yield Button("Save", id="config-save", variant="primary", compact=True)
            yield Button("Save as", id="config-save-as", compact=True)
        # The filter box (/) and the changes list (d) are mounted when first asked for: nothing the user
        # has not asked for is built before the first paint.
        with Horizontal(id="config-status"):
            yield OneLine("", id="config-summary")
        yield Static("", id="config-message")
        yield Static("memory: forecast when the engine is ready", id="config-forecast")
        with FocusScroll(id="config-form"):
            for section in SECTIONS:
                if section in DEFERRED_SECTIONS:
                    # built from the config as it is when the section is mounted, not as it is now
                    yield Deferred(partial(self._section, section))
                else:
                    yield self._section(section)

    def _section(self, section: str) -> ConfigSection:
        built = ConfigSection(section, getattr(self.config, section), id=f"section-{section}")
        self._sections[section] = built
        return built

    def _rows(self) -> list[FieldRow]:
        # Kept, not queried: a query walks the form's ~300 widgets, on every edit.
        return [row for section in self._sections.values() for row in section.rows]

    def field_row(self, field: str) -> FieldRow | None:
        """The row of a field ("lora.r"), once its section is built."""
        return next((row for row in self._rows() if row.field == field), None)

    def on_mount(self) -> None:
        self.call_after_refresh(self._read_saved)  # a file read and a validation: after the first frame

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # False hides a key from the key bar and passes the key on (None would show it dimmed).
        focused = self.screen.focused
        if action == "clear_filter":
            # esc in the filter box, or on the form while a filter narrows it; in a field, esc leaves it
            return focused is not None and (focused.id == "config-filter"
                                            or (focused.id == "config-form" and bool(self._filter)))
        # In a text box / and d are typed, not keys: the key bar must not offer them there.
        return not (action in ("find", "changes", "profile") and isinstance(focused, Input))

    def on_deferred_built(self, message: Deferred.Built) -> None:
        # Not stopped: the App counts the built sections too.
        if isinstance(message.widget, ConfigSection):
            self._update_diff()
            self._apply_filter()

    def watch_config(self) -> None:
        reset, self._reset_pending = self._reset_pending, False
        self.refresh_fields(reset=reset)
        self._update_diff()
        self._forecast_soon()

    # -- the memory forecast ----------------------------------------------------------------------
    def watch_engine_ready(self, ready: bool) -> None:
        if ready:
            self._ask_forecast()

    def _forecast_soon(self) -> None:
        if not self.engine_ready:
            return
        if self._forecast_timer is not None:
            self._forecast_timer.stop()
        self._forecast_timer = self.set_timer(FORECAST_AFTER_S, self._ask_forecast)

    def _ask_forecast(self) -> None:
        from workbench import requests as rq

        if self.engine is None:
            return
        self._forecast_seq += 1
        seq = self._forecast_seq
        self.engine.request(rq.MemoryForecast(config=self.config),
                            on_answer=lambda answer: self._on_forecast(seq, answer),
                            on_error=lambda error: self._on_forecast_error(seq, error))

    def _on_forecast(self, seq: int, answer: rq.MemoryForecastAnswer) -> None:
        if seq != self._forecast_seq:
            return  # an edit since: a newer forecast is on its way
        self.forecast = answer
        line = self.query_one("#config-forecast", Static)
        line.update(forecast_text(answer))
        line.tooltip = f"{answer.breakdown}; longest sample {answer.longest:,} tokens"

    def action_profile(self, name: str) -> None:
        """Apply a profile of the last forecast: its micro-batch, checkpointing and layer streaming (and 4-bit
        for "fits"), as an edit the user can change back field by field."""
        profile = next((p for p in self.forecast.profiles if p.name == name), None) if self.forecast else None
        if profile is None:
            self._message(f"No {name} profile yet: it needs the forecast against an NVIDIA GPU's free memory.",
                          error=True)
            return
        # streaming off first: it needs checkpointing, which "fast" may turn off
        new = set_field(self.config, "lora", "stream_layers", False)
        new = set_field(new, "training", "per_device_train_batch_size", profile.micro_batch)
        new = set_field(new, "lora", "gradient_checkpointing", profile.checkpointing)
        new = set_field(new, "lora", "stream_layers", profile.stream_layers)
        new = set_field(new, "data", "packing", profile.packing or self.config.data.packing)
        if name == "fits":
            new = set_field(new, "model", "load_in_4bit", True)
        self._message(f"The {name} profile: {profile.why} (forecast {profile.total_gib:.1f} GiB). Each field can "
                      "still be changed.")
        if new != self.config:
            self.post_message(ConfigEdited(new, data_affecting=new.data.packing != self.config.data.packing))

    def _on_forecast_error(self, seq: int, error: Error) -> None:
        if seq == self._forecast_seq:
            self.query_one("#config-forecast", Static).update(
                Content.styled(f"memory: no forecast: {error.message}", "$text-muted"))

    def watch_config_path(self, path: Path) -> None:
        box = self.query_one("#config-path", Input)
        if not box.has_focus:
            box.value = str(path)
        # Another file (a run opened, a file loaded): the config that comes down with it replaces the
        # form, invalid edits included. It comes in the same handler of the App; a path changed alone
        # (save as) must not reset the form at a later edit, hence the flag's short life.
        self._reset_pending = True
        self.call_later(setattr, self, "_reset_pending", False)
        self._read_saved()

    # -- the file on disk -------------------------------------------------------------------------
    def _read_saved(self) -> None:
        path = self.config_path
        try:
            self._saved, self._saved_note = load_config(path), ""
        except ConfigError:
            self._saved = None
            self._saved_note = "is not on disk yet" if not path.is_file() else "cannot be read: changes unknown"
        self._update_diff()

    def _update_diff(self) -> None:
        """Mark the rows that differ from the file, and say how many there are."""
        self._changes = config_diff(self._saved, self.config) if self._saved is not None else []
        old = {change.field: change.old for change in self._changes}
        for row in self._rows():
            row.set_saved(old.get(row.field, _SAME))
        self._update_summary()
        self._update_changes_list()

    def _update_summary(self) -> None:
        name = self.config_path.name
        if self._saved is None:
            diff = f"{name} {self._saved_note}" if self._saved_note else ""  # "": not read yet
        elif self._changes:
            # shorter beside the filter box, which takes a third of a narrow screen
            diff = f"● {len(self._changes)} changed" + (" (d)" if self._filter else f" from {name} (d lists them)")
        else:
            diff = "same as the file" if self._filter else f"same as {name}"
        if self._filter:
            shown_rows = sum(1 for row in self._rows() if row.display)
            found = f"{shown_rows} of {len(all_fields())} match" if shown_rows else "no field matches"
            diff = f"{found} (esc: all) · {diff}"
        self.query_one("#config-summary", OneLine).show(Content(diff))

    def _update_changes_list(self) -> None:
        found = self.query("#config-changes")
        if not found or not found.first().display:
            return
        name = self.config_path
        if self._saved is None:
            text = f"{name} {self._saved_note}."
        elif not self._changes:
            text = f"No field differs from {name}."
        else:
            lines = [f"{c.field}: {shown(c.old)} → {shown(c.new)}" for c in self._changes[:CHANGES_SHOWN]]
            if len(self._changes) > CHANGES_SHOWN:
                lines.append(f"… and {len(self._changes) - CHANGES_SHOWN} more, marked ● in the form")
            text = f"Changed from {name} (saved → now):\n" + "\n".join(lines)
        found.first(Static).update(Content(text))

    async def action_changes(self) -> None:
        """d: show or hide the list of fields that differ from the file, `field: saved → now`."""
        found = self.query("#config-changes")
        if found:
            found.first().display = not found.first().display
        else:
            await self.mount(Static("", id="config-changes"), after="#config-message")
        self._update_changes_list()

    # -- finding a field --------------------------------------------------------------------------
    def _filter_box(self) -> Input | None:
        found = self.query("#config-filter")
        return found.first(Input) if found else None

    async def action_find(self) -> None:
        """/: a box whose words narrow the form to the fields with them in their name or help."""
        box = self._filter_box()
        if box is None:
            box = Input(placeholder="find: name or help words", id="config-filter", compact=True)
            await self.query_one("#config-status").mount(box, before="#config-summary")
        box.display = True
        box.focus()

    @on(Input.Changed, "#config-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        if bool(self._filter) != bool(event.value.split()):
            self.refresh_bindings()  # esc on the form clears a filter only while there is one
        self._filter = event.value.lower().split()
        self._apply_filter()
        self.query_one("#config-form").scroll_home(animate=False)

    @on(Input.Submitted, "#config-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        first = self.best_match()
        if first is None:
            self.app.bell()
        else:
            first.focus_editor()

    def best_match(self) -> FieldRow | None:
        """The first field the filter shows, by name before by help ("lora" goes to lora.r, not to
        model.load_in_4bit, whose help says QLoRA)."""
        shown_rows = [row for row in self._rows() if row.display]
        by_name = (row for row in shown_rows if matches(self._filter, row.field.lower()))
        return next(by_name, shown_rows[0] if shown_rows else None)

    def _apply_filter(self) -> None:
        for section in self._sections.values():
            visible = False
            for row in section.rows:
                row.display = matches(self._filter, row.haystack)
                visible = visible or row.display
            section.display = visible
        self._update_summary()

    def clear_filter(self) -> None:
        box = self._filter_box()
        if box is not None:
            with box.prevent(Input.Changed):
                box.value = ""
            box.display = False
        self._filter = []
        self._apply_filter()
        self.refresh_bindings()

    def action_clear_filter(self) -> None:
        """esc: the whole form again, and out of the filter box."""
        self.clear_filter()
        self.query_one("#config-form").focus()

    def focus_field(self, field: str) -> bool:
        """Focus the editor of `field` ("lora.r"), showing the whole form if the filter hides it."""
        row = self.field_row(field)
        if row is None:
            return False
        if not row.display:
            self.clear_filter()
        row.focus_editor()
        return True

    # -- editing --------------------------------------------------------------------------------
    def _row_of(self, widget_id: str | None) -> tuple[str, str] | None:
        if not widget_id or not widget_id.startswith("f-"):
            return None
        _, section, name = widget_id.split("-", 2)
        return section, name

    def _coerce(self, section: str, name: str, raw: Any) -> Any:
        info = type(getattr(self.config, section)).model_fields[name]
        if not isinstance(raw, str):
            return raw
        annotation = info.annotation
        if typing.get_origin(annotation) is list:
            return [part.strip() for part in raw.split(",")]
        if "," in raw and any(typing.get_origin(a) is list for a in typing.get_args(annotation)):
            return [part.strip() for part in raw.split(",") if part.strip()]  # training.gpus = 0,1
        if raw.strip() == "" and type(None) in typing.get_args(annotation):
            return None
        return raw.strip() if annotation is not str else raw

    def _changed(self, widget_id: str | None, raw: Any) -> None:
        where = self._row_of(widget_id)
        if where is None:
            return
        section, name = where
        row = self.field_row(f"{section}.{name}")
        if row is None:
            return
        try:
            new = set_field(self.config, section, name, self._coerce(section, name, raw))
        except ConfigError as exc:
            message = str(exc).replace("form: ", "", 1)
            # The help text is shown next to the field: keep the error to the problem and the allowed range.
            if row.help_text and row.help_text.rstrip(".") in message:
                message = message.replace("; " + row.help_text.rstrip("."), "").replace(row.help_text.rstrip("."), "")
                message = message.replace(" (allowed: )", "")
            row.show_error(message)
            self._post_validity()
            return
        row.value = getattr(getattr(new, section), name)  # what the editor now holds, valid
        row.show_error("")
        self._post_validity()
        if new == self.config:
            return  # e.g. a Select announcing its initial value on mount: not an edit
        self.post_message(ConfigEdited(new, data_affecting=(section, name) in DATA_FIELDS))

    def _post_validity(self) -> None:
        invalid = tuple(self.invalid_fields())
        if invalid != self._invalid:
            self._invalid = invalid
            self.post_message(ConfigValidity(invalid))

    @on(Input.Changed)
    def _input(self, event: Input.Changed) -> None:
        self._changed(event.input.id, event.value)

    @on(Switch.Changed)
    def _switch(self, event: Switch.Changed) -> None:
        self._changed(event.switch.id, event.value)

    @on(Select.Changed)
    def _select(self, event: Select.Changed) -> None:
        if event.value is not Select.BLANK:
            self._changed(event.select.id, event.value)

    def refresh_fields(self, reset: bool = False) -> None:
        """Show the current config in the editors (after a load, or an edit from another pane): the rows
        whose value changed, or every row with `reset`."""
        for row in self._rows():
            row.show(getattr(getattr(self.config, row.section), row.name_), reset=reset)
        self._post_validity()

    def invalid_fields(self) -> list[str]:
        return [row.field for row in self._rows() if row.has_class("-invalid")]

    # -- files ----------------------------------------------------------------------------------
    def _message(self, text: str, error: bool = False) -> None:
        msg = self.query_one("#config-message", Static)
        msg.update(text)
        msg.set_class(error, "-error")
        msg.display = bool(text)  # an empty message takes no line of the form

    @on(Button.Pressed, "#config-load")
    def action_load(self) -> None:
        path = Path(self.query_one("#config-path", Input).value.strip())
        try:
            config = load_config(path)
        except ConfigError as exc:
            self._message(str(exc), error=True)
            return
        # The file replaces the form now, every row (invalid edits and the focused field included);
        # the App's config, which comes back down, then changes nothing more.
        for row in self._rows():
            row.show(getattr(getattr(config, row.section), row.name_), reset=True)
        self._post_validity()
        self._saved, self._saved_note = config, ""
        self.post_message(ConfigFileLoaded(path, config))
        self._message(f"Loaded {path}")

    @on(Button.Pressed, "#config-save")
    def action_save(self) -> None:
        self._save(self.config_path)

    @on(Button.Pressed, "#config-save-as")
    def _save_as(self) -> None:
        path = Path(self.query_one("#config-path", Input).value.strip())
        if not path.name:
            self._message("Type a file name in the path box first (e.g. configs/mine.toml).", error=True)
            return
        if path.suffix != ".toml":
            path = path.with_suffix(".toml")
        self._save(path)

    def _save(self, path: Path) -> None:
        bad = self.invalid_fields()
        if bad:
            self._message(f"Not saved: fix {', '.join(bad)} first (the saved file would not hold your edits).",
                          error=True)
            return
        if is_run_record(path):
            self._message(f"Not saved: {path} is a run's record of what it was trained with. Type a new file "
                          "name in the path box and press Save as.", error=True)
            return
        try:
            # A new file (save as) takes the comments and layout of the one the config came from.
            save_config(self.config, path, template=self.config_path)
        except (OSError, ValueError) as exc:  # ValueError: a path no file can have (a NUL byte in it)
            self._message(f"{path}: cannot be written ({exc.strerror if isinstance(exc, OSError) else exc})",
                          error=True)
            return
        self.query_one("#config-path", Input).value = str(path)
        self._saved, self._saved_note = self.config, ""
        self._update_diff()
        self.post_message(ConfigFileSaved(path))
        self._message(f"Saved {path}")


def forecast_text(answer: rq.MemoryForecastAnswer) -> Content:
    """One line: the forecast peak against the card's free memory, coloured by the verdict, then the
    profiles for that card (where there is one). A run on several GPUs is checked first (training.gpus)."""
    if answer.gpus_line:
        gpus = Content.assemble(("gpus: ", "$text-muted"), (answer.gpus_line, "$success" if answer.gpus_ok else "$error"))
        return Content.assemble(gpus, ("  │  ", "$text-muted"), _memory_text(answer))
    return _memory_text(answer)


def _memory_text(answer: rq.MemoryForecastAnswer) -> Content:
    if answer.free_gib is None:
        return Content.styled(f"memory: {answer.verdict} on a CUDA card ({answer.gpu})", "$text-muted")
    style = ("$error" if "out of memory" in answer.verdict else "$warning" if "tight" in answer.verdict
             else "$success")
    profiles = " · ".join(f"{p.name}: micro-batch {p.micro_batch}, "
                          f"{'no checkpointing' if p.checkpointing == 'false' else 'checkpointing'}"
                          f"{', layers streamed' if p.stream_layers else ''} {p.total_gib:.1f} GiB"
                          for p in answer.profiles)
    return Content.assemble(("memory: ", "$text-muted"), (answer.verdict, style),
                            (f" ({answer.gpu})" + (f"  │  {profiles}" if profiles else ""), "$text-muted"))
