"""The `workbench` command. Start-up imports stay light (no torch / transformers / unsloth): the ML stack
is imported inside the commands that train or tokenize, and the TUI runs it in the engine process."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from workbench.config import ConfigError, RunConfig, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_CONFIG = "configs/gemma2-9b-hindi.toml"
DEMO_CONFIG = "configs/demo.toml"


def _packaged_config(name: str) -> Path:
    """configs/ of the checkout, or the copy beside the installed package."""
    here = Path(name)
    if here.exists():
        return here
    repo = Path(__file__).resolve().parents[2] / name
    return repo if repo.exists() else here


def _err(message: str) -> None:
    print(f"workbench: {message}", file=sys.stderr)


def _load(path: str) -> RunConfig:
    return load_config(_packaged_config(path) if path in (DEFAULT_CONFIG, DEMO_CONFIG) else path)


# ------------------------------------------------------------------------------------------- train

def cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from workbench.protocol import Checkpoint, Done, Eval, Log, Memory, Status, TrainStart
    from workbench.runs import RunDir, list_runs, new_run_name

    config = _load(args.config)
    if args.skip_bad_rows:
        config.data.skip_bad_rows = True
    if args.max_steps is not None:
        config.training.max_steps = args.max_steps
    # Piped output (logs, CI) is not wrapped at 80 columns: each event stays on one greppable line.
    console = Console(stderr=False, highlight=False, soft_wrap=not sys.stdout.isatty())
    if args.run_dir:
        path = Path(args.run_dir)
        run = RunDir.create(path.parent if str(path.parent) else ".", path.name)
    elif args.resume:
        runs = [r for r in list_runs(config.output.runs_dir) if r.checkpoint is not None]
        if not runs:
            _err(f"--resume: no run with a complete checkpoint under {config.output.runs_dir}; give --run-dir")
            return EXIT_USAGE
        run = RunDir(runs[0].path)
    else:
        run = RunDir.create(config.output.runs_dir, config.output.run_name or new_run_name(config.model.name))
    console.print(f"[bold]run[/] {run.path}   (events: {run.events_path})")
    import logging

    # Library chatter and tracebacks go to the run's train.log; the console gets one clear line per problem.
    logging.basicConfig(filename=run.path / "train.log", level=logging.INFO, force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    stop = threading.Event()
    interrupts = [0]

    def on_sigint(signum: int, frame: Any) -> None:
        interrupts[0] += 1
        if interrupts[0] == 1:
            stop.set()
            console.print("[yellow]Stopping at the next step boundary and saving a checkpoint "
                          "(Ctrl-C again aborts without saving)…[/]")
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    console.print("[dim]Loading unsloth, torch and transformers…[/]")
    from workbench.engine.boot import boot

    boot()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from workbench.engine.train import run_training

    progress = Progress(TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), TextColumn("{task.description}"), console=console)
    task = progress.add_task("", total=None)

    def emit(event: Any) -> None:
        if isinstance(event, TrainStart):
            progress.update(task, total=event.total_steps, completed=event.start_step)
            console.print(f"{event.train_rows} training rows, {event.eval_rows} eval rows, effective batch "
                          f"{event.effective_batch}, {event.trainable_params:,} trainable parameters")
        elif isinstance(event, Log):
            tps = f"{event.tokens_per_s:,.0f} tok/s" if event.tokens_per_s else ""
            loss = f"{event.loss:.4f}" if event.loss is not None else "n/a"
            gn = f"{event.grad_norm:.3f}" if event.grad_norm is not None else "n/a"
            lr = f"{event.learning_rate:.2e}" if event.learning_rate is not None else "n/a"
            progress.update(task, completed=event.step, description=f"loss {loss}  {tps}")
            progress.console.print(f"step {event.step:>5}/{event.total_steps}  loss {loss}  lr {lr}  grad_norm {gn}  {tps}")
        elif isinstance(event, Eval):
            progress.console.print(f"[cyan]eval  step {event.step}: eval_loss {event.eval_loss:.4f}[/]")
        elif isinstance(event, Checkpoint):
            progress.console.print(f"[dim]checkpoint {event.path}[/]")
        elif isinstance(event, Memory) and event.phase != "step":
            progress.console.print(
                f"[magenta]GPU memory ({event.gpu_name}, {event.total_gib:.1f} GiB): reserved before "
                f"{event.reserved_before_gib:.2f} GiB, peak {event.peak_gib:.2f} GiB ({event.peak_pct:.1f}%), "
                f"for LoRA {event.lora_gib:.2f} GiB ({event.lora_pct:.1f}%)[/]")
        elif isinstance(event, Status):
            progress.console.print(f"[dim]{event.message}[/]")

    try:
        with progress:
            done, _ = run_training(config, run, emit, stop, resume=args.resume)
    except KeyboardInterrupt:
        console.print("[red]Aborted; the newest complete checkpoint is kept.[/]")
        return EXIT_INTERRUPTED
    assert isinstance(done, Done)
    style = {"completed": "green", "stopped": "yellow", "failed": "red"}[done.status]
    console.print(f"[{style}]{done.status}[/] at step {done.step}/{done.total_steps}: {done.message}")
    if done.status == "completed":
        return EXIT_OK
    if done.status == "stopped":
        return EXIT_INTERRUPTED
    return EXIT_USAGE if getattr(done, "error_type", "") in ("config", "data") else EXIT_FAILED


# ----------------------------------------------------------------------------------------- preview

def cmd_preview(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.panel import Panel

    from workbench import data as wbdata
    from workbench.textwidth import align_indic_widths
    from workbench.tokenview import legend, sample_counts, sample_text

    align_indic_widths()

    config = _load(args.config)
    d = config.data
    if args.data:
        d.source = args.data
    if args.input_column:
        d.input_column = args.input_column
    if args.output_column:
        d.output_column = args.output_column
    console = Console(highlight=False)
    dataset = wbdata.load_rows(d.source, d.split)
    examples, _issues = wbdata.require_usable(dataset, d.input_column, d.output_column, d.template)
    console.print(f"[dim]Loading the tokenizer of {config.model.name}…[/]")
    from workbench.engine.boot import prepare_environment

    prepare_environment()
    from workbench.engine.model import load_tokenizer

    tokenizer = load_tokenizer(config)
    shown = examples[: max(0, args.rows)]
    samples = wbdata.tokenize_examples(shown, tokenizer, d.template, d.instruction, config.model.max_seq_length,
                                       d.train_on_responses_only)
    console.print(legend())
    for s in samples:
        sd = s.to_dict()
        console.print(Panel(sample_text(sd), title=f"row {s.row}", subtitle=sample_counts(sd, config.model.max_seq_length),
                            title_align="left", subtitle_align="left"))
    stats = wbdata.compute_stats(dataset, tokenizer, d.input_column, d.output_column, d.template, d.instruction,
                                 config.model.max_seq_length, d.train_on_responses_only)
    console.print(f"[bold]Statistics of {d.source}[/] (template {d.template}, fingerprint {stats.fingerprint[:12]})")
    for line in stats.summary_lines():
        console.print(f"  {line}")
    peak = max((c for _, _, c in stats.histogram), default=0)
    for lo, hi, count in stats.histogram:
        bar = "█" * (round(40 * count / peak) if peak else 0)
        console.print(f"  {lo:>6}-{hi:<6} {bar} {count}")
    invalid = [i for i in stats.issues if i.kind in wbdata.INVALID_KINDS]
    for issue in invalid[:20]:
        console.print(f"  [red]{issue.describe()}[/]")
    return EXIT_OK


# ---------------------------------------------------------------------------------------- gpus, runs

def cmd_gpus(args: argparse.Namespace) -> int:
    from workbench.gpu import sample_gpus

    snaps, reason = sample_gpus()
    if not snaps:
        print(reason or "no NVIDIA GPU found")
        return EXIT_OK
    for s in snaps:
        print(s.describe())
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from workbench.runs import list_runs

    runs = list_runs(args.runs_dir)
    if not runs:
        print(f"no runs under {args.runs_dir}")
    for r in runs:
        loss = f"{r.final_loss:.4f}" if r.final_loss is not None else "-"
        print(f"{r.name:<40} {r.status:<12} step {r.step}/{r.total_steps}  loss {loss}  {r.model}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ tui

def cmd_tui(args: argparse.Namespace, demo: bool = False) -> int:
    config_path = _packaged_config(DEMO_CONFIG) if demo else (
        Path(args.config) if args.config else _packaged_config(DEFAULT_CONFIG))
    from workbench.ui.app import WorkbenchApp

    app = WorkbenchApp(config_path=config_path, attach=getattr(args, "run", None))
    app.run()  # the GC comes back on when the app closes (or in workbench.launch, if it never started)
    return app.return_code or EXIT_OK if app.return_code is not None else EXIT_OK


def cmd_attach(args: argparse.Namespace) -> int:
    from workbench.runs import live_runs

    live = live_runs(args.runs_dir)
    if not args.run:
        if not live:
            print(f"no live runs under {args.runs_dir}")
            return EXIT_OK
        if len(live) > 1:
            for r in live:
                print(f"{r.name:<40} step {r.step}/{r.total_steps}")
            print("name one: workbench attach RUN")
            return EXIT_OK
        args.run = live[0].name
    args.config = None
    return cmd_tui(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="Terminal workbench for LoRA / QLoRA fine-tuning.")
    p.add_argument("--config", help=f"run configuration (TOML) for the TUI (default {DEFAULT_CONFIG})")
    sub = p.add_subparsers(dest="command")
    t = sub.add_parser("tui", help="the terminal UI (default)")
    t.add_argument("--config")
    sub.add_parser("demo", help="the TUI on configs/demo.toml: tiny local model, offline, CPU")
    tr = sub.add_parser("train", help="train headless")
    tr.add_argument("--config", required=True)
    tr.add_argument("--run-dir", help="run folder (default runs/<model>-<time>)")
    tr.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    tr.add_argument("--skip-bad-rows", action="store_true", help="train on the valid rows when some are invalid")
    tr.add_argument("--max-steps", type=int, help="override training.max_steps")
    pr = sub.add_parser("preview", help="print rendered samples and dataset statistics")
    pr.add_argument("--config", required=True)
    pr.add_argument("--data", help="override data.source")
    pr.add_argument("--input-column")
    pr.add_argument("--output-column")
    pr.add_argument("--rows", type=int, default=2)
    sub.add_parser("gpus", help="one line per NVIDIA GPU (NVML)")
    rn = sub.add_parser("runs", help="list runs")
    rn.add_argument("--runs-dir", default="runs")
    at = sub.add_parser("attach", help="re-attach the TUI to a live run")
    at.add_argument("run", nargs="?")
    at.add_argument("--runs-dir", default="runs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command in (None, "tui"):
            return cmd_tui(args)
        if args.command == "demo":
            return cmd_tui(args, demo=True)
        gc.enable()  # workbench.launch turned it off for start-up; only the TUI takes it over itself
        handler = {"train": cmd_train, "preview": cmd_preview, "gpus": cmd_gpus, "runs": cmd_runs,
                   "attach": cmd_attach}[args.command]
        return handler(args)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except Exception as exc:
        from workbench.data import DataError
        from workbench.engine.errors import UserError

        if isinstance(exc, DataError):
            _err(str(exc))
            return EXIT_USAGE
        if isinstance(exc, UserError):
            _err(f"{exc.message} {exc.hint}".strip())
            return EXIT_FAILED
        if os.environ.get("WORKBENCH_DEBUG"):
            raise
        from workbench.engine.errors import explain

        model = ""
        with contextlib.suppress(Exception):
            model = _load(args.config).model.name if getattr(args, "config", None) else ""
        why = explain(exc, model_name=model)
        _err(f"{why.message} {why.hint}".strip() + "  (WORKBENCH_DEBUG=1 shows the traceback)")
        return EXIT_USAGE if why.type in ("offline", "model_not_found", "gated") else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
