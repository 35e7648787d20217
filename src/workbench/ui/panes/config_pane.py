"""Config pane: every field of the run configuration as a form, grouped by section, with its help text,
validated as typed (the error next to the field), and load / save / save-as of TOML files."""

from __future__ import annotations

import typing
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Button, Input, Label, Select, Static, Switch

from workbench.config import ConfigError, RunConfig, load_config, save_config, set_field
from workbench.runs import is_run_record
from workbench.ui.messages import ConfigEdited, ConfigFileLoaded, ConfigFileSaved, ConfigValidity
from workbench.ui.widgets.deferred import Deferred
from workbench.ui.widgets.focus_scroll import FocusScroll

SECTIONS = ("model", "lora", "data", "training", "eval", "output")
# Built just after the first frame, which shows the model section: first paint pays for every widget
# composed, and these are about 200 of the form's 290 (the LoRA section alone, 7 rows with two Selects,
# cost ~65 ms on a 2-core machine). On a tall terminal its rows appear a frame later; below 50 rows
# they are below the fold anyway.
DEFERRED_SECTIONS = ("lora", "data", "training", "eval", "output")
# Fields whose change alters what the Data pane shows.
DATA_FIELDS = {("model", "name"), ("model", "max_seq_length")} | {
    ("data", f) for f in ("source", "split", "input_column", "output_column", "template", "instruction",
                          "train_on_responses_only")
}


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


class FieldRow(Vertical):
    """One field: label, editor, help text and the error (empty when valid)."""

    DEFAULT_CSS = """
    FieldRow { height: auto; padding: 0 1; }
    FieldRow > Horizontal { height: auto; }
    FieldRow .field-label { width: 30; padding-top: 1; }
    FieldRow .field-editor { width: 1fr; }
    FieldRow Switch { width: auto; }
    FieldRow .field-help { color: $text-muted; padding-left: 30; }
    FieldRow .field-error { color: $error; padding-left: 30; }
    """

    def __init__(self, section: str, name: str, annotation: Any, help_text: str, value: Any) -> None:
        super().__init__(id=f"row-{section}-{name}")
        self.section, self.name_, self.annotation, self.help_text, self.value = (
            section, name, annotation, help_text, value)

    def compose(self) -> ComposeResult:
        editor_id = f"f-{self.section}-{self.name_}"
        with Horizontal():
            yield Label(self.name_, classes="field-label")
            choices = _literal_choices(self.annotation)
            if self.annotation is bool:
                yield Switch(value=bool(self.value), id=editor_id)
            elif choices:
                yield Select([(str(c), c) for c in choices], value=self.value, allow_blank=False, id=editor_id,
                             classes="field-editor")
            else:
                yield Input(_to_text(self.value), id=editor_id, classes="field-editor")
        yield Static(self.help_text, classes="field-help")
        # The error line is mounted when there first is an error: most fields never have one, and every
        # widget composed costs start-up time (the form is the first thing painted).

    def set_value(self, value: Any) -> None:
        editor = self.query_one(f"#f-{self.section}-{self.name_}")
        if editor.has_focus:  # never rewrite what the user is typing
            return
        with editor.prevent(Input.Changed, Switch.Changed, Select.Changed):
            if isinstance(editor, Switch):
                editor.value = bool(value)
            elif isinstance(editor, Select):
                editor.value = value
            elif isinstance(editor, Input):
                editor.value = _to_text(value)
        self.show_error("")

    def show_error(self, message: str) -> None:
        found = self.query(f"#err-{self.section}-{self.name_}")
        if found:
            found.first(Static).update(message)
        elif message:
            self.mount(Static(message, classes="field-error", id=f"err-{self.section}-{self.name_}"))
        self.set_class(bool(message), "-invalid")


class ConfigSection(Vertical):
    """One section of the form (model, lora, ...): its title and a row per field."""

    DEFAULT_CSS = "ConfigSection { height: auto; }"

    def __init__(self, section: str, values: BaseModel, id: str | None = None) -> None:
        super().__init__(id=id)
        self.section = section
        self.values = values

    def compose(self) -> ComposeResult:
        model = self.values
        yield Static(f"[b]{self.section}[/b]  {RunConfig.model_fields[self.section].description or ''}",
                     classes="section-title")
        for name, info in type(model).model_fields.items():
            yield FieldRow(self.section, name, info.annotation, info.description or "", getattr(model, name))


class ConfigPane(Vertical):
    """The form. It edits a copy of the App's config: each valid edit goes up as `ConfigEdited`, and the
    App's config comes back down through `config`."""

    BINDINGS = [("ctrl+s", "save", "Save config")]

    config: reactive[RunConfig] = reactive(RunConfig, always_update=True, init=False)
    config_path: reactive[Path] = reactive(Path("config.toml"), init=False)

    def __init__(self, config: RunConfig, config_path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.set_reactive(ConfigPane.config, config)
        self.set_reactive(ConfigPane.config_path, config_path)
        self._invalid: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        with Horizontal(id="config-bar"):
            yield Input(str(self.config_path), id="config-path", placeholder="configs/name.toml")
            yield Button("Load", id="config-load")
            yield Button("Save", id="config-save", variant="primary")
            yield Button("Save as", id="config-save-as")
        yield Static("", id="config-message")
        with FocusScroll(id="config-form"):
            for section in SECTIONS:
                if section in DEFERRED_SECTIONS:
                    # built from the config as it is when the section is mounted, not as it is now
                    yield Deferred(partial(self._section, section))
                else:
                    yield self._section(section)

    def _section(self, section: str) -> ConfigSection:
        return ConfigSection(section, getattr(self.config, section), id=f"section-{section}")

    def watch_config(self) -> None:
        self.refresh_fields()

    def watch_config_path(self, path: Path) -> None:
        box = self.query_one("#config-path", Input)
        if not box.has_focus:
            box.value = str(path)

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
        if raw.strip() == "" and type(None) in typing.get_args(annotation):
            return None
        return raw.strip() if annotation is not str else raw

    def _changed(self, widget_id: str | None, raw: Any) -> None:
        where = self._row_of(widget_id)
        if where is None:
            return
        section, name = where
        row = self.query_one(f"#row-{section}-{name}", FieldRow)
        try:
            new = set_field(self.config, section, name, self._coerce(section, name, raw))
        except ConfigError as exc:
            message = str(exc).replace("form: ", "", 1)
            # The help text is shown right above: keep the error to the problem and the allowed range.
            if row.help_text and row.help_text.rstrip(".") in message:
                message = message.replace("; " + row.help_text.rstrip("."), "").replace(row.help_text.rstrip("."), "")
                message = message.replace(" (allowed: )", "")
            row.show_error(message)
            self._post_validity()
            return
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
        if event.input.id != "config-path":
            self._changed(event.input.id, event.value)

    @on(Switch.Changed)
    def _switch(self, event: Switch.Changed) -> None:
        self._changed(event.switch.id, event.value)

    @on(Select.Changed)
    def _select(self, event: Select.Changed) -> None:
        if event.value is not Select.BLANK:
            self._changed(event.select.id, event.value)

    def refresh_fields(self) -> None:
        """Show the current config in every editor (after a load, or an edit from another pane)."""
        for row in self.query(FieldRow):
            row.set_value(getattr(getattr(self.config, row.section), row.name_))
        self._post_validity()

    def invalid_fields(self) -> list[str]:
        return [f"{r.section}.{r.name_}" for r in self.query(FieldRow) if r.has_class("-invalid")]

    # -- files ----------------------------------------------------------------------------------
    def _message(self, text: str, error: bool = False) -> None:
        msg = self.query_one("#config-message", Static)
        msg.update(text)
        msg.set_class(error, "-error")

    @on(Button.Pressed, "#config-load")
    def action_load(self) -> None:
        path = Path(self.query_one("#config-path", Input).value.strip())
        try:
            config = load_config(path)
        except ConfigError as exc:
            self._message(str(exc), error=True)
            return
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
            save_config(self.config, path)
        except OSError as exc:
            self._message(f"{path}: cannot be written ({exc.strerror})", error=True)
            return
        self.query_one("#config-path", Input).value = str(path)
        self.post_message(ConfigFileSaved(path))
        self._message(f"Saved {path}")
