"""One way to say each thing, shared by the CLI and the TUI: a training step, an eval, a checkpoint, the
memory report, a run's start and end, a histogram bar, a duration.

Lines are Rich markup (both the CLI's console and the TUI's widgets render it). No Textual, no ML import.
"""

from __future__ import annotations

from rich.markup import escape

from workbench.protocol import (
    BestCheckpoint,
    Checkpoint,
    Done,
    Eval,
    GenerationEval,
    Log,
    Memory,
    Paused,
    Probe,
    Resumed,
    Status,
    TrainStart,
)

DONE_COLOURS = {"completed": "green", "stopped": "yellow", "failed": "red"}


def duration(seconds: float | None) -> str:
    """1:05 or 2:03:07; an en dash when unknown."""
    if seconds is None:
        return "–"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def number(value: float | None, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def log_line(e: Log) -> str:
    """One optimizer step, as the CLI prints it and the Train pane's log shows it."""
    # Short enough for the Train pane's log beside the gauges (about 75 columns).
    tps = f" {e.tokens_per_s:,.0f} tok/s" if e.tokens_per_s else ""
    return (f"step {e.step}/{e.total_steps} loss {number(e.loss, '{:.4f}')} lr {number(e.learning_rate, '{:.2e}')}"
            f" grad_norm {number(e.grad_norm, '{:.3f}')}{tps} {duration(e.elapsed_s)}")


def metrics_lines(e: Log) -> str:
    """The Train pane's two-line summary of the newest step."""
    mfu = e.mfu * 100 if e.mfu is not None else None
    return (f"step [b]{e.step}[/b]/{e.total_steps}  loss [b]{number(e.loss, '{:.4f}')}[/b]  "
            f"lr {number(e.learning_rate, '{:.2e}')}  grad norm {number(e.grad_norm, '{:.3f}')}\n"
            f"tokens/s {number(e.tokens_per_s, '{:,.0f}')}  MFU {number(mfu, '{:.1f}%')}  epoch {number(e.epoch, '{:.2f}')}"
            f"  elapsed {duration(e.elapsed_s)}  ETA {duration(e.eta_s)}")


def eval_line(e: Eval) -> str:
    return f"[cyan]eval at step {e.step}: eval_loss {e.eval_loss:.4f}[/]"


def generation_eval_line(e: GenerationEval) -> str:
    sample = e.sample if len(e.sample) <= 60 else e.sample[:59] + "…"
    return f"[cyan]summaries at step {e.step} ({e.rows} held-out rows): ROUGE-L {e.rouge_l:.1f}, chrF++ {e.chrf:.1f}[/] {sample}"


SPARK_LEVELS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int) -> str:
    """The newest `width` values as block characters, scaled between their own min and max."""
    shown = values[-width:]
    if not shown:
        return ""
    lo, hi = min(shown), max(shown)
    top = len(SPARK_LEVELS) - 1
    return "".join(SPARK_LEVELS[0 if hi == lo else round((v - lo) / (hi - lo) * top)] for v in shown)


def scores_line(evals: list[GenerationEval], best: BestCheckpoint | None, width: int = 24) -> str:
    """The generation eval's history beside the loss chart: ROUGE-L and chrF++ at each eval, newest last."""
    if not evals:
        return ""
    last = evals[-1]
    rouge = sparkline([e.rouge_l for e in evals], width)
    chrf = sparkline([e.chrf for e in evals], width)
    marked = f" · best {best.metric} at step {best.step}" if best else ""
    return (f"summaries ({last.rows} rows, {len(evals)} evals): ROUGE-L [cyan]{rouge}[/] {last.rouge_l:.1f}"
            f" · chrF++ [cyan]{chrf}[/] {last.chrf:.1f} at step {last.step}{marked}")


def best_line(e: BestCheckpoint) -> str:
    return f"[green]best so far: {e.path.rsplit('/', 1)[-1]} ({e.metric} {e.value:.4f})[/]"


def checkpoint_line(e: Checkpoint) -> str:
    return f"[dim]checkpoint at step {e.step}: {e.path}[/]"


def status_line(e: Status) -> str:
    return f"[dim]{escape(e.message)}[/]"


def paused_phase(e: Paused) -> str:
    """The Train pane's phase while a run waits: what the user can do now, and how to go on."""
    return (f"[yellow]Paused at step {e.step}[/] (paused time is not counted in tokens/s or the ETA). "
            "Chat (4) answers with the live adapter; e: quick eval on held-out rows; r: continue.")


def paused_line(e: Paused) -> str:
    return f"[yellow]paused at step {e.step}[/]"


def resumed_line(e: Resumed) -> str:
    return f"[yellow]continued at step {e.step}[/] after {duration(e.paused_s)} paused"


def probe_line(e: Probe) -> str:
    """What the live model said while paused (the log keeps one line; events.jsonl keeps it whole)."""
    said = " ".join(e.output.split())
    said = said if len(said) <= 80 else said[:79] + "…"
    if e.kind == "eval":
        return f"[cyan]quick eval at step {e.step}: {escape(e.prompt)}: {escape(said)}[/]"
    asked = " ".join(e.prompt.split())
    asked = asked if len(asked) <= 40 else asked[:39] + "…"
    return f"[cyan]probe at step {e.step}:[/] {escape(asked)} [dim]→[/] {escape(said)}"


def start_line(e: TrainStart) -> str:
    resumed = f" Resumed at step {e.start_step} of {e.total_steps}." if e.start_step else ""
    rows = (f"{e.train_rows} samples packed into {e.packed_rows} rows" if e.packed_rows is not None
            else f"{e.train_rows} rows")
    attention = f" Attention: {e.attention}." if e.attention else ""
    ranks = f" on {e.ranks} ranks" if e.ranks > 1 else ""
    return (f"Training {rows} (eval {e.eval_rows}){ranks}, effective batch {e.effective_batch}, "
            f"{e.trainable_params:,} trainable of {e.total_params:,} parameters.{attention}{resumed}")


def done_line(e: Done) -> str:
    # Escaped: a message may quote a library's error with [brackets] (gloo's "[.../pair.cc:561]").
    return f"[{DONE_COLOURS[e.status]}]{e.status}[/] at step {e.step}/{e.total_steps}: {escape(e.message)}"


def memory_report(m: Memory) -> str:
    """The first recipe's report: memory before training, the peak, and what training itself took (on several
    ranks, one report per rank, each naming its rank and GPU)."""
    gpu = f"GPU {m.gpu_index}" if m.gpu_index is not None else "GPU"
    who = f"rank {m.rank} on {gpu}: " if m.ranks > 1 else ""
    return (f"{who}GPU memory ({m.gpu_name}, {m.total_gib:.1f} GiB): reserved before training {m.reserved_before_gib:.2f} GiB"
            f" · peak {m.peak_gib:.2f} GiB ({m.peak_pct:.1f}%) · for LoRA {m.lora_gib:.2f} GiB ({m.lora_pct:.1f}%)")


def histogram_lines(bins: list[tuple[int, int, int]], width: int, limit: int | None = None) -> list[str]:
    """A text histogram, one bar per bin, scaled to `width` cells; bins past `limit` drawn red."""
    peak = max((count for _, _, count in bins), default=0)
    lines = []
    for lo, hi, count in bins:
        bar = "█" * (round(width * count / peak) if peak else 0)
        colour = "red" if limit is not None and lo > limit else "cyan"
        lines.append(f"{lo:>6}-{hi:<6} [{colour}]{bar}[/] {count}")
    return lines
