"""Train pane: start / stop / resume, the live loss curve and metrics, log lines, and the GPU panel."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, ProgressBar, RichLog, Static

from workbench.config import config_to_dict
from workbench.gpu import poll_gpus
from workbench.protocol import Checkpoint, Done, Error, Eval, Event, Log, Memory, Result, Status, TrainStart
from workbench.runs import RunDir
from workbench.ui.messages import GpuSample
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

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_dir: str | None = None
        self.running = False
        self.last_log: Log | None = None
        self.total_steps = 0
        self.last_done: Done | None = None
        self._gpu_stop = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical(id="train-left"):
            with Horizontal(id="train-buttons"):
                yield Button("Start ▶", id="train-start", variant="success")
                yield Button("Stop ■", id="train-stop", variant="error", disabled=True)
                yield Button("Resume ↻", id="train-resume", disabled=True)
                yield Static("", id="train-run")
            yield ProgressBar(total=None, show_eta=False, id="train-progress")
            yield Static("Not started. Press Start (t) to train with the current config.", id="train-phase")
            yield Static("", id="train-metrics")
            yield LossChart(id="loss-chart")
            yield RichLog(id="train-log", max_lines=2000, wrap=True, markup=True)
        with Vertical(id="train-right"):
            yield GpuPanel(id="gpu-panel")

    def on_mount(self) -> None:
        self.app.bridge.subscribe(self.handle_event)  # type: ignore[attr-defined]
        self._poll_gpus()

    def on_unmount(self) -> None:
        self._gpu_stop.set()

    @work(thread=True, exclusive=True, exit_on_error=False, group="gpu")
    def _poll_gpus(self) -> None:
        module = getattr(self.app, "gpu_module", None)
        poll_gpus(lambda snaps, reason: self.post_message(GpuSample(snaps, reason)), self._gpu_stop,
                  interval_s=1.0, module=module)

    def on_gpu_sample(self, message: GpuSample) -> None:
        self.query_one(GpuPanel).show(message.snapshots, message.reason)

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
        args: dict[str, Any] = {"config": config_to_dict(self.app.config), "resume": resume}  # type: ignore[attr-defined]
        if resume and self.run_dir:
            args["run_dir"] = self.run_dir
        else:
            self.query_one(LossChart).clear_history()
            self.query_one("#train-log", RichLog).clear()
        self.running = True
        self._buttons()
        self.query_one("#train-phase", Static).update("Starting: loading the model and tokenizing the data…")
        self.app.bridge.request("train", args, on_result=self._started, on_error=self._failed)  # type: ignore[attr-defined]

    def _started(self, result: Result) -> None:
        self.run_dir = result.data.get("run_dir")
        self.query_one("#train-run", Static).update(f"run: {result.data.get('run')}")

    def _failed(self, error: Error) -> None:
        self.running = False
        self._buttons()
        self.query_one("#train-phase", Static).update(f"[red]{error.message}[/] {error.hint}")

    # -- events -----------------------------------------------------------------------------------
    def handle_event(self, event: Event) -> None:
        if isinstance(event, TrainStart):
            self.running = True
            self.run_dir = event.run_dir
            self.total_steps = event.total_steps
            self.query_one("#train-run", Static).update(f"run: {Path(event.run_dir).name}")
            self.query_one("#train-progress", ProgressBar).update(total=event.total_steps, progress=event.start_step)
            self.query_one("#train-phase", Static).update(
                f"Training {event.train_rows} rows (eval {event.eval_rows}), effective batch {event.effective_batch}, "
                f"{event.trainable_params:,} trainable of {event.total_params:,} parameters.")
            self._buttons()
        elif isinstance(event, Log):
            self.last_log = event
            self.query_one(LossChart).add_loss(event.step, event.loss)
            self.query_one("#train-progress", ProgressBar).update(total=event.total_steps, progress=event.step)
            self._metrics(event)
            loss = f"{event.loss:.4f}" if event.loss is not None else "n/a"
            self._log(f"step {event.step}/{event.total_steps} loss {loss} "
                      f"lr {event.learning_rate or 0:.2e} grad_norm {event.grad_norm or 0:.3f}")
        elif isinstance(event, Eval):
            self.query_one(LossChart).add_eval(event.step, event.eval_loss)
            self._log(f"[cyan]eval at step {event.step}: {event.eval_loss:.4f}[/]")
        elif isinstance(event, Memory):
            self.query_one(GpuPanel).show_memory(event)
        elif isinstance(event, Checkpoint):
            self._log(f"[dim]checkpoint at step {event.step}: {event.path}[/]")
            self._buttons()
        elif isinstance(event, Status):
            self.query_one("#train-phase", Static).update(event.message)
            self._log(f"[dim]{event.message}[/]")
        elif isinstance(event, Done):
            self.running = False
            self.last_done = event
            colour = {"completed": "green", "stopped": "yellow", "failed": "red"}[event.status]
            self.query_one("#train-phase", Static).update(f"[{colour}]{event.status}[/] at step {event.step}: {event.message}")
            self._log(f"[{colour}]{event.status}: {event.message}[/]")
            self._buttons()
            self.app.training_finished(event)  # type: ignore[attr-defined]

    def engine_lost(self) -> None:
        """The engine died mid-run (killed, crashed, out of host memory): say what is kept, offer resume."""
        self.running = False
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
    def replay(self, run_dir: str | Path) -> int:
        """Show a run's whole history from its events.jsonl (re-attach, or opening a past run)."""
        run = RunDir(run_dir)
        self.query_one(LossChart).clear_history()
        self.query_one("#train-log", RichLog).clear()
        count = 0
        for event in run.iter_events():
            self.handle_event(event)
            count += 1
        self.run_dir = str(run.path)
        if not run.engine_alive():
            self.running = False
        self._buttons()
        self.query_one(LossChart).replot()
        self._log(f"[dim]replayed {count} events from {run.events_path} at {time.strftime('%H:%M:%S')}[/]")
        return count
