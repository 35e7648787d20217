"""Train pane: start / stop / resume, the live loss curve and metrics, log lines, and the GPU panel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, ProgressBar, RichLog, Static

from workbench.config import config_to_dict
from workbench.gpu import poll_gpus
from workbench.protocol import (
    Checkpoint,
    Done,
    Error,
    Eval,
    Event,
    Hello,
    Log,
    Memory,
    Result,
    Status,
    TrainStart,
)
from workbench.runs import RunDir
from workbench.ui.messages import GpuSample
from workbench.ui.panes.train_history import (
    History,
    checkpoint_line,
    done_line,
    done_phase,
    eval_line,
    event_key,
    fold,
    log_line,
    start_phase,
    status_line,
)
from workbench.ui.widgets.gpu_panel import GpuPanel
from workbench.ui.widgets.loss_chart import LossChart


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainPane(Horizontal):
    BINDINGS = [("t", "start", "Start"), ("x", "stop", "Stop"), ("r", "resume", "Resume")]
    LOG_LINES = 2000  # the RichLog keeps this many lines; a replay writes no more than that

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_dir: str | None = None
        self.running = False
        self.last_log: Log | None = None
        self.total_steps = 0
        self.last_done: Done | None = None
        self._gpu_stop = threading.Event()
        self._replay_generation = 0
        self._held: list[Event] | None = None
        """Live events that arrive while a replay reads the file: shown after the history, in order."""

    def compose(self) -> ComposeResult:
        with Vertical(id="train-left"):
            with Horizontal(id="train-buttons"):
                yield Button("Start ▶", id="train-start", variant="success")
                yield Button("Stop ■", id="train-stop", variant="error", disabled=True)
                yield Button("Resume ↻", id="train-resume", disabled=True)
                yield Static("", id="train-run")
            # Not indeterminate while idle: that animates at 15 frames/s, redrawn (and, over SSH, sent) for
            # as long as the pane is open. It animates only while a run starts (_train), when it means "busy".
            yield ProgressBar(total=1, show_eta=False, id="train-progress")
            yield Static("Not started. Press Start (t) to train with the current config.", id="train-phase")
            yield Static("", id="train-metrics")
            yield LossChart(id="loss-chart")
            yield RichLog(id="train-log", max_lines=self.LOG_LINES, wrap=True, markup=True)
        with Vertical(id="train-right"):
            yield GpuPanel(id="gpu-panel")

    def on_mount(self) -> None:
        self.app.bridge.subscribe(self.handle_event)  # type: ignore[attr-defined]
        self._poll_gpus(self.query_one(GpuPanel))

    def on_unmount(self) -> None:
        self._gpu_stop.set()

    @work(thread=True, exclusive=True, exit_on_error=False, group="gpu")
    def _poll_gpus(self, panel: GpuPanel) -> None:
        module = getattr(self.app, "gpu_module", None)
        # The panel is passed in from the UI thread (no DOM query from this thread); its engine_pid is
        # a plain attribute, read before each poll.
        poll_gpus(lambda reading: self.post_message(GpuSample(reading)), self._gpu_stop,
                  interval_s=1.0, module=module, engine_pid=lambda: panel.engine_pid)

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
        resumable = bool(self.run_dir and RunDir(self.run_dir).newest_checkpoint())
        self.query_one("#train-resume", Button).disabled = self.running or not resumable
        if had_focus:  # keep the keyboard in this pane, on the button that makes sense now (x / t keep working)
            (stop if self.running else start).focus(scroll_visible=False)

    @on(Button.Pressed, "#train-start")
    def action_start(self) -> None:
        self._train(resume=False)

    @on(Button.Pressed, "#train-resume")
    def action_resume(self) -> None:
        if self.run_dir:
            self._train(resume=True)

    @on(Button.Pressed, "#train-stop")
    def action_stop(self) -> None:
        if self.running:
            self.app.bridge.request("stop", {})  # type: ignore[attr-defined]
            self.query_one("#train-phase", Static).update("Stopping at the next step boundary, then saving a checkpoint…")

    def _train(self, resume: bool) -> None:
        if self.running:
            return
        invalid = self.app.invalid_fields()  # type: ignore[attr-defined]
        if invalid:
            self.query_one("#train-phase", Static).update(f"[red]Fix the config first: {', '.join(invalid)}[/]")
            return
        self._cancel_replay()  # a history still being read must not land on top of the new run
        args: dict[str, Any] = {"config": config_to_dict(self.app.config), "resume": resume}  # type: ignore[attr-defined]
        if resume and self.run_dir:
            args["run_dir"] = self.run_dir
        else:
            self.query_one(LossChart).clear_history()
            self.query_one("#train-log", RichLog).clear()
        self.running = True
        self._buttons()
        self.query_one("#train-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#train-phase", Static).update("Starting: loading the model and tokenizing the data…")
        self.app.bridge.request("train", args, on_result=self._started, on_error=self._failed)  # type: ignore[attr-defined]

    def _started(self, result: Result) -> None:
        self.run_dir = result.data.get("run_dir")
        self.query_one("#train-run", Static).update(f"run: {result.data.get('run')}")

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
            self.running = True
            self._show_start(event)
            self.query_one("#train-progress", ProgressBar).update(total=event.total_steps, progress=event.start_step)
            self.query_one("#train-phase", Static).update(start_phase(event))
            self._buttons()
        elif isinstance(event, Log):
            self.last_log = event
            self.query_one(LossChart).add_loss(event.step, event.loss)
            self.query_one("#train-progress", ProgressBar).update(total=event.total_steps, progress=event.step)
            self._metrics(event)
            self._log(log_line(event))
        elif isinstance(event, Eval):
            self.query_one(LossChart).add_eval(event.step, event.eval_loss)
            self._log(eval_line(event))
        elif isinstance(event, Memory):
            self.query_one(GpuPanel).show_memory(event)
        elif isinstance(event, Checkpoint):
            self._log(checkpoint_line(event))
            self._buttons()
        elif isinstance(event, Status):
            self.query_one("#train-phase", Static).update(event.message)
            self._log(status_line(event))
        elif isinstance(event, Done):
            self.running = False
            self.last_done = event
            self._stop_busy_bar()
            self.query_one("#train-phase", Static).update(done_phase(event))
            self._log(done_line(event))
            self._buttons()
            self.app.training_finished(event)  # type: ignore[attr-defined]
        elif isinstance(event, Hello):  # a new or restarted engine: the gauges follow its process
            self.query_one(GpuPanel).engine_pid = event.pid

    def _stop_busy_bar(self) -> None:
        # A run that ended before its first step (failed to load, stopped early) leaves no total to show.
        bar = self.query_one("#train-progress", ProgressBar)
        if bar.total is None:
            bar.update(total=1, progress=0)

    def _show_start(self, event: TrainStart) -> None:
        self.run_dir = event.run_dir
        self.total_steps = event.total_steps
        self.query_one("#train-run", Static).update(f"run: {Path(event.run_dir).name}")

    def engine_lost(self) -> None:
        """The engine died mid-run (killed, crashed, out of host memory): say what is kept, offer resume."""
        self.running = False
        self._stop_busy_bar()
        step = self.last_log.step if self.last_log else 0
        checkpoint = RunDir(self.run_dir).newest_checkpoint() if self.run_dir else None
        kept = (f"The newest complete checkpoint is {checkpoint.name}: press Resume (r) to continue from it."
                if checkpoint else "No checkpoint was complete yet: Start begins again.")
        self.query_one("#train-phase", Static).update(
            f"[red]The engine stopped unexpectedly at step {step} (killed or crashed).[/] {kept}")
        self._log(f"[red]engine lost at step {step}[/]")
        self._buttons()

    def _metrics(self, e: Log) -> None:
        def f(v: float | None, fmt: str) -> str:
            return "–" if v is None else fmt.format(v)

        self.query_one("#train-metrics", Static).update(
            f"step [b]{e.step}[/b]/{e.total_steps}  loss [b]{f(e.loss, '{:.4f}')}[/b]  lr {f(e.learning_rate, '{:.2e}')}  "
            f"grad norm {f(e.grad_norm, '{:.3f}')}\n"
            f"tokens/s {f(e.tokens_per_s, '{:,.0f}')}  MFU {f(e.mfu * 100 if e.mfu is not None else None, '{:.1f}%')}  "
            f"epoch {f(e.epoch, '{:.2f}')}  elapsed {_fmt_duration(e.elapsed_s)}  ETA {_fmt_duration(e.eta_s)}"
        )

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
        except Exception as exc:  # an unreadable file must not leave the live events held forever
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
        if history.progress:
            total, progress = history.progress
            self.query_one("#train-progress", ProgressBar).update(total=total, progress=progress)
        if history.phase is not None:
            self.query_one("#train-phase", Static).update(history.phase)
        if history.last_log:
            self.last_log = history.last_log
            self._metrics(history.last_log)
        if history.memory:
            self.query_one(GpuPanel).show_memory(history.memory)
        if history.running is not None:
            self.running = history.running
        if history.done:
            self.last_done = history.done
            self.app.training_finished(history.done)  # type: ignore[attr-defined]
        self.run_dir = str(run.path)
        if not run.engine_alive():
            self.running = False
        self._buttons()
        chart.replot()
        self._log(f"[dim]replayed {history.count} events from {run.events_path} at {time.strftime('%H:%M:%S')}[/]")
        if then is not None:
            then()
        self._release_held(history.keys)

    def _release_held(self, shown: set[tuple[str, float]]) -> None:
        held, self._held = self._held or [], None
        for event in held:
            if event_key(event) not in shown:
                self.handle_event(event)

    def _cancel_replay(self) -> None:
        if self._held is not None:
            self._replay_generation += 1
            self._release_held(set())
