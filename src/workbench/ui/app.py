"""The workbench TUI: five panes over one engine process. The App only wires things together: it owns
the run configuration and the engine connection; the panes own their behaviour."""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.reactive import Reactive, reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from workbench.client import EngineClient, StartAborted
from workbench.config import ConfigError, RunConfig, config_to_dict, load_config
from workbench.protocol import Done, Error, Event, Hello, State
from workbench.runs import RunDir
from workbench.textwidth import align_indic_widths
from workbench.ui.bridge import EngineBridge
from workbench.ui.commands import PANES, WorkbenchCommands
from workbench.ui.gc_schedule import IdleCollector
from workbench.ui.messages import ConfigChanged, EngineEvent
from workbench.ui.panes.config_pane import DEFERRED_SECTIONS, ConfigPane
from workbench.ui.widgets.deferred import Deferred
from workbench.ui.widgets.footer import KeyBar

align_indic_widths()  # before anything renders: Hindi lines must measure as terminals draw them

# The panes after the first: their modules are imported and their widgets built after the first frame
# (Deferred), so that start-up pays only for the Config pane the user sees.
DEFERRED_PANES = {
    "data": ("workbench.ui.panes.data_pane", "DataPane"),
    "train": ("workbench.ui.panes.train_pane", "TrainPane"),
    "chat": ("workbench.ui.panes.chat_pane", "ChatPane"),
    "save": ("workbench.ui.panes.save_pane", "SavePane"),
}


class WorkbenchScreen(Screen[None]):
    """The main screen. Moving the focus does not repaint all of it.

    Textual's `Screen.focused` is a repainting reactive: every focus move marked the whole screen dirty,
    so each pane switch was followed by a second, full-screen frame (about 20 KB of escape sequences for
    160x50 over SSH, and 5-10 ms of UI time on a 2-core machine). What focus changes is drawn anyway:
    the widgets whose styles depend on it (`:focus`, `:focus-within`) are restyled and refresh
    themselves, and the focused and blurred widgets repaint on their Focus / Blur events.
    """

    focused: Reactive[Widget | None] = Reactive(None, repaint=False)


def build_pane(name: str) -> Any:
    module, cls = DEFERRED_PANES[name]
    return getattr(importlib.import_module(module), cls)(id=f"{name}-pane")


class WorkbenchApp(App[int]):
    CSS_PATH = "workbench.tcss"
    TITLE = "workbench"
    COMMANDS = App.COMMANDS | {WorkbenchCommands}
    BINDINGS = [
        *[(title[0], f"pane('{pane}')", title[2:]) for pane, title in PANES],
        ("f1", "help", "Help"),
        ("escape", "leave_field", "Leave field"),
        ("ctrl+q", "quit", "Quit"),
    ]

    dirty: reactive[bool] = reactive(False)
    engine_state: reactive[str] = reactive("starting")

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
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            self.animation_level = "none"
        self.config_path = Path(config_path)
        self.config_error = ""
        try:
            self.config = load_config(self.config_path)
        except ConfigError as exc:
            self.config = RunConfig()
            self.config_error = str(exc)
        self.attach_run = attach
        self.engine_factory = engine_factory or (lambda on_event: EngineClient(on_event))
        self.gpu_module = gpu_module
        self.start_engine = start_engine
        self.bridge = EngineBridge()
        self.client: Any = None
        self.engine_ready = False
        self.device = ""
        self.opened_adapter: str | None = None
        self._engine_generation = 0
        self._closing = False
        # Widgets built after the first frame (by id): engine events wait for them, to keep their order.
        self._panes_pending = {f"{name}-pane" for name in DEFERRED_PANES} | {f"section-{name}" for name in DEFERRED_SECTIONS}
        self._after_panes: list[Callable[[], None]] = []
        self._panes_ready_event = asyncio.Event()
        self._gc = IdleCollector()
        self._tabbed: TabbedContent | None = None
        self._focus_targets: dict[str, list[Any]] = {}

    # -- layout ---------------------------------------------------------------------------------
    def get_default_screen(self) -> Screen[None]:
        return WorkbenchScreen(id="_default")

    def compose(self) -> ComposeResult:
        with TabbedContent(initial="config", id="panes"):
            with TabPane(PANES[0][1], id="config"):
                yield ConfigPane(id="config-pane")
            for name, title in PANES[1:]:
                with TabPane(title, id=name):
                    yield Deferred(partial(build_pane, name), self.deferred_mounted)
        yield Static("", id="status-bar")
        yield KeyBar()  # not Footer(): one widget, not one per key, redrawn without a layout (footer.py)

    NARROW_BELOW = 110  # columns: side panels stack under the main ones

    def on_resize(self, event: Any) -> None:
        self.screen.set_class(event.size.width < self.NARROW_BELOW, "narrow")

    def pane(self, kind: type[Any] | str) -> Any:
        """A pane by class or by name ("config", "data", "train", "chat", "save")."""
        return self.query_one(f"#{kind}-pane") if isinstance(kind, str) else self.query_one(kind)

    async def panes_mounted(self) -> None:
        """Wait until every deferred pane is built (for tests and scripts that drive the app)."""
        await self._panes_ready_event.wait()

    def when_panes_ready(self, callback: Callable[[], None]) -> None:
        if self._panes_pending:
            self._after_panes.append(callback)
        else:
            callback()

    def deferred_mounted(self, widget: Any) -> None:
        self._panes_pending.discard(str(widget.id))
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
        if self.config_error:
            self.notify(self.config_error, title="Config not loaded: using defaults", severity="error", timeout=20)
        if self.start_engine:
            self.set_engine_state("starting", "starting the engine (imports unsloth, torch, transformers)")
            # After the first frame: spawning the process costs the first paint about 30 ms, and the
            # engine's own start-up takes seconds either way.
            self.call_after_refresh(self._start_engine)
        self.when_panes_ready(self._schedule_gc)

    def _schedule_gc(self) -> None:
        # Start-up leaves a few hundred thousand GC-tracked objects (widgets, styles, imported modules)
        # that live as long as the app, and every full collection walked all of them: full GCs of up to
        # 0.64 s over about 1 M tracked objects were measured, each a visible freeze of the UI. Frozen,
        # they leave the collector's generations, so a full GC scans only what was made since. From here
        # on, collections run from a timer, the full ones when the user pauses (gc_schedule.py).
        if self._closing:  # on_unmount unfreezes; freezing after it would pin this app's objects
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
        client = self.engine_factory(lambda event: self.post_message(EngineEvent(event, generation)))
        # Known to the app before it starts, so that quitting (on_unmount) or a restart can close it and
        # so cut a start-up short instead of waiting for it.
        self.client = client
        if self._closing:
            client.close()
            return
        run = self._find_run(self.attach_run) if self.attach_run else None
        if self.attach_run and run is None:
            raise ConnectionError(f"no run named {self.attach_run!r} (looked in {self.config.output.runs_dir})")
        info = run.engine_info() if run else None
        try:
            if run and info and run.engine_alive():
                client.connect(str(info["socket"]))
            else:
                client.start()  # a finished or interrupted run: show its history, with a fresh engine for chat
        except StartAborted:
            return  # closed on purpose (quit or restart): nothing to report
        if generation != self._engine_generation or self._closing:
            client.close()  # restarted or quit meanwhile: this client is no longer the app's
            return
        if run:
            self.call_from_thread(self.when_panes_ready, partial(self._replay_attached, run))
        self.bridge.send_fn = client.send

    def _find_run(self, name: str) -> RunDir | None:
        for candidate in (Path(name), Path(self.config.output.runs_dir) / name):
            if (candidate / "events.jsonl").exists():
                return RunDir(candidate)
        return None

    def _replay_attached(self, run: RunDir) -> None:
        train = self.pane("train")
        train.replay(run.path, then=lambda: setattr(train, "running", run.engine_alive()))
        self.action_pane("train")

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.group == "engine":
            error = event.worker.error
            self.set_engine_state("error", f"{error}")
            self.notify(f"{error}", title="The engine could not start", severity="error", timeout=30)

    def on_engine_event(self, message: EngineEvent) -> None:
        if message.generation != self._engine_generation or self._closing:
            return
        if self._panes_pending:  # the panes that handle it are still being built: keep the order
            self._after_panes.append(partial(self.on_engine_event, message))
            return
        event = message.event
        if isinstance(event, Hello):
            self.device = event.device
            self.engine_ready = True
            self.set_engine_state("ready")
            self.pane("data").engine_ready()
        elif isinstance(event, State):
            self.set_engine_state(event.state, event.detail)
        elif isinstance(event, Error) and event.type == "engine_gone":
            self.engine_ready = False
            self.bridge.send_fn = None
            self.bridge.fail_all(event)
            train = self.pane("train")
            if train.running:
                train.engine_lost()
            self.notify("The engine process ended unexpectedly; starting a new one. Nothing written to the "
                        "run directory is lost.", title="Engine lost", severity="warning", timeout=15)
            self.action_restart_engine()
            return
        self.bridge.dispatch(event)

    def set_engine_state(self, state: str, detail: str = "") -> None:
        self.engine_state = state
        self._engine_detail = detail
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

    # -- config ---------------------------------------------------------------------------------
    def apply_config(self, config: RunConfig, data_affecting: bool, dirty: bool = True) -> None:
        self.config = config
        self.dirty = dirty
        self.post_message(ConfigChanged(data_affecting))

    def on_config_changed(self, message: ConfigChanged) -> None:
        self.pane(ConfigPane).refresh_fields()
        self._update_status()
        if message.data_affecting and "data-pane" not in self._panes_pending:  # a pane built later reads the config then
            self.pane("data").config_changed()

    def invalid_fields(self) -> list[str]:
        return self.pane(ConfigPane).invalid_fields()

    def watch_dirty(self) -> None:
        self._update_status()

    def _update_status(self) -> None:
        if not self.query("#status-bar"):
            return
        colour = {"ready": "green", "error": "red", "training": "cyan", "starting": "yellow", "loading": "yellow"}.get(
            self.engine_state, "white")
        detail = getattr(self, "_engine_detail", "")
        unsaved = " [b yellow]● unsaved[/]" if self.dirty else ""
        if self.config.model.trust_remote_code:
            unsaved += " [b red]⚠ trust_remote_code ON[/]"
        device = f" on {self.device}" if self.device else ""
        self.query_one("#status-bar", Static).update(
            f"engine: [{colour}]{self.engine_state}[/]{device}{(' · ' + detail) if detail else ''}"
            f"  │  config: {self.config_path}{unsaved}")

    # -- cross-pane -----------------------------------------------------------------------------
    def training_finished(self, done: Done) -> None:
        self.pane("save").action_refresh_runs()
        if done.status == "completed":
            self.opened_adapter = None  # the engine holds the freshly trained adapter in memory
            self.notify(f"Training finished at step {done.step}; adapter saved to {done.adapter_path}.",
                        title="Training done")
        elif done.status == "failed":
            self.notify(done.message, title="Training failed", severity="error", timeout=20)

    def current_run_dir(self) -> str | None:
        return self.pane("train").run_dir

    def chat_adapter(self) -> str | None:
        return self.opened_adapter

    def save_source(self) -> dict[str, Any]:
        """What the Save pane saves: an opened past run's adapter (with its own config), or the engine's model."""
        if not self.opened_adapter:
            return {}
        run_config = Path(self.opened_adapter).parent / "config.toml"
        try:
            config = load_config(run_config)
        except ConfigError:
            config = self.config
        return {"adapter": self.opened_adapter, "config": config_to_dict(config)}

    def open_run(self, path: str) -> None:
        adapter = RunDir(path).adapter_dir
        opened = str(adapter) if (adapter / "adapter_config.json").exists() else None

        def shown() -> None:  # again once the history is shown: its Done went through training_finished
            self.opened_adapter = opened

        shown()
        self.pane("train").replay(path, then=shown)
        self.action_pane("train")

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
                     "save": ("#runs-table",)}

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # A switch made since this message was posted wins: focusing the older pane would switch back.
        if event.pane.id == event.tabbed_content.active:
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

    def on_unmount(self) -> None:
        self._closing = True
        self._gc.stop()
        gc.unfreeze()  # the frozen objects can be collected again (matters where apps run in one process: tests)
        if self.client is not None:
            self.client.close()
