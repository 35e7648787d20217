"""The Config form, driven with keys: finding a field (the `/` filter and the command palette), the
marks of what differs from the file, switches that say their state in words, and errors that clear
when the field is fixed, whatever fixed it (typing, loading a file, the Data pane)."""

from __future__ import annotations

from pathlib import Path

from textual import events
from textual.command import CommandPalette
from textual.widgets import Input, Static

from tests.ui.conftest import wait_for
from workbench.config import RunConfig, load_config, save_config, set_field
from workbench.ui.app import WorkbenchApp
from workbench.ui.messages import ConfigFileLoaded
from workbench.ui.panes.config_pane import FieldRow
from workbench.ui.widgets.key_bar import KeyBar
from workbench.ui.widgets.state_switch import StateSwitch

FIELDS = sum(len(type(getattr(RunConfig(), s)).model_fields) for s in RunConfig.model_fields)
"""Every field of the form."""


def text_of(app: WorkbenchApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def shown_fields(app: WorkbenchApp) -> list[str]:
    return [row.field for row in app.query(FieldRow) if row.display]


def error_of(app: WorkbenchApp, field: str) -> str:
    """The error under a field's editor as shown ("" when there is none or it is hidden)."""
    found = app.query(f"#err-{field.replace('.', '-')}")
    return str(found.first(Static).render()) if found and found.first().display else ""


def keys_shown(app: WorkbenchApp) -> list[str]:
    return [key.description for key in app.query_one(KeyBar).keys]


async def started(pilot) -> WorkbenchApp:
    app: WorkbenchApp = pilot.app
    await app.panes_mounted()
    await pilot.pause()
    return app


async def type_into(pilot, field: str, text: str) -> None:
    """Focus a field's editor, replace its text with `text` with keys, and leave it (esc)."""
    pilot.app.query_one(f"#f-{field.replace('.', '-')}", Input).focus()
    await pilot.pause()
    await pilot.press("end", "ctrl+u", *text, "escape")  # ctrl+u: delete to the start
    await pilot.pause()


async def paste(pilot, text: str) -> None:
    """What a terminal sends when the user pastes `text` (a bracketed paste): one event, not a key per
    character, which for a path costs the test a second per ten characters."""
    pilot.app.post_message(events.Paste(text))
    await pilot.pause()


# -- finding a field ---------------------------------------------------------------------------------

async def test_slash_narrows_the_form_enter_goes_to_the_first_match_esc_shows_all(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        every = shown_fields(app)
        assert len(every) == FIELDS
        await pilot.press("slash")
        assert app.focused is not None and app.focused.id == "config-filter"
        # In the help of lora.r ("LoRA rank"), use_rslora ("Rank-stabilised") and training.gpus ("one rank per GPU").
        await pilot.press(*"rank")
        await pilot.pause()
        assert shown_fields(app) == ["lora.r", "lora.use_rslora", "training.gpus"]
        assert not app.query_one("#section-model").display, "a section without a match is hidden, title too"
        assert f"3 of {FIELDS} match" in text_of(app, "#config-summary")
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "f-lora-r"
        await pilot.press("escape")  # out of the field: the filter stays
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "config-form"
        assert shown_fields(app) == ["lora.r", "lora.use_rslora", "training.gpus"]
        assert "All fields" in keys_shown(app), "the key bar says what esc does here"
        await pilot.press("escape")  # on the form: the whole form again
        await pilot.pause()
        assert shown_fields(app) == every
        assert "All fields" not in keys_shown(app) and "Leave field" in keys_shown(app)

        # by section and name, and esc in the box clears it and leaves it
        await pilot.press("slash", *"training.seed")
        await pilot.pause()
        assert shown_fields(app) == ["training.seed"]
        await pilot.press("escape")
        await pilot.pause()
        assert shown_fields(app) == every
        assert not app.query_one("#config-filter").display
        assert app.focused is not None and app.focused.id == "config-form"


async def test_enter_goes_to_a_match_by_name_before_one_by_help(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("slash", *"lora")
        await pilot.pause()
        # model.load_in_4bit comes first in the form: its help says "QLoRA"
        assert shown_fields(app)[0] == "model.load_in_4bit"
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "f-lora-r"
        # in a text box, / and d are typed: the key bar does not offer them
        assert {key.key for key in app.query_one(KeyBar).keys}.isdisjoint({"slash", "d"})
        await pilot.press("escape")
        await pilot.pause()
        assert {"slash", "d"} <= {key.key for key in app.query_one(KeyBar).keys}


async def test_nothing_matches(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("slash", *"zzz", "enter")
        await pilot.pause()
        assert shown_fields(app) == []
        assert "no field matches" in text_of(app, "#config-summary")
        assert app.focused is not None and app.focused.id == "config-filter"


async def test_the_palette_lists_every_field_and_goes_to_its_editor(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        # A filter hiding the field, and another pane open: the palette still gets there.
        await pilot.press("slash", *"seed", "enter", "escape", "2")
        await pilot.pause()
        assert app.query_one("#panes").active == "data"
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), 5, "the palette")
        await pilot.press(*"Field: lora.alpha")
        await wait_for(pilot, lambda: "Field: lora.alpha" in str(app.screen.query_one("CommandList").get_option_at_index(0).prompt),
                       5, "the field's entry first")
        prompt = str(app.screen.query_one("CommandList").get_option_at_index(0).prompt)
        assert "LoRA alpha" in prompt, "the entry says what the field is"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "f-lora-alpha", 5,
                       lambda: f"the focus in lora.alpha, not {app.focused}")
        assert app.query_one("#panes").active == "config"
        assert "lora.alpha" in shown_fields(app)


# -- what differs from the file ------------------------------------------------------------------------

async def test_changed_fields_are_marked_listed_and_cleared_by_a_save(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        await wait_for(pilot, lambda: "same as demo.toml" in text_of(app, "#config-summary"), 5, "the file read")
        await type_into(pilot, "lora.r", "32")
        await type_into(pilot, "training.learning_rate", "1e-4")
        rows = {row.field: row for row in app.query(FieldRow)}
        assert {f for f, row in rows.items() if row.has_class("-changed")} == {"lora.r", "training.learning_rate"}
        label = str(app.query_one("#row-lora-r .field-label", Static).render())
        assert label.startswith("●"), "the mark is a character, not a colour only"
        assert "file: 16" in str(app.query_one("#row-lora-r .field-help", Static).render())
        assert "2 changed from demo.toml" in text_of(app, "#config-summary")
        await pilot.press("d")
        await pilot.pause()
        listing = text_of(app, "#config-changes")
        assert "lora.r: 16 → 32" in listing
        assert "training.learning_rate: 0.01 → 0.0001" in listing  # the demo's rate
        # back to the file's value: no longer a change
        await type_into(pilot, "training.learning_rate", "0.01")
        assert "1 changed" in text_of(app, "#config-summary")
        assert "learning_rate" not in text_of(app, "#config-changes")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert load_config(demo_config_path).lora.r == 32
        assert not any(row.has_class("-changed") for row in app.query(FieldRow))
        assert "same as demo.toml" in text_of(app, "#config-summary")
        assert "No field differs" in text_of(app, "#config-changes")
        await pilot.press("d")
        await pilot.pause()
        assert not app.query_one("#config-changes").display


async def test_the_file_on_disk_is_the_reference(demo_config_path: Path, tmp_path: Path):
    # Started on a file that is not the config shown (it could not be read): no false "same as".
    app = WorkbenchApp(config_path=tmp_path / "new.toml", start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await wait_for(pilot, lambda: "new.toml is not on disk yet" in text_of(app, "#config-summary"), 5,
                       lambda: text_of(app, "#config-summary"))
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "same as new.toml" in text_of(app, "#config-summary")


# -- switches say their state ------------------------------------------------------------------------------

async def test_switches_say_on_or_off(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        switch = app.query_one("#f-data-packing", StateSwitch)
        assert app.query_one("#row-data-packing").region.height == 1, "one line, as the other fields"
        line = switch.render_line(0).text
        assert line.rstrip().endswith("off") and " on" not in line
        switch.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.config.data.packing is True
        line = switch.render_line(0).text
        assert line.rstrip().endswith("on") and "off" not in line


# -- an error clears when its field is fixed ---------------------------------------------------------------

async def test_an_error_clears_when_a_valid_value_is_typed(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await type_into(pilot, "lora.r", "0")
        assert "lora.r" in error_of(app, "lora.r")
        assert app.invalid_fields == ("lora.r",)
        await type_into(pilot, "lora.r", "8")
        assert error_of(app, "lora.r") == ""
        assert app.invalid_fields == ()
        assert app.config.lora.r == 8


async def test_an_invalid_edit_stays_while_other_fields_are_edited(demo_config_path: Path):
    # The config keeps the last valid value; the form keeps showing what the user typed, and its error,
    # until it is fixed (it used to be reverted silently by the next edit of any other field).
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await type_into(pilot, "lora.r", "0")
        await type_into(pilot, "lora.alpha", "32")
        assert app.config.lora.alpha == 32
        assert app.query_one("#f-lora-r", Input).value == "0"
        assert "lora.r" in error_of(app, "lora.r")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "Not saved: fix lora.r" in text_of(app, "#config-message")


async def test_an_error_clears_when_a_file_is_loaded(demo_config_path: Path, tmp_path: Path):
    other = tmp_path / "other.toml"
    save_config(set_field(load_config(demo_config_path), "lora", "r", 64), other)
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await type_into(pilot, "lora.r", "0")
        await type_into(pilot, "lora.alpha", "x")
        assert app.invalid_fields == ("lora.r", "lora.alpha")
        # The same file again: its values are the ones the config kept (the path does not change either),
        # and the errors go all the same, since the form now shows the file.
        await pilot.click("#config-load")
        await pilot.pause()
        assert error_of(app, "lora.r") == "" and error_of(app, "lora.alpha") == ""
        assert app.query_one("#f-lora-r", Input).value == "16"
        assert app.invalid_fields == ()
        # Another file, after new invalid edits
        await type_into(pilot, "lora.r", "0")
        await type_into(pilot, "lora.alpha", "x")
        app.query_one("#config-path", Input).focus()
        await pilot.press("end", "ctrl+u")
        await paste(pilot, str(other))
        await pilot.press("escape")
        await pilot.click("#config-load")
        await pilot.pause()
        assert app.config.lora.r == 64
        assert error_of(app, "lora.r") == "" and error_of(app, "lora.alpha") == ""
        assert app.query_one("#f-lora-r", Input).value == "64"
        assert app.query_one("#f-lora-alpha", Input).value == "16"
        assert app.invalid_fields == ()


async def test_an_error_clears_when_the_app_opens_another_file(demo_config_path: Path, tmp_path: Path):
    # A file loaded by the App (as when a run is opened): the path and the config come down together.
    other = tmp_path / "run-config.toml"
    save_config(load_config(demo_config_path), other)
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await type_into(pilot, "lora.r", "0")
        assert app.invalid_fields == ("lora.r",)
        app.post_message(ConfigFileLoaded(other, load_config(other)))
        await pilot.pause()
        assert error_of(app, "lora.r") == ""
        assert app.query_one("#f-lora-r", Input).value == "16"
        assert app.invalid_fields == ()


async def test_an_error_clears_when_the_data_pane_fixes_the_field(demo_config_path: Path, tmp_path: Path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"dialogue": "a", "summary": "b"}\n', encoding="utf-8")
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await type_into(pilot, "data.source", " ")
        assert "data.source" in error_of(app, "data.source")
        await pilot.press("2")
        app.query_one("#data-source", Input).focus()
        await pilot.pause()
        await pilot.press("end", "ctrl+u")
        await paste(pilot, str(data))
        await pilot.press("enter", "escape", "1")
        await pilot.pause()
        assert app.config.data.source == str(data)
        assert error_of(app, "data.source") == ""
        assert app.query_one("#f-data-source", Input).value == str(data)
        assert app.invalid_fields == ()


# -- saving keeps the file's comments ------------------------------------------------------------------------

async def test_ctrl_s_keeps_the_files_comments(demo_config_path: Path):
    text = demo_config_path.read_text(encoding="utf-8").replace("[lora]\n", "# my LoRA notes\n[lora]\n")
    text = text.replace("r = 16\n", "r = 16  # rank: try 32 next\n")
    demo_config_path.write_text(text, encoding="utf-8")
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await type_into(pilot, "lora.r", "32")
        await pilot.press("ctrl+s")
        await pilot.pause()
    saved = demo_config_path.read_text(encoding="utf-8")
    assert saved == text.replace("r = 16  # rank", "r = 32  # rank")


async def test_save_as_to_a_path_no_file_can_have_is_a_message(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        app.query_one("#config-path", Input).value = "configs/a\0b.toml"  # a paste can bring one in
        await pilot.click("#config-save-as")
        await pilot.pause()
        assert "cannot be written" in text_of(app, "#config-message")
        assert app.is_running
