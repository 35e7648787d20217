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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from workbench import settings
from workbench.config import ConfigError, RunConfig, load_config

if TYPE_CHECKING:
    from workbench.runs import RunDir

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_CONFIG = "configs/gemma2-9b-hindi.toml"
USAGE_ERRORS = frozenset({"config", "data", "score", "bad_run", "bad_checkpoint", "bad_kind", "exists", "no_heldout",
                          "eval_mismatch", "resume_config"})
"""UserError types that mean the input was wrong (exit 2), not that the work failed (exit 1)."""
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

def _resolve_train_run(args: argparse.Namespace, config: RunConfig) -> RunDir | None:
    from workbench.runs import RunDir, list_runs, new_run_name

    if args.run_dir:
        path = Path(args.run_dir)
        return RunDir(path) if args.resume and path.is_dir() else RunDir.create(path.parent, path.name)
    if args.resume:
        runs = [r for r in list_runs(config.output.runs_dir) if r.checkpoint is not None]
        return RunDir(runs[0].path) if runs else None
    return RunDir.create(config.output.runs_dir, config.output.run_name or new_run_name(config.model.name))


@contextlib.contextmanager
def _library_output_to(log_path: Path) -> Iterator[TextIO]:
    """Send whatever the ML libraries print (banners, warnings, progress dicts) to the run's train.log,
    at the file-descriptor level (C extensions and subprocesses print there too); yield a stream to the
    real terminal for our own lines."""
    import logging
    import warnings

    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    saved_err = os.dup(2)
    with open(log_path, "a", encoding="utf-8") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(terminal.fileno(), 1)
            os.dup2(saved_err, 2)
            os.close(saved_err)
            terminal.close()


def cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from workbench import formatting as fmt
    from workbench.protocol import Checkpoint, Done, Eval, Log, Memory, Status, TrainStart

    config = _load(args.config)
    if args.skip_bad_rows:
        config.data.skip_bad_rows = True
    if args.max_steps is not None:
        config.training.max_steps = args.max_steps
    if args.gpus is not None:
        config.training.gpus = _gpus_arg(args.gpus)
    if args.strategy is not None:
        config.training.strategy = args.strategy
    plan = _launch_plan(args, config)
    if plan is None:
        return EXIT_USAGE
    if args.print_launch:
        run_dir = args.run_dir or str(Path(config.output.runs_dir) / (config.output.run_name or "RUN"))
        from workbench.distributed import launch_lines

        print(f"# Start one line per node, in any order; {run_dir} must be the same shared folder on every node,\n"
              f"# holding launch.toml (workbench train --config {args.config} --run-dir {run_dir} --print-launch "
              "writes it).")
        print("\n".join(launch_lines(plan, run_dir, resume=args.resume)))
        if args.run_dir:
            _write_run_config(config, run_dir, args.resume)
        return EXIT_OK
    run = _resolve_train_run(args, config)
    if run is None:
        _err(f"--resume: no run with a complete checkpoint under {config.output.runs_dir}; give --run-dir")
        return EXIT_USAGE
    stop = threading.Event()
    interrupts = 0

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    with _library_output_to(run.path / "train.log") as terminal:
        # Piped output (logs, CI) is not wrapped at 80 columns: each event stays on one greppable line.
        console = Console(file=terminal, highlight=False, soft_wrap=not terminal.isatty(),
                          force_terminal=terminal.isatty())
        console.print(f"[bold]run[/] {run.path}   (events: {run.events_path}; library output: train.log)")
        on_ranks = plan.world > 1 or args.nproc is not None or args.launcher
        if not on_ranks:
            console.print("[dim]Loading unsloth, torch and transformers…[/]")
            from workbench.engine.boot import boot

            note = boot()
            if note:
                console.print(f"[yellow]{note}[/]")
            from workbench.engine.train import run_training

        stopping_said = False

        def emit(event: Any) -> None:
            nonlocal stopping_said
            if stop.is_set() and not stopping_said:
                stopping_said = True
                console.print("[yellow]Stopping at the next step boundary and saving a checkpoint "
                              "(Ctrl-C again aborts without saving)…[/]")
            if isinstance(event, TrainStart):
                on = f"{event.ranks} ranks, " if event.ranks > 1 else ""
                console.print(f"{event.train_rows} training rows, {event.eval_rows} eval rows, {on}effective batch "
                              f"{event.effective_batch}, {event.trainable_params:,} trainable parameters, "
                              f"{event.total_steps} steps")
            elif isinstance(event, Log):
                console.print(fmt.log_line(event))
            elif isinstance(event, Eval):
                console.print(fmt.eval_line(event))
            elif isinstance(event, Checkpoint):
                console.print(fmt.checkpoint_line(event))
            elif isinstance(event, Memory) and event.phase != "step":
                console.print(f"[magenta]{fmt.memory_report(event)}[/]")
            elif isinstance(event, Status):
                console.print(fmt.status_line(event))

        try:
            if on_ranks:
                from workbench.rank_launcher import train_on_ranks

                done = train_on_ranks(plan, config, run, emit, stop, resume=args.resume)
            else:
                done, _ = run_training(config, run, emit, stop, resume=args.resume)
        except KeyboardInterrupt:
            console.print("[red]Aborted; the newest complete checkpoint is kept.[/]")
            return EXIT_INTERRUPTED
        assert isinstance(done, Done)
        console.print(fmt.done_line(done))
    if done.status == "completed":
        return EXIT_OK
    if done.status == "stopped":
        return EXIT_INTERRUPTED
    return EXIT_USAGE if done.error_type in ("config", "data", "resume_config") else EXIT_FAILED


def _gpus_arg(value: str) -> int | list[int] | Literal["all"]:
    if value == "all":
        return "all"
    if "," in value:
        return [int(part) for part in value.split(",") if part.strip()]
    return int(value)


def _launch_plan(args: argparse.Namespace, config: RunConfig) -> Any:
    """How many ranks, on which devices: --nproc N (CPU ranks over gloo), else training.gpus against the
    GPUs NVML sees. None (after saying why) when the machine cannot run it."""
    from workbench.distributed import LaunchError, LaunchPlan, resolve_gpus

    nodes = dict(nnodes=args.nnodes, node_rank=0, rdzv_endpoint=args.rdzv or "", strategy=config.training.strategy)
    if args.nnodes > 1 and not args.rdzv:
        _err("--nnodes > 1 needs --rdzv HOST:PORT (a port on node 0 that every node reaches)")
        return None
    if args.nproc is not None:
        if args.nproc < 1:
            _err("--nproc must be at least 1")
            return None
        return LaunchPlan(nproc_per_node=args.nproc, **nodes)
    if config.training.gpus == 1:
        return LaunchPlan(nproc_per_node=1, gpu_ids=[0], **nodes)
    from workbench.gpu import sample_gpus

    gpus, _why = sample_gpus()
    try:
        ids = resolve_gpus(config.training.gpus, len(gpus))
    except LaunchError as exc:
        _err(f"{exc} (or --nproc N for CPU ranks)")
        return None
    if len(ids) > 1:
        _say_gpu_check(config, gpus)
    return LaunchPlan(nproc_per_node=len(ids), gpu_ids=ids, **nodes)


def _say_gpu_check(config: RunConfig, gpus: list[Any]) -> None:
    """The Config pane's check, said before a launch on several GPUs: each GPU's free memory against the
    forecast for the longest sample max_seq_length allows (who holds a GPU that is short), and uneven free
    memory. A warning, not a refusal: memory held now may be freed before the first step."""
    from workbench import memory_forecast as mf
    from workbench.distributed import check_gpus
    from workbench.engine.forecast import model_shape

    try:
        shape = model_shape(config)
    except Exception as exc:  # a model not in the cache yet: the ranks download it; no forecast now
        _err(f"note: no memory forecast before the launch ({type(exc).__name__}: {exc})")
        return
    forecast = mf.forecast(shape, mf.setting_for(config, [config.model.max_seq_length]))
    check = check_gpus(config.training.gpus, gpus, forecast.total_gib)
    if not check.ok:
        _err(f"warning: {check.line}; the run may run out of memory (free that GPU, or choose others with --gpus)")
    elif check.uneven:
        _err(f"warning: {check.line}")
    else:
        print(check.line)


def _write_run_config(config: RunConfig, run_dir: str, resume: bool) -> None:
    from workbench.config import save_config
    from workbench.distributed import LAUNCH_CONFIG
    from workbench.runs import RunDir

    path = Path(run_dir)
    run = RunDir(path) if resume and path.is_dir() else RunDir.create(path.parent, path.name)
    save_config(config, run.path / LAUNCH_CONFIG)


# ------------------------------------------------------------------------------------------ export

def _models_in_this_process(console: Any) -> Any:
    """Boot the ML stack here (unsloth first), say what the user should know, and return what loads a
    run's model with its adapter (the engine's `_ensure_model`, for commands that run without an engine)."""
    from workbench.engine.boot import boot

    note = boot()
    if note:
        console.print(f"[yellow]{note}[/]")
    from workbench.engine.model import Loaded, load_adapter, load_base

    def models(config: RunConfig, adapter: str | None) -> Loaded:
        loaded = load_base(config, lambda m: console.print(f"[dim]{m}[/]"))
        if adapter:
            load_adapter(loaded, adapter)
        return loaded

    return models


def cmd_export(args: argparse.Namespace) -> int:
    """The Save pane's export, headless: same code, same proof."""
    from workbench.errors import UserError
    from workbench.runs import RunDir
    from workbench.save_kinds import KIND_ALIASES, SAVE_KINDS, resolve_kind

    kind = resolve_kind(args.kind)
    if kind is None:
        _err(f"--as {args.kind!r}: not an export kind (use one of {', '.join(SAVE_KINDS)}; "
             f"{', '.join(f'{a} = {k}' for a, k in KIND_ALIASES.items())})")
        return EXIT_USAGE
    run = RunDir(Path(args.run_dir))
    if not (run.path / "config.toml").is_file():
        _err(f"{run.path}: not a run folder (no config.toml); `workbench runs` lists the runs")
        return EXIT_USAGE
    target = Path(args.out) if args.out else run.path / f"export-{kind}"
    with _library_output_to(run.path / "export.log") as terminal:
        from rich.console import Console

        console = Console(file=terminal, highlight=False, soft_wrap=True)
        models = _models_in_this_process(console)
        from workbench.engine.export import export_run

        try:
            saved = export_run(run, kind, target, checkpoint=args.checkpoint, overwrite=args.overwrite,
                               say=lambda m: console.print(f"[dim]{m}[/]"), models=models)
        except UserError as exc:
            console.print(f"[red]workbench: {exc.message}[/] {exc.hint}")
            return EXIT_USAGE if exc.type in ("bad_run", "bad_checkpoint", "bad_kind", "exists", "unavailable") \
                else EXIT_FAILED
        check = saved.verification
        console.print(f"[green]Saved {saved.kind}[/] of {saved.run} ({saved.checkpoint or 'final adapter'}, "
                      f"step {saved.step}) to {saved.path}" + (f"\n  proven: {check.detail}" if check else ""))
    return EXIT_OK


def cmd_gguf_setup(args: argparse.Namespace) -> int:
    from workbench.errors import UserError
    from workbench.gguf_setup import set_up

    try:
        home = set_up(Path(args.sdist) if args.sdist else None, say=lambda m: print(m, flush=True))
    except UserError as exc:
        _err(f"{exc.message} {exc.hint}".strip())
        return EXIT_USAGE if exc.type == "usage" else EXIT_FAILED
    print(f"GGUF export is set up: the converter is in {home}; the Save pane and `workbench export --as gguf_q8_0` "
          "now work without a network.")
    return EXIT_OK


# ------------------------------------------------------------------------------------- eval, score

def _score_table(report: Any) -> Any:
    """The report as a Rich table: a column per model, a row per score, and tuned minus base."""
    from rich.table import Table

    from workbench.scores import ROUGE_TYPES

    table = Table(show_edge=False, header_style="bold")
    table.add_column("score")
    models = list(report.models)
    for model in models:
        table.add_column(model, justify="right")
    if report.differences:
        table.add_column("tuned − base (95% interval)", justify="right")
    gaps = {d.metric: d for d in report.differences}
    names = {"rouge1": "ROUGE-1 F1", "rouge2": "ROUGE-2 F1", "rougeL": "ROUGE-L F1", "chrf": "chrF++ (row mean)"}
    for metric in (*ROUGE_TYPES, "chrf"):
        cells = [f"{100 * report.models[m].rouge_f1[metric]:.2f}" if metric != "chrf"
                 else f"{report.models[m].chrf_mean:.2f}" for m in models]
        gap = gaps.get(metric)
        if gap is not None:
            mark = " *" if gap.significant else ""
            cells.append(f"{gap.mean:+.2f} [{gap.low:+.2f}, {gap.high:+.2f}]{mark}")
        table.add_row(names[metric], *cells)
    table.add_row("chrF++ (corpus)", *[f"{report.models[m].chrf_corpus:.2f}" for m in models],
                  *([""] if report.differences else []))
    table.add_row("length / reference", *[f"{report.models[m].length_ratio or 0:.2f}" for m in models],
                  *([""] if report.differences else []))
    table.add_row("Devanagari letters", *[f"{100 * report.models[m].devanagari_share:.0f}%" for m in models],
                  *([""] if report.differences else []))
    for flag in ("empty", "loop", "copy", "unended", "script"):
        counts = [str(report.models[m].flagged.get(flag, 0)) for m in models]
        if any(c != "0" for c in counts):
            table.add_row(f"rows flagged {flag}", *counts, *([""] if report.differences else []))
    return table


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from workbench.runs import RunDir

    run = RunDir(Path(args.run))
    if not (run.path / "config.toml").is_file():
        _err(f"{run.path}: not a run folder (no config.toml); `workbench runs` lists the runs")
        return EXIT_USAGE
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    with _library_output_to(run.path / "eval.log") as terminal:
        console = Console(file=terminal, highlight=False, soft_wrap=not terminal.isatty())
        models = _models_in_this_process(console)
        from workbench.engine.evaluate import EvalRequest, run_eval

        progress = Progress(TextColumn("[bold]eval[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console)
        task = progress.add_task("", total=None, rate="")
        started = time.monotonic()
        first_done: list[int] = []

        def on_rows(made: list[Any], done: int, total: int) -> None:
            if not first_done:
                first_done.append(done - len(made))
            rate = (done - first_done[0]) / max(1e-9, time.monotonic() - started) * 60
            progress.update(task, total=total, completed=done, rate=f"{rate:.1f} rows/min")

        request = EvalRequest(run=run, rows=args.rows, base=args.base, source=args.data, split=args.split,
                              max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                              checkpoint=args.checkpoint, resume=args.resume, name=args.name)
        from workbench.engine.fast_chat import FastChat

        fast_decoders = FastChat(lambda _status: None)

        def say(message: str) -> None:
            console.print(f"[dim]{message}[/]")

        def fast(loaded: Any, config: Any, rows: int, capacity: int) -> Any:
            return fast_decoders.rows_decoder(loaded, config.model.chat_path, rows, capacity, say=say)

        with progress:
            outcome = run_eval(request, say=say, models=models, stop=stop, on_rows=on_rows, fast=fast)
        folder, report = outcome.folder, outcome.report
        console.print(_score_table(report))
        if report.unscored:
            console.print(f"[yellow]{len(report.unscored)} rows have no reference: generated, not scored.[/]")
        console.print(f"rows and scores: {folder}/eval.jsonl, {folder}/eval.json")
        if not outcome.complete:
            console.print("[yellow]Stopped: the finished rows are kept; --resume continues.[/]")
            return EXIT_INTERRUPTED
    return EXIT_OK


def cmd_score(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from workbench import evaluation as ev

    references = ev.read_texts(Path(args.references), args.reference_column)
    predictions = ev.read_texts(Path(args.predictions), args.prediction_column)
    report = ev.score_pairs(references, predictions, stem=args.stem)
    document = report.to_dict()
    if args.rows:
        document["rows"] = list(ev.per_row(report))
    if args.table:
        Console(highlight=False).print(_score_table(report))
    else:
        print(json.dumps(document, ensure_ascii=False, indent=2))
    return EXIT_OK


# ----------------------------------------------------------------------------------------- preview

def cmd_preview(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.panel import Panel

    from workbench import data as wbdata
    from workbench.formatting import histogram_lines
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
    # Piped (to a file, to less): not wrapped at 80 columns, so every statistics line stays whole.
    console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    dataset = wbdata.load_rows(d.source, d.split)
    examples, _issues = wbdata.require_usable(dataset, d.input_column, d.output_column, d.template)
    console.print(f"[dim]Loading the tokenizer of {config.model.name}…[/]")
    from workbench.engine.boot import prepare_environment

    note = prepare_environment()
    if note:
        console.print(f"[yellow]{note}[/]")
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
    for line in histogram_lines(stats.histogram, 40, config.model.max_seq_length):
        console.print(f"  {line}")
    invalid = [i for i in stats.issues if i.kind in wbdata.INVALID_KINDS]
    for issue in invalid[:20]:
        console.print(f"  [red]{issue.describe()}[/]")
    return EXIT_OK


# ---------------------------------------------------------------------------------------- gpus, runs

def cmd_gpus(args: argparse.Namespace) -> int:
    from workbench.gpu import gpus_report, sample_all

    print(gpus_report(sample_all()))
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
    if demo:
        # Everything the demo uses is on disk. Without this the engine probed the hub at start and, on a
        # machine without network, said so in a 20-second toast over the pane. HF_HUB_OFFLINE=0 still
        # lets a demo user try a hub model.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return _run_tui(config_path)


def _run_tui(config_path: Path, attach: Path | None = None) -> int:
    from workbench.ui.app import WorkbenchApp

    app = WorkbenchApp(config_path=config_path, attach=str(attach) if attach else None)
    app.run()  # the GC comes back on when the app closes (or in workbench.launch, if it never started)
    if app.exit_note:
        print(app.exit_note)
    return app.return_code or EXIT_OK


def cmd_attach(args: argparse.Namespace) -> int:
    """The TUI on a run: its own config, its history, and the engine training it when it still runs."""
    from workbench.runs import find_run, live_runs

    if not args.run:
        live = live_runs(args.runs_dir)
        if not live:
            print(f"no live runs under {args.runs_dir}; `workbench runs` lists them all, "
                  "and `workbench attach RUN` opens any of them")
            return EXIT_OK
        if len(live) > 1:
            for r in live:
                print(f"{r.name:<40} step {r.step}/{r.total_steps}")
            print("name one: workbench attach RUN")
            return EXIT_OK
        args.run = str(live[0].path)
    run = find_run(args.run, args.runs_dir)
    if run is None:
        _err(f"{args.run}: no such run (looked for a folder with events.jsonl, and under {args.runs_dir}/)")
        return EXIT_USAGE
    return _run_tui(run.config_path, attach=run.path)


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
    tr.add_argument("--gpus", help="override training.gpus: a count, a list (0,1) or all; more than one runs "
                    "one rank per GPU under torchrun")
    tr.add_argument("--strategy", choices=["ddp", "fsdp2"], help="override training.strategy")
    tr.add_argument("--nproc", type=int, help="N ranks on the CPU over gloo through the same launcher (no GPU "
                    "needed; for trying the path)")
    tr.add_argument("--launcher", action="store_true", help="start even one rank through torchrun (to compare "
                    "the launcher's path with the plain one)")
    tr.add_argument("--nnodes", type=int, default=1, help="nodes of a multi-node run (with --print-launch)")
    tr.add_argument("--rdzv", help="HOST:PORT of the rendezvous on node 0 (multi-node)")
    tr.add_argument("--print-launch", action="store_true", help="print the exact command for each node and "
                    "exit (writes the run's config.toml when --run-dir is given)")
    ev = sub.add_parser("eval", help="summarize held-out rows with a run's weights (and the base model) and score them")
    ev.add_argument("--run", required=True, help="the run's folder")
    ev.add_argument("--rows", type=int, help="held-out rows to use (default: the config's eval.rows; 0: all)")
    ev.add_argument("--base", action="store_true", help="also summarize with the adapter off, and compare")
    ev.add_argument("--data", help="held-out rows from this file or hub id (default: the config's)")
    ev.add_argument("--split", help="split of --data (hub datasets)")
    ev.add_argument("--max-new-tokens", type=int, help="override eval.max_new_tokens")
    ev.add_argument("--batch-size", type=int, help="override eval.batch_size (rows generated together)")
    ev.add_argument("--checkpoint", type=int, help="a checkpoint's step (default: the final adapter, else the newest)")
    ev.add_argument("--resume", action="store_true", help="continue an eval that was stopped")
    ev.add_argument("--name", help="the eval's folder under RUN/evals/ (default from weights, rows and --base)")
    sc = sub.add_parser("score", help="score predictions against references exactly as eval does (JSON out)")
    sc.add_argument("--references", required=True, help="jsonl / json / csv (with --reference-column) or plain lines")
    sc.add_argument("--predictions", required=True, help="jsonl / json / csv (with --prediction-column) or plain lines")
    sc.add_argument("--reference-column")
    sc.add_argument("--prediction-column")
    sc.add_argument("--rows", action="store_true", help="per-row scores too")
    sc.add_argument("--stem", action="store_true", help="Hindi suffix stemming before ROUGE")
    sc.add_argument("--table", action="store_true", help="a table instead of JSON")
    pr = sub.add_parser("preview", help="print rendered samples and dataset statistics")
    pr.add_argument("--config", required=True)
    pr.add_argument("--data", help="override data.source")
    pr.add_argument("--input-column")
    pr.add_argument("--output-column")
    pr.add_argument("--rows", type=int, default=2)
    sub.add_parser("gpus", help="one line per NVIDIA GPU (NVML)")
    rn = sub.add_parser("runs", help="list runs")
    rn.add_argument("--runs-dir", default="runs")
    at = sub.add_parser("attach", help="re-attach the TUI to a live run, or open any run with its own config")
    at.add_argument("run", nargs="?", help="a run's folder or its name under --runs-dir (default: the live one)")
    at.add_argument("--runs-dir", default="runs")
    ex = sub.add_parser("export", help="export a run's weights (the Save pane's code), proven to reload")
    ex.add_argument("run_dir", help="the run's folder")
    ex.add_argument("--as", dest="kind", default="lora",
                    help="lora, merged_16bit, gguf_f16, gguf_q8_0 (or gguf) or gguf_q4_k_m (default lora)")
    ex.add_argument("--out", help="folder to write (default RUN_DIR/export-KIND)")
    ex.add_argument("--checkpoint", type=int, help="a checkpoint's step (default: the final adapter, else the newest)")
    ex.add_argument("--overwrite", action="store_true", help="replace --out if it exists (only once the new one is proven)")
    gg = sub.add_parser("gguf-setup", help="set up GGUF export once (llama.cpp's converter from llama-cpp-python's "
                                          "source); exports then need no download")
    gg.add_argument("--sdist", help="llama-cpp-python's source archive (.tar.gz) on disk (default: pip downloads it)")
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
                   "attach": cmd_attach, "export": cmd_export, "eval": cmd_eval, "score": cmd_score,
                   "gguf-setup": cmd_gguf_setup}[args.command]
        return handler(args)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except Exception as exc:
        from workbench.data import DataError
        from workbench.errors import UserError

        if isinstance(exc, DataError):
            _err(str(exc))
            return EXIT_USAGE
        if isinstance(exc, UserError):
            _err(f"{exc.message} {exc.hint}".strip())
            return EXIT_USAGE if exc.type in USAGE_ERRORS else EXIT_FAILED
        if settings.debug():
            raise
        from workbench.engine.errors import explain

        model = ""
        with contextlib.suppress(ConfigError, OSError):  # only to name the model in the message
            model = _load(args.config).model.name if getattr(args, "config", None) else ""
        why = explain(exc, model_name=model)
        _err(f"{why.message} {why.hint}".strip() + "  (WORKBENCH_DEBUG=1 shows the traceback)")
        return EXIT_USAGE if why.type in ("offline", "model_not_found", "gated") else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
