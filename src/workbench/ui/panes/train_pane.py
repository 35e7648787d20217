"""Train pane: start / stop / resume, the live loss curve (zoom, smoothing, a second run to compare) and
metrics, the log (scrolled and searched: widgets/search_log.py), and the GPU panel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Button, ProgressBar, RichLog, Static

from workbench import requests as rq
from workbench.config import RunConfig
from workbench.formatting import (
    best_line,
    checkpoint_line,
    done_line,
    eval_line,
    generation_eval_line,
    log_line,
    metrics_lines,
    paused_line,
    paused_phase,
    probe_line,
    resumed_line,
    scores_line,
    start_line,
    status_line,
)
from workbench.gpu import Reading, poll_gpus
from workbench.protocol import (
    BestCheckpoint,
    Checkpoint,
    Done,
    Error,
    Eval,
    Event,
    GenerationEval,
    Log,
    Memory,
    Paused,
    Probe,
    Resumed,
    Status,
    TrainStart,
)
from workbench.runs import RunDir
from workbench.ui.bridge import EngineBridge
from workbench.ui.history import History, event_key, fold
from workbench.ui.messages import GpuSample, RunStarted, TrainingFinished
from workbench.ui.widgets.confirm import Confirm
from workbench.ui.widgets.gpu_panel import GpuPanel
from workbench.ui.widgets.loss_chart import LossChart
from workbench.ui.widgets.search_log import LogView, SearchLog


class TrainPane(Horizontal):
    BINDINGS = [
        ("t", "start", "Start"), ("x", "stop", "Stop"), ("p", "pause", "Pause"),
        # r continues a paused run, or resumes a stopped one from its newest checkpoint.
        ("r", "resume", "Resume"),
        Binding("e", "quick_eval", "Quick eval"),
        # The chart's controls: one key-bar entry for the pair of zoom keys ("=" is "+" without shift).
        Binding("plus,equals_sign", "zoom_in", "Zoom", key_display="+/-"),
        Binding("minus", "zoom_out", "Zoom out", show=False),
        Binding("s", "smoothing", "Smoothing"),
        Binding("slash", "search_log", "Search log"),
        Binding("l", "focus_log", "Log", show=False),
    ]
    LOG_LINES = 2000  # the RichLog keeps this many lines; a replay writes no more than that

    config: reactive[RunConfig] = reactive(RunConfig, always_update=True, init=False)
    """What Start trains."""
    run_dir: reactive[str | None] = reactive(None, init=False)
    """The active run: what Resume continues."""
    invalid_fields: reactive[tuple[str, ...]] = reactive((), init=False)
    """Config fields that do not validate: Start refuses until they are fixed."""
    engine_pid: reactive[int | None] = reactive(None, init=False)
    compare_run: reactive[str | None] = reactive(None, init=False)
    """A second run whose loss curve the chart overlays."""

    def __init__(self, engine: EngineBridge, config: RunConfig, run_dir: str | None = None,
                 invalid_fields: tuple[str, ...] = (), gpu_module: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.gpu_module = gpu_module
        self.set_reactive(TrainPane.config, config)
        self.set_reactive(TrainPane.run_dir, run_dir)
        self.set_reactive(TrainPane.invalid_fields, invalid_fields)
        self._checking_memory = False
        """A Start is waiting for the memory forecast (or the user's answer to it)."""
        self.running = False
        self.last_log: Log | None = None
        self.total_steps = 0
        self.last_done: Done | None = None
        self._start: TrainStart | None = None
        self._phase_is_status = False
        """The phase line shows a Status message ("compiling…"): the run's own line returns with the steps."""
        self._gpu_stop = threading.Event()
        self._replay_generation = 0
        self._held: list[Event] | None = None
        """Live events that arrive while a replay reads the file: shown after the history, in order."""
        self.paused_at: int | None = None
        """The step a running run waits at (paused by p, a chat, or a quick eval); None while it trains."""
        self._generation_evals: list[GenerationEval] = []
        self._best: BestCheckpoint | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="train-left"):
            with Horizontal(id="train-buttons"):
                yield Button("Start ▶", id="train-start", variant="success")
                yield Button("Stop ■", id="train-stop", variant="error", disabled=True)
                yield Button("Pause ‖", id="train-pause", disabled=True)
                yield Button("Resume ↻", id="train-resume", disabled=True)
                yield Static("", id="train-run")
            # Not indeterminate while idle: that animates at 15 frames/s, redrawn (and, over SSH, sent) for
            # as long as the pane is open. It animates only while a run starts (_train), when it means "busy".
            yield ProgressBar(total=1, show_eta=False, id="train-progress")
            yield Static("Not started. Press Start (t) to train with the current config.", id="train-phase")
            yield Static("", id="train-metrics")
            yield LossChart(id="loss-chart")
            yield Static("", id="train-scores")
            yield LogView(SearchLog(id="train-log", max_lines=self.LOG_LINES, wrap=True, markup=True),
                          id="train-log-view")
        with Vertical(id="train-right"):
            yield GpuPanel(id="gpu-panel")

    def on_mount(self) -> None:
        self.engine.subscribe(self.handle_event)
        self._poll_gpus(self.query_one(GpuPanel))

    def on_unmount(self) -> None:
        self._gpu_stop.set()

    @work(thread=True, exclusive=True, exit_on_error=False, group="gpu")
    def _poll_gpus(self, panel: GpuPanel) -> None:
        # The panel is passed in from the UI thread (no DOM query from this thread); its engine_pid is
        # a plain attribute, read before each poll.
        def post(reading: Reading) -> None:
            self.post_message(GpuSample(reading))

        poll_gpus(post, self._gpu_stop,
                  interval_s=1.0, module=self.gpu_module, engine_pid=lambda: panel.engine_pid)

    def watch_engine_pid(self, pid: int | None) -> None:
        self.query_one(GpuPanel).engine_pid = pid  # a new or restarted engine: the gauges follow its process

    def on_gpu_sample(self, message: GpuSample) -> None:
        reading = message.reading
        self.query_one(GpuPanel).show(reading.gpus, reading.reason, reading.host)

    # -- actions ----------------------------------------------------------------------------------
    def _log(self, text: str) -> None:
        self.query_one("#train-log", RichLog).write(text)

    def _buttons(self) -> None:
        start, stop = self.query_one("#train-start", Button), self.query_one("#train-stop", Button)
        had_focus = start.has_focus or stop.has_focus
        start.disabled = self.running
        stop.disabled = not self.running
        paused = self.running and self.paused_at is not None
        resumable = bool(self.run_dir and RunDir(self.run_dir).newest_checkpoint())
        resume = self.query_one("#train-resume", Button)
        resume.disabled = not paused and (self.running or not resumable)
        resume.label = "Continue ▶" if paused else "Resume ↻"
        self.query_one("#train-pause", Button).disabled = not self.running or paused
        if had_focus:  # keep the keyboard in this pane, on the button that makes sense now (x / t keep working)
            (stop if self.running else start).focus(scroll_visible=False)

    @on(Button.Pressed, "#train-start")
    def action_start(self) -> None:
        """Start a run, after the memory forecast: one it says will run out of memory asks first."""
        if self.running or self._checking_memory:
            return
        if self.invalid_fields:
            self._train(resume=False)  # says what to fix
            return
        self._checking_memory = True
        self._phase("Checking the memory forecast…")
        self.engine.request(rq.MemoryForecast(config=self.config), on_answer=self._start_after_forecast,
                            on_error=lambda _error: self._start_checked(True))

    def _start_after_forecast(self, answer: rq.MemoryForecastAnswer) -> None:
        if not answer.gpus_ok:
            question = (f"The GPUs this config asks for: {answer.gpus_line}.\n\nStart anyway?")
            self.app.push_screen(Confirm(question, yes="Start anyway", no="Cancel"), self._start_checked)
            return
        if answer.free_gib is None or "out of memory" not in answer.verdict:
            self._start_checked(True)
            return
        question = (f"The memory forecast for this config: {answer.verdict} ({answer.gpu}).\n\n"
                    "The run would most likely stop with an out-of-memory error in its first steps. In the Config "
                    "pane, f applies the \"fits\" profile (4-bit, offloaded checkpointing, layers streamed, a "
                    "micro-batch that fits)."
                    "\n\nStart anyway?")
        self.app.push_screen(Confirm(question, yes="Start anyway", no="Cancel"), self._start_checked)

    def _start_checked(self, start: bool | None) -> None:
        self._checking_memory = False
        if start:
            self._train(resume=False)
        else:
            self._phase("Not started: see the Config pane's memory line (f applies the \"fits\" profile).")

    @on(Button.Pressed, "#train-resume")
    def action_resume(self) -> None:
        if self.running and self.paused_at is not None:
            self.engine.request(rq.Continue())
        elif self.run_dir:
            self._train(resume=True)

    @on(Button.Pressed, "#train-pause")
    def action_pause(self) -> None:
        if not self.running:
            self._phase("Nothing is training: p pauses a running run between two steps.")
        elif self.paused_at is None:
            self.engine.request(rq.Pause())
            self._phase("Pausing at the next step boundary…")

    def action_quick_eval(self) -> None:
        """A few held-out rows summarized by the live adapter; the run pauses for it and stays paused."""
        if not self.running:
            self._phase("Nothing is training: the Eval pane (6) judges a finished run.")
            return
        if self.paused_at is None:
            self._phase("Pausing at the next step boundary for a quick eval…")
        self._log("[cyan]quick eval: summarizing held-out rows with the live adapter…[/]")
        self.engine.request(rq.QuickEval(), on_answer=self._quick_eval_done,
                            on_error=lambda error: self._log(f"[red]quick eval: {error.message}[/] {error.hint}"))

    def _quick_eval_done(self, answer: rq.QuickEvalDone) -> None:
        self._phase(f"Paused at step {answer.step}. Quick eval on {answer.rows} held-out rows: "
                    f"ROUGE-L {answer.rouge_l:.1f}, chrF++ {answer.chrf:.1f}. r: continue.")

    def _phase(self, text: str) -> None:
        self.query_one("#train-phase", Static).update(text)

    @on(Button.Pressed, "#train-stop")
    def action_stop(self) -> None:
        if self.running:
            self.engine.request(rq.Stop())
            self.query_one("#train-phase", Static).update("Stopping at the next step boundary, then saving a checkpoint…")

    def watch_run_dir(self, run_dir: str | None) -> None:
        if self.is_mounted:
            self._buttons()
            if run_dir and not self.running:  # opened, or renamed: the label names the folder as it is now
                self.query_one("#train-run", Static).update(f"run: {Path(run_dir).name}")
            self._overlay()

    # -- the chart's controls ---------------------------------------------------------------------
    def watch_compare_run(self) -> None:
        if self.is_mounted:
            self._overlay()

    def _overlay(self) -> None:
        # A run compared with itself is no comparison: the active run's own curves are enough.
        other, active = self.compare_run, self.run_dir
        same = other is not None and active is not None and Path(other).absolute() == Path(active).absolute()
        self.query_one(LossChart).compare_with(None if same else other)

    def action_zoom_in(self) -> None:
        self.query_one(LossChart).zoom(+1)

    def action_zoom_out(self) -> None:
        self.query_one(LossChart).zoom(-1)

    def action_smoothing(self) -> None:
        self.query_one(LossChart).cycle_smoothing()

    def action_search_log(self) -> None:
        self.query_one(LogView).open_search()

    def action_focus_log(self) -> None:
        self.query_one(LogView).focus_log()

    def _train(self, resume: bool) -> None:
        if self.running:
            return
        if self.invalid_fields:
            self.query_one("#train-phase", Static).update(
                f"[red]Fix the config first: {', '.join(self.invalid_fields)}[/]")
            return
        self._cancel_replay()  # a history still being read must not land on top of the new run
        request = rq.Train(config=self.config, resume=resume, run_dir=self.run_dir if resume else None)
        if not resume:
            self.query_one(LossChart).clear_history()
            self.query_one("#train-log", RichLog).clear()
            self._generation_evals, self._best = [], None
            self._show_scores()
        self.running = True
        self._buttons()
        self.query_one("#train-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#train-phase", Static).update("Starting: loading the model and tokenizing the data…")
        self.engine.request(request, on_answer=self._started, on_error=self._failed)

    def _started(self, answer: rq.TrainStarted) -> None:
        self.query_one("#train-run", Static).update(f"run: {answer.run}")
        self.post_message(RunStarted(answer.run_dir))

    def _failed(self, error: Error) -> None:
        self.running = False
        self._stop_busy_bar()
        self._buttons()
        self.query_one("#train-phase", Static).update(f"[red]{error.message}[/] {error.hint}")

    # -- events -----------------------------------------------------------------------------------
    def handle_event(self, event: Event) -> None:
        if self._held is not None:
            self._held.append(event)
            return
        if isinstance(event, TrainStart):
            self.running, self.paused_at = True, None
            self._show_start(event)
            self.query_one("#train-progress", ProgressBar).update(total=event.total_steps, progress=event.start_step)
            self.query_one("#train-phase", Static).update(start_line(event))
            self._start, self._phase_is_status = event, False
            self._buttons()
        elif isinstance(event, Log):
            if self._phase_is_status and self._start is not None:  # "compiling…" and the like are over
                self.query_one("#train-phase", Static).update(start_line(self._start))
                self._phase_is_status = False
            self.last_log = event
            self.query_one(LossChart).add_loss(event.step, event.loss)
            self.query_one("#train-progress", ProgressBar).update(total=event.total_steps, progress=event.step)
            self._metrics(event)
            self._log(log_line(event))
        elif isinstance(event, Eval):
            self.query_one(LossChart).add_eval(event.step, event.eval_loss)
            self._log(eval_line(event))
        elif isinstance(event, GenerationEval):
            self._generation_evals.append(event)
            self._show_scores()
            self._log(generation_eval_line(event))
        elif isinstance(event, BestCheckpoint):
            self._best = event
            self._show_scores()
            self._log(best_line(event))
        elif isinstance(event, Paused):
            self.paused_at = event.step
            self._phase(paused_phase(event))
            self._log(paused_line(event))
            self._buttons()
        elif isinstance(event, Resumed):
            self.paused_at = None
            if self._start is not None:
                self._phase(start_line(self._start))
            self._log(resumed_line(event))
            self._buttons()
        elif isinstance(event, Probe):
            self._log(probe_line(event))
        elif isinstance(event, Memory):
            self.query_one(GpuPanel).show_memory(event)
        elif isinstance(event, Checkpoint):
            self._log(checkpoint_line(event))
            self._buttons()
        elif isinstance(event, Status):
            self.query_one("#train-phase", Static).update(event.message)
            self._phase_is_status = True
            self._log(status_line(event))
        elif isinstance(event, Done):
            self.running, self.paused_at = False, None
            self.last_done = event
            self._stop_busy_bar()
            self.query_one("#train-phase", Static).update(done_line(event))
            self._log(done_line(event))
            self._buttons()
            self.post_message(TrainingFinished(event, replayed=False))

    def _stop_busy_bar(self) -> None:
        # A run that ended before its first step (failed to load, stopped early) leaves no total to show.
        bar = self.query_one("#train-progress", ProgressBar)
        if bar.total is None:
            bar.update(total=1, progress=0)

    def _show_start(self, event: TrainStart) -> None:
        self.total_steps = event.total_steps
        self.query_one("#train-run", Static).update(f"run: {Path(event.run_dir).name}")

    def engine_lost(self) -> None:
        """The engine died mid-run (killed, crashed, out of host memory): say what is kept, offer resume."""
        self.running, self.paused_at = False, None
        self._stop_busy_bar()
        step = self.last_log.step if self.last_log else 0
        checkpoint = RunDir(self.run_dir).newest_checkpoint() if self.run_dir else None
        kept = (f"The newest complete checkpoint is {checkpoint.name}: press Resume (r) to continue from it."
                if checkpoint else "No checkpoint was complete yet: Start begins again.")
        self.query_one("#train-phase", Static).update(
            f"[red]The engine stopped unexpectedly at step {step} (killed or crashed).[/] {kept}")
        self._log(f"[red]engine lost at step {step}[/]")
        self._buttons()

    def _show_scores(self) -> None:
        scores = self.query_one("#train-scores", Static)
        scores.update(scores_line(self._generation_evals, self._best))
        scores.display = bool(self._generation_evals)

    def _metrics(self, e: Log) -> None:
        self.query_one("#train-metrics", Static).update(metrics_lines(e))

    # -- history ----------------------------------------------------------------------------------
    def replay(self, run_dir: str | Path, then: Callable[[], None] | None = None) -> None:
        """Show a run's whole history from its events.jsonl (re-attach, or opening a past run).

        The file is read and folded in a thread, then shown at once (`train_history`); `then` runs after
        it is shown. Live events arriving meanwhile are held and shown after it, except those the file
        already had.
        """
        self._replay_generation += 1
        if self._held is None:
            self._held = []
        self._read_history(RunDir(run_dir), self._replay_generation, then)

    @work(thread=True, exit_on_error=False, group="replay")
    def _read_history(self, run: RunDir, generation: int, then: Callable[[], None] | None) -> None:
        try:
            history: History | str = fold(run.iter_events(), self.LOG_LINES)
        except OSError as exc:  # an unreadable file must not leave the live events held forever
            history = f"{type(exc).__name__}: {exc}"
        self.app.call_from_thread(self._show_history, run, history, generation, then)

    def _show_history(self, run: RunDir, history: History | str, generation: int,
                      then: Callable[[], None] | None) -> None:
        if generation != self._replay_generation:
            return  # a newer replay (or a new run) took over
        if isinstance(history, str):
            self._log(f"[red]could not read {run.events_path}: {history}[/]")
            self._release_held(set())
            return
        chart, log = self.query_one(LossChart), self.query_one("#train-log", RichLog)
        chart.clear_history()
        for step, loss in history.losses:
            chart.add_loss(step, loss)
        for step, eval_loss in history.evals:
            chart.add_eval(step, eval_loss)
        log.clear()
        if history.lines:
            # One write of the kept lines: wrapped and trimmed as line-by-line writes would be, for a
            # tenth of the cost (each write measures and renders on its own).
            log.write(Text("\n").join(Text.from_markup(line) for line in history.lines))
        if history.start:
            self._show_start(history.start)
            # The folder's name now: the events were written under the name it had then (a renamed run).
            self.query_one("#train-run", Static).update(f"run: {run.name}")
        if history.progress:
            total, progress = history.progress
            self.query_one("#train-progress", ProgressBar).update(total=total, progress=progress)
        if history.phase is not None:
            self.query_one("#train-phase", Static).update(history.phase)
        self._start, self._phase_is_status = history.start, history.phase_is_status
        if history.last_log:
            self.last_log = history.last_log
            self._metrics(history.last_log)
        for report in history.memory.values():
            self.query_one(GpuPanel).show_memory(report)
        if history.running is not None:
            self.running = history.running
        self.paused_at = history.paused_at
        self._generation_evals, self._best = list(history.generation_evals), history.best
        self._show_scores()
        if history.done:
            self.last_done = history.done
            self.post_message(TrainingFinished(history.done, replayed=True))
        if not run.engine_alive():
            self.running, self.paused_at = False, None
        self._buttons()
        chart.replot()
        self._log(f"[dim]replayed {history.count} events from {run.events_path} at {time.strftime('%H:%M:%S')}[/]")
        if then is not None:
            then()
        self._release_held(history.keys)

    def _release_held(self, shown: set[tuple[str, float, int]]) -> None:
        held, self._held = self._held or [], None
        for event in held:
            if event_key(event) not in shown:
                self.handle_event(event)

    def _cancel_replay(self) -> None:
        if self._held is not None:
            self._replay_generation += 1
            self._release_held(set())
