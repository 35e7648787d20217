"""The workbench TUI: six panes over one engine process.

The App owns the state the panes share (the run configuration and its file, the active run, the engine
connection) and hands it down: panes get the engine bridge when they are built and the App sets their
attributes when the state changes. Panes never call into the App: they post messages (`messages.py`)
and the App decides what follows.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.reactive import Reactive, reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from workbench import settings
from workbench.client import EngineClient, StartAborted
from workbench.config import ConfigError, RunConfig, config_diff, load_config
from workbench.protocol import Error, Event, Hello, State
from workbench.runs import RunDir, find_run
from workbench.textwidth import align_indic_widths
from workbench.ui import messages as msg
from workbench.ui.bridge import EngineBridge
from workbench.ui.commands import PANES, WorkbenchCommands
from workbench.ui.gc_schedule import IdleCollector
from workbench.ui.panes.config_pane import DEFERRED_SECTIONS, ConfigPane
from workbench.ui.textual_internals import read_esc_digit_as_alt
from workbench.ui.widgets.deferred import Deferred
from workbench.ui.widgets.key_bar import KeyBar
from workbench.ui.widgets.one_line import OneLine

if TYPE_CHECKING:
    from workbench.ui.panes.chat_pane import ChatPane
    from workbench.ui.panes.data_pane import DataPane
    from workbench.ui.panes.eval_pane import EvalPane
    from workbench.ui.panes.save_pane import SavePane
    from workbench.ui.panes.train_pane import TrainPane

align_indic_widths()  # before anything renders: Hindi lines must measure as terminals draw them
read_esc_digit_as_alt()  # Alt+digit from tmux or a Linux terminal switches panes instead of typing "§"

# The panes after the first: their modules are imported and their widgets built after the first frame
# (Deferred), so that start-up pays only for the Config pane the user sees.
DEFERRED_PANES = {
    "data": ("workbench.ui.panes.data_pane", "DataPane"),
    "train": ("workbench.ui.panes.train_pane", "TrainPane"),
    "chat": ("workbench.ui.panes.chat_pane", "ChatPane"),
    "save": ("workbench.ui.panes.save_pane", "SavePane"),
    "eval": ("workbench.ui.panes.eval_pane", "EvalPane"),
}


def _same_path(a: str | Path, b: str | Path) -> bool:
    # The engine names runs by absolute path, the Runs list by the config's (often relative) runs_dir.
    return os.path.abspath(a) == os.path.abspath(b)


class WorkbenchScreen(Screen[None]):
    """The main screen. Moving the focus does not repaint all of it.

    Textual's `Screen.focused` is a repainting reactive: every focus move marked the whole screen dirty,
    so each pane switch was followed by a second, full-screen frame (about 20 KB of escape sequences for
    160x50 over SSH, and 5-10 ms of UI time on a 2-core machine). What focus changes is drawn anyway:
    the widgets whose styles depend on it (`:focus`, `:focus-within`) are restyled and refresh
    themselves, and the focused and blurred widgets repaint on their Focus / Blur events.
    """

    focused: Reactive[Widget | None] = Reactive(None, repaint=False)


class WorkbenchApp(App[int]):
    CSS_PATH = "workbench.tcss"
    TITLE = "workbench"
    COMMANDS = App.COMMANDS | {WorkbenchCommands}
    BINDINGS = [
        *[(title[0], f"pane('{pane}')", title[2:]) for pane, title in PANES],
        # Esc then a digit, sent at once (tmux, a slow SSH link), arrives as alt+digit: it must still
        # switch panes, not type a character into the box the user was leaving.
        *[Binding(f"alt+{title[0]}", f"pane('{pane}')", title[2:], show=False, priority=True)
          for pane, title in PANES],
        ("f1", "help", "Help"),
        ("escape", "leave_field", "Leave field"),
        ("ctrl+q", "quit", "Quit"),
    ]

    config: reactive[RunConfig] = reactive(RunConfig, always_update=True, init=False)
    config_path: reactive[Path] = reactive(Path("config.toml"), init=False)
    dirty: reactive[bool] = reactive(False, init=False)
    engine_state: reactive[str] = reactive("starting", init=False)
    active_run: reactive[str | None] = reactive(None, init=False)
    """The run the Train, Chat and Save panes are about: just started, attached to, or opened from Runs."""
    compare_run: reactive[str | None] = reactive(None, init=False)
    """A second run whose loss curve the Train pane's chart overlays (marked in the Runs list)."""

    def __init__(
        self,
        config_path: str | Path = "configs/gemma2-9b-hindi.toml",
        attach: str | None = None,
        engine_factory: Callable[[Callable[[Event], None]], Any] | None = None,
        gpu_module: Any = None,
        start_engine: bool = True,
    ) -> None:
        super().__init__()
        # No animations unless the user asks (TEXTUAL_ANIMATIONS=basic|full): over SSH every animation
        # frame is bytes on the wire, and the tab underline's slide alone cost ~9 ms of UI time per pane
        # switch while training.
        if not settings.animations_requested():
            self.animation_level = "none"
        self.startup_notes: list[tuple[str, str]] = []
        """(title, message) shown once the UI is up: a config that did not load, a run not found."""
        self.attach_run = find_run(attach, Path("runs")) if attach else None
        if attach and self.attach_run is None:
            self.startup_notes.append(("Run not found", f"no run named {attach!r} (looked in ./runs and {attach})"))
        path = self.attach_run.config_path if self.attach_run else Path(config_path)
        self.set_reactive(WorkbenchApp.config_path, path)
        self.set_reactive(WorkbenchApp.config, self._read_config(path))
        self._config_as_saved = self.config.model_copy(deep=True)
        """The config as its file holds it: an edit that puts every field back is no longer unsaved."""
        if self.attach_run:
            self.set_reactive(WorkbenchApp.active_run, str(self.attach_run.path))
        self.engine_factory = engine_factory or (lambda on_event: EngineClient(on_event))
        self.gpu_module = gpu_module
        self.start_engine = start_engine
        self.bridge = EngineBridge()
        self.client: Any = None
        self.engine_ready = False
        self.engine_pid: int | None = None
        self.device = ""
        self.invalid_fields: tuple[str, ...] = ()
        self.exit_note = ""
        """Printed after the UI closes (how to re-attach to a run that keeps training)."""
        self._engine_detail = ""
        self._engine_generation = 0
        # Widgets built after the first frame (by id): engine events wait for them, to keep their order.
        self._panes_pending = {f"{name}-pane" for name in DEFERRED_PANES} | {f"section-{name}" for name in DEFERRED_SECTIONS}
        self._after_panes: list[Callable[[], None]] = []
        self._panes_ready_event = asyncio.Event()
        self._gc = IdleCollector()
        self._tabbed: TabbedContent | None = None
        self._focus_targets: dict[str, list[Any]] = {}

    def _read_config(self, path: Path) -> RunConfig:
        try:
            return load_config(path)
        except ConfigError as exc:
            self.startup_notes.append(("Config not loaded: using defaults", str(exc)))
            return RunConfig()

    # -- layout ---------------------------------------------------------------------------------
    def get_default_screen(self) -> Screen[None]:
        return WorkbenchScreen(id="_default")

    def compose(self) -> ComposeResult:
        with TabbedContent(initial="config", id="panes"):
            with TabPane(PANES[0][1], id="config"):
                yield ConfigPane(self.config, self.config_path, engine=self.bridge, id="config-pane")
            for name, title in PANES[1:]:
                with TabPane(title, id=name):
                    yield Deferred(partial(self._build_pane, name))
        yield OneLine("", id="status-bar")
        yield KeyBar()  # not Footer(): one widget, not one per key, redrawn without a layout (key_bar.py)

    def _build_pane(self, name: str) -> Widget:
        """A deferred pane, built with the state it shows as it is now (attributes down)."""
        module, cls_name = DEFERRED_PANES[name]
        cls = getattr(importlib.import_module(module), cls_name)
        kwargs: dict[str, Any] = {"engine": self.bridge, "config": self.config, "id": f"{name}-pane"}
        if name == "train":
            kwargs.update(gpu_module=self.gpu_module, invalid_fields=self.invalid_fields)
        if name in ("train", "chat", "save", "eval"):
            kwargs["run_dir"] = self.active_run
        pane: Widget = cls(**kwargs)
        return pane

    NARROW_BELOW = 110  # columns: side panels stack under the main ones

    def on_resize(self, event: events.Resize) -> None:
        self.screen.set_class(event.size.width < self.NARROW_BELOW, "narrow")

    # Typed handles on the panes (the App's own children: attributes go down through them).
    def _train(self) -> TrainPane:
        from workbench.ui.panes.train_pane import TrainPane

        return self.query_one("#train-pane", TrainPane)

    def _data(self) -> DataPane:
        from workbench.ui.panes.data_pane import DataPane

        return self.query_one("#data-pane", DataPane)

    def _chat(self) -> ChatPane:
        from workbench.ui.panes.chat_pane import ChatPane

        return self.query_one("#chat-pane", ChatPane)

    def _save(self) -> SavePane:
        from workbench.ui.panes.save_pane import SavePane

        return self.query_one("#save-pane", SavePane)

    def _eval(self) -> EvalPane:
        from workbench.ui.panes.eval_pane import EvalPane

        return self.query_one("#eval-pane", EvalPane)

    def pane(self, name: str) -> Widget:
        """A pane by name ("config", "data", "train", "chat", "save", "eval"): the command palette runs its
        actions."""
        return self.query_one(f"#{name}-pane")

    async def panes_mounted(self) -> None:
        """Wait until every deferred pane is built (for tests and scripts that drive the app)."""
        await self._panes_ready_event.wait()

    def when_panes_ready(self, callback: Callable[[], None]) -> None:
        if self._panes_pending:
            self._after_panes.append(callback)
        else:
            callback()

    def on_deferred_built(self, message: Deferred.Built) -> None:
        self._panes_pending.discard(str(message.widget.id))
        if self._panes_pending:
            return
        self._panes_ready_event.set()
        callbacks, self._after_panes = self._after_panes, []
        for callback in callbacks:
            callback()
        # A pane opened before its widgets existed got no focus; give it now.
        self._focus_pane(self._tabs().active)

    def _tabs(self) -> TabbedContent:
        # Kept, not queried: a query walks the whole DOM (~450 widgets), milliseconds on every key.
        if self._tabbed is None:
            self._tabbed = self.query_one("#panes", TabbedContent)
        return self._tabbed

    def on_mount(self) -> None:
        self.screen.set_class(self.size.width < self.NARROW_BELOW, "narrow")
        self._update_status()
        for title, note in self.startup_notes:
            self.notify(note, title=title, severity="error", timeout=20)
        if self.start_engine:
            self.set_engine_state("starting", "starting the engine (imports unsloth, torch, transformers)")
            # After the first frame: spawning the process costs the first paint about 30 ms, and the
            # engine's own start-up takes seconds either way.
            self.call_after_refresh(self._start_engine)
        if self.attach_run is not None:
            self.when_panes_ready(partial(self._show_run, self.attach_run))
        self.when_panes_ready(self._schedule_gc)

    def _schedule_gc(self) -> None:
        # Start-up leaves a few hundred thousand GC-tracked objects (widgets, styles, imported modules)
        # that live as long as the app, and every full collection walked all of them: full GCs of up to
        # 0.64 s over about 1 M tracked objects were measured, each a visible freeze of the UI. Frozen,
        # they leave the collector's generations, so a full GC scans only what was made since. From here
        # on, collections run from a timer, the full ones when the user pauses (gc_schedule.py).
        if self._winding_down():  # on_unmount unfreezes; freezing after it would pin this app's objects
            return
        gc.freeze()
        self._gc.start()
        self.set_interval(0.25, self._gc.tick, name="gc")

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown):
            self._gc.user_input()
        await super().on_event(event)

    @property
    def last_input(self) -> float:
        """time.monotonic() of the last key or mouse press: background work (the GC, the loss chart's
        drawing) waits for a pause after it."""
        return self._gc.last_input

    # -- engine ---------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="engine")
    def _start_engine(self) -> None:
        generation = self._engine_generation
        def post(event: Event) -> None:  # from the client's reader thread: post_message is thread-safe
            self.post_message(msg.EngineEvent(event, generation))

        client = self.engine_factory(post)
        # Known to the app before it starts, so that quitting (on_unmount) or a restart can close it and
        # so cut a start-up short instead of waiting for it.
        self.client = client
        if self._winding_down():
            client.close()
            return
        run = self.attach_run
        info = run.engine_info() if run else None
        try:
            if run and info and info.get("socket") and run.engine_alive():
                client.connect(str(info["socket"]))  # the engine training this run
            else:
                if run and run.engine_alive():  # trained from a terminal (`workbench train`): no engine to join
                    self.call_from_thread(self.notify, f"{run.name} is training in a terminal (`workbench train`, "
                                          f"pid {info.get('pid') if info else '?'}): the Train pane shows its events "
                                          "so far; follow and stop it there.", title="Not attached", timeout=20)
                client.start()  # a fresh engine (a finished or interrupted run needs one for chat too)
        except StartAborted:
            return  # closed on purpose (quit or restart): nothing to report
        if generation != self._engine_generation or self._winding_down():
            client.close()  # restarted or quit meanwhile: this client is no longer the app's
            return
        self.bridge.send_fn = client.send

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.group == "engine":
            error = event.worker.error
            self.set_engine_state("error", f"{error}")
            self.notify(f"{error}", title="The engine could not start", severity="error", timeout=30)

    def _winding_down(self) -> bool:
        """True once the app has begun to shut down: Textual stops `is_running` before it removes the
        screens and before on_unmount, and engine events still queued then (the engine's end, above all)
        would look for panes that are gone. (The app once kept its own `_closing` flag for this, which
        shadowed Textual's MessagePump internal of that name.)"""
        return not self.is_running

    def on_engine_event(self, message: msg.EngineEvent) -> None:
        if message.generation != self._engine_generation or self._winding_down():
            return
        if self._panes_pending:  # the panes that handle it are still being built: keep the order
            self._after_panes.append(partial(self.on_engine_event, message))
            return
        event = message.event
        if isinstance(event, Hello):
            self.device = event.device
            self.engine_ready = True
            self.engine_pid = event.pid
            self.set_engine_state("ready")
            for note in event.notes:
                self.notify(note, title="Engine", severity="warning", timeout=20)
            self._data().engine_ready = True
            self.query_one(ConfigPane).engine_ready = True
            self._chat().engine_ready = True
            self._train().engine_pid = event.pid
        elif isinstance(event, State):
            self.set_engine_state(event.state, event.detail)
        elif isinstance(event, Error) and event.fatal:
            self._engine_lost(event)
            return
        self.bridge.dispatch(event)

    def _engine_lost(self, error: Error) -> None:
        self.engine_ready = False
        self.bridge.send_fn = None
        self.bridge.fail_all(error)
        self._data().engine_ready = False
        self.query_one(ConfigPane).engine_ready = False
        self._chat().engine_ready = False
        if error.type == "protocol_mismatch":
            self.set_engine_state("error", error.message)
            self.notify(f"{error.message} {error.hint}", title="Engine of another version", severity="error",
                        timeout=30)
            return
        train = self._train()
        if train.running:
            train.engine_lost()
        self.notify("The engine process ended unexpectedly; starting a new one. Nothing written to the "
                    "run directory is lost.", title="Engine lost", severity="warning", timeout=15)
        self.action_restart_engine()

    def set_engine_state(self, state: str, detail: str = "") -> None:
        self._engine_detail = detail
        self.engine_state = state
        self._update_status()

    def action_restart_engine(self) -> None:
        self._engine_generation += 1
        if self.client is not None:
            self.client.close()
            self.client = None
        self.engine_ready = False
        self.attach_run = None
        self.set_engine_state("starting", "restarting the engine")
        self._start_engine()

    # -- state flowing down -----------------------------------------------------------------------
    def _built(self, pane_id: str) -> bool:
        return pane_id not in self._panes_pending

    def watch_config(self, config: RunConfig) -> None:
        if not self.is_running:
            return  # set before the UI runs (tests, scripts): the panes are built from it
        self.query_one(ConfigPane).config = config
        for pane_id, pane in (("data-pane", self._data), ("train-pane", self._train), ("chat-pane", self._chat),
                              ("save-pane", self._save), ("eval-pane", self._eval)):
            if self._built(pane_id):
                pane().config = config
        self._update_status()

    def watch_config_path(self, path: Path) -> None:
        if not self.is_running:
            return
        self.query_one(ConfigPane).config_path = path
        self._update_status()

    def watch_active_run(self, run_dir: str | None) -> None:
        if not self.is_running:
            return
        for pane_id, pane in (("train-pane", self._train), ("chat-pane", self._chat), ("save-pane", self._save),
                              ("eval-pane", self._eval)):
            if self._built(pane_id):
                pane().run_dir = run_dir

    def watch_compare_run(self, run_dir: str | None) -> None:
        if not self.is_running:
            return
        for pane_id in ("train-pane", "save-pane"):
            if self._built(pane_id):
                self.query_one(f"#{pane_id}").compare_run = run_dir  # type: ignore[attr-defined]

    def watch_dirty(self) -> None:
        self._update_status()

    def _update_status(self) -> None:
        if not self.is_running or not self.screen_stack:
            return
        colour = {"ready": "green", "error": "red", "training": "cyan", "starting": "yellow", "loading": "yellow"}.get(
            self.engine_state, "white")
        detail = self._engine_detail
        unsaved = " [b yellow]● unsaved[/]" if self.dirty else ""
        if self.config.model.trust_remote_code:
            unsaved += " [b red]⚠ trust_remote_code ON[/]"
        device = f" on {self.device}" if self.device else ""
        self.query_one("#status-bar", OneLine).show(
            f"engine: [{colour}]{self.engine_state}[/]{device}{(' · ' + detail) if detail else ''}"
            f"  │  config: {self.config_path}{unsaved}")

    # -- messages coming up -----------------------------------------------------------------------
    def on_config_edited(self, message: msg.ConfigEdited) -> None:
        self.dirty = bool(config_diff(self._config_as_saved, message.config))
        self.config = message.config

    def on_config_file_loaded(self, message: msg.ConfigFileLoaded) -> None:
        self.config_path = message.path
        self._config_as_saved = message.config.model_copy(deep=True)
        self.dirty = False
        self.config = message.config

    def on_config_file_saved(self, message: msg.ConfigFileSaved) -> None:
        self.config_path = message.path
        self._config_as_saved = self.config.model_copy(deep=True)
        self.dirty = False

    def on_config_validity(self, message: msg.ConfigValidity) -> None:
        self.invalid_fields = message.invalid
        if self._built("train-pane"):
            self._train().invalid_fields = message.invalid

    def on_run_started(self, message: msg.RunStarted) -> None:
        self.active_run = message.run_dir

    def on_training_finished(self, message: msg.TrainingFinished) -> None:
        from workbench.ui.panes.save_pane import SavePane

        for save in self.query("#save-pane").results(SavePane):  # not built yet: it lists the runs when it is
            save.action_refresh_runs()
        done = message.done
        if message.replayed:
            return
        if done.status == "completed":
            self.notify(f"Training finished at step {done.step}; adapter saved to {done.adapter_path}.",
                        title="Training done")
        elif done.status == "failed":
            self.notify(done.message, title="Training failed", severity="error", timeout=20)

    def on_open_run(self, message: msg.OpenRun) -> None:
        run = RunDir(message.run_dir)
        if not self.dirty:
            self._show_run(run)
            return
        from workbench.ui.widgets.confirm import Confirm

        question = (f"Open {run.name}? Its own config replaces the one you are editing, and your unsaved "
                    f"edits of {self.config_path} are lost (Save as first to keep them).")
        self.push_screen(Confirm(question, yes="Open the run", no="Cancel"),
                         lambda yes: self._show_run(run) if yes else None)

    def _show_run(self, run: RunDir) -> None:
        """Make `run` the active run: its own config (what it was trained with), its history, its weights."""
        try:
            config = load_config(run.config_path)
        except ConfigError as exc:
            self.notify(str(exc), title="The run's config could not be read: keeping the current one",
                        severity="error", timeout=20)
        else:
            self.config_path = run.config_path
            self._config_as_saved = config.model_copy(deep=True)
            self.dirty = False
            self.config = config
        self.active_run = str(run.path)
        self._train().replay(run.path)
        self.action_pane("train")

    def on_runs_changed(self, message: msg.RunsChanged) -> None:
        if message.renamed:  # what pointed into the old folder follows it
            old, new = message.renamed
            if self.active_run and _same_path(self.active_run, old):
                self.active_run = new
            if self.compare_run and _same_path(self.compare_run, old):
                self.compare_run = new
            if _same_path(self.config_path.parent, old):
                self.config_path = Path(new) / self.config_path.name
        if self.active_run and not Path(self.active_run).exists():
            self.active_run = None
        if self.compare_run and not Path(self.compare_run).exists():
            self.compare_run = None

    def on_compare_run(self, message: msg.CompareRun) -> None:
        self.compare_run = message.run_dir

    # -- actions --------------------------------------------------------------------------------
    def action_pane(self, pane: str) -> None:
        self._tabs().active = pane
        self._focus_pane(pane)

    # Where the keyboard goes when a pane opens: never into a text box, where the pane's own keys
    # (n / p, t / x) would be typed instead of acting; the chat input is the exception by design. The
    # first of a pane's candidates that can take the focus now gets it: while training, Start is
    # disabled and Stop takes it (with Start alone, the focus went nowhere and t / x / r did nothing).
    FOCUS_ON_OPEN = {"config": ("#config-form",), "data": ("#data-sample-scroll",),
                     "train": ("#train-start", "#train-stop", "#train-resume"), "chat": ("#chat-input",),
                     "save": ("#runs-table",), "eval": ("#eval-table",)}

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # A switch made since this message was posted wins: focusing the older pane would switch back.
        if event.pane.id != event.tabbed_content.active:
            return
        # While the app shuts down, TabbedContent may still activate a tab after the last screen is gone
        # (CI saw ScreenStackError here when a test left right after opening a run).
        if not self.screen_stack:
            return
        # Already inside the pane (the palette's "Field: ..." switches and then focuses that field's
        # editor): a switch made with the focus where it belongs; the pane's default would undo it.
        focused = self.screen.focused
        if focused is not None and event.pane in focused.ancestors:
            return
        self._focus_pane(event.pane.id or "")

    def _focus_pane(self, pane: str) -> None:
        # Focus at once: if the focus stayed on a widget of the pane just hidden, Textual would move it
        # to a neighbour there, and focusing a widget in a hidden tab switches back to that tab.
        candidates = self._focus_targets.get(pane)
        if candidates is None or not all(widget.is_attached for widget in candidates):
            # query, not query_one: while the app shuts down, TabbedContent activates a tab whose pane
            # is already removed (a NoMatches at exit, seen when quitting right after a pane switch).
            # The result is kept: a query walks the whole DOM, milliseconds on every pane switch.
            candidates = [widget for selector in self.FOCUS_ON_OPEN.get(pane, ())
                          for widget in self.query(selector).results()]
            if not candidates:
                return
            self._focus_targets[pane] = candidates
        widget = next((w for w in candidates if w.focusable), None)
        # Not again when it already has the focus (TabActivated follows action_pane): focus() repaints
        # the widget, and that repaint came a frame after the switch: the Data pane's 39-line sample,
        # 13 KB of escape sequences, sent twice.
        if widget is not None and widget is not self.screen.focused:
            widget.focus(scroll_visible=False)

    def action_leave_field(self) -> None:
        """Esc: out of a text box, back to the pane, so digits and letters act as keys again."""
        self._focus_pane(self._tabs().active)

    def action_help(self) -> None:
        # Imported here, not at start-up: its Markdown widget pulls in pygments and markdown-it (40 ms).
        from workbench.ui.help import HelpScreen

        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        if self._built("train-pane") and self._train().running:
            run = Path(self.active_run).name if self.active_run else "the run"
            self.exit_note = (f"Training continues in the engine (pid {self.engine_pid}). "
                              f"Re-attach with: workbench attach {run}")
        self.exit(0)

    def on_unmount(self) -> None:
        self._gc.stop()
        gc.unfreeze()  # the frozen objects can be collected again (matters where apps run in one process: tests)
        if self.client is not None:
            self.client.close()
