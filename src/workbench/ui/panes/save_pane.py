"""Save / Runs pane: export the active run's weights (LoRA adapter, merged 16-bit, GGUF where llama.cpp is
present), proven to reload before it says "Saved", and the list of past runs (widgets/runs_list.py): any
of them opens with its curves replayed and its own config, is overlaid on the active run's chart,
renamed or deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Button, Input, RadioSet, Select, Static

from workbench import requests as rq
from workbench.config import RunConfig
from workbench.protocol import Error
from workbench.runs import RunDir
from workbench.save_kinds import SAVE_KINDS, SAVE_TITLES, SaveKind, unavailable_reason
from workbench.ui.bridge import EngineBridge
from workbench.ui.widgets.confirm import Confirm
from workbench.ui.widgets.runs_list import RunsList
from workbench.ui.widgets.toggles import StateRadioButton

FINAL = "final"
"""The weights selector's value for the run's final adapter (else a checkpoint's step)."""


def default_target(run_dir: str, kind: SaveKind, weights: int | str) -> str:
    suffix = "" if weights == FINAL else f"-step{weights}"
    return str(Path(run_dir) / f"export-{kind}{suffix}")


class SavePane(Vertical):
    BINDINGS = [("ctrl+s", "save", "Save model"), ("f5", "refresh_runs", "Refresh runs")]

    config: reactive[RunConfig] = reactive(RunConfig, always_update=True, init=False)
    run_dir: reactive[str | None] = reactive(None, init=False)
    """The active run: what is saved, and where by default (inside it)."""
    compare_run: reactive[str | None] = reactive(None, init=False)
    """The run overlaid on the active run's chart (marked in the list)."""

    def __init__(self, engine: EngineBridge, config: RunConfig, run_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.set_reactive(SavePane.config, config)
        self.set_reactive(SavePane.run_dir, run_dir)
        self._default_path = ""

    def compose(self) -> ComposeResult:
        yield Static("[b]Save the tuned model[/b]", classes="section-title")
        with Horizontal(id="save-source-row"):
            yield Static("", id="save-source")
            yield Select([], prompt="weights", allow_blank=True, id="save-weights")
        reasons = {kind: unavailable_reason(kind) for kind in SAVE_KINDS}
        with RadioSet(id="save-kind"):
            for kind in SAVE_KINDS:
                label = SAVE_TITLES[kind] + ("  (not set up here)" if reasons[kind] else "")
                yield StateRadioButton(label, value=(kind == "lora"), disabled=bool(reasons[kind]), id=f"save-{kind}")
        # Said once for all the kinds it concerns (the three GGUF ones share one set-up step).
        unavailable = list(dict.fromkeys(reason for reason in reasons.values() if reason))
        yield Static("\n".join(f"[dim]{escape(reason)}[/]" for reason in unavailable), id="save-setup")
        with Horizontal(id="save-row"):
            yield Input("", id="save-path", placeholder="folder to save to")
            yield Button("Save", id="save-button", variant="primary")
        yield Static("", id="save-message")
        yield RunsList(id="runs")

    def on_mount(self) -> None:
        self._show_source(self.run_dir)  # `is_mounted` is still False here: the watcher would skip it
        self.action_refresh_runs()

    # -- what is saved, and where -----------------------------------------------------------------
    def watch_run_dir(self, run_dir: str | None) -> None:
        if self.is_mounted:
            self._show_source(run_dir)

    def _show_source(self, run_dir: str | None) -> None:
        """A new active run: its weights to choose from, and a target inside it (never the last run's)."""
        self.query_one(RunsList).active_run = run_dir
        source = self.query_one("#save-source", Static)
        weights = self.query_one("#save-weights", Select)
        if run_dir is None:
            source.update("No run yet: train one, or open one from the list below.")
            weights.set_options([])
        else:
            run = RunDir(run_dir)
            options: list[tuple[str, int | str]] = []
            if (run.adapter_dir / "adapter_config.json").exists():
                options.append((f"final adapter (step {run.summary().step})", FINAL))
            options += [(f"checkpoint-{step}", step) for step, _ in reversed(run.checkpoints())]
            weights.set_options(options)
            if options:
                weights.value = options[0][1]
                source.update(f"from run [b]{run.name}[/b]:")
            else:
                source.update(f"run [b]{run.name}[/b] has no adapter or complete checkpoint to save yet")
        self._follow_default(force=True)

    @on(Select.Changed, "#save-weights")
    @on(RadioSet.Changed, "#save-kind")
    def _choice_changed(self) -> None:
        self._follow_default(force=False)

    def _follow_default(self, force: bool) -> None:
        """Put the default target in the path box, unless the user typed their own for this run."""
        box = self.query_one("#save-path", Input)
        new = default_target(self.run_dir, self._kind(), self._weights()) if self.run_dir else ""
        if force or not box.value or box.value == self._default_path:
            box.value = new
        self._default_path = new

    def _kind(self) -> SaveKind:
        pressed = self.query_one("#save-kind", RadioSet).pressed_button
        name = (pressed.id or "save-lora").removeprefix("save-") if pressed else "lora"
        return next((k for k in SAVE_KINDS if k == name), "lora")

    def _weights(self) -> int | str:
        value = self.query_one("#save-weights", Select).value
        return value if isinstance(value, int | str) and value != Select.BLANK else FINAL

    def on_show(self) -> None:
        self.action_refresh_runs()

    # -- saving -----------------------------------------------------------------------------------
    @on(Button.Pressed, "#save-button")
    def action_save(self) -> None:
        if self.run_dir is None:
            self._message("Nothing to save yet: train a run, or open one from the list below.", error=True)
            return
        path = self.query_one("#save-path", Input).value.strip()
        if not path:
            self._message("Choose a folder to save to.", error=True)
            return
        if Path(path).expanduser().exists():
            question = (f"{path} already exists. Overwrite it? (The old folder is replaced only once the new "
                        "save is complete and proven to reload.)")
            self.app.push_screen(Confirm(question, yes="Overwrite"), lambda ok: self._save(path, True) if ok else None)
        else:
            self._save(path, False)

    def _save(self, path: str, overwrite: bool) -> None:
        if self.run_dir is None:
            return
        kind, weights = self._kind(), self._weights()
        self._message(f"Saving {SAVE_TITLES[kind]} to {path}, then reloading it to prove it answers the same…")
        request = rq.Save(kind=kind, path=path, run_dir=self.run_dir, overwrite=overwrite,
                          checkpoint=weights if isinstance(weights, int) else None)
        self.engine.request(request, on_answer=self._saved, on_error=self._failed)

    def _saved(self, answer: rq.Saved) -> None:
        check = answer.verification
        proof = f" · proven: {check.detail}" if check else ""
        source = answer.checkpoint or "final adapter"
        self._message(f"Saved {answer.kind} of {answer.run} ({source}, step {answer.step}) to {answer.path}{proof}")

    def _failed(self, error: Error) -> None:
        self._message(f"{error.message} {error.hint}", error=True)

    def _message(self, text: str, error: bool = False) -> None:
        self.query_one("#save-message", Static).update(Text(text, style="red" if error else "green"))

    # -- runs -------------------------------------------------------------------------------------
    def watch_compare_run(self, run_dir: str | None) -> None:
        self.query_one(RunsList).compare_run = run_dir

    def action_refresh_runs(self) -> None:
        self.query_one(RunsList).refresh_runs(self.config.output.runs_dir)

    # The list's own keys (c, r, d) act where the list has the focus; these are for the command palette.
    def action_compare_run(self) -> None:
        self.query_one(RunsList).action_compare_run()

    def action_rename_run(self) -> None:
        self.query_one(RunsList).action_rename_run()

    def action_delete_run(self) -> None:
        self.query_one(RunsList).action_delete_run()

    @property
    def runs_listed(self) -> int:
        """How many times the runs table was filled (tests wait on it: the list is read in a thread)."""
        return self.query_one(RunsList).listed

    def runs_shown(self) -> list[str]:
        return self.query_one(RunsList).shown()
