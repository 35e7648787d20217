"""A run's events folded into what the Train pane shows (its lines are `workbench.formatting`'s).

`TrainPane.handle_event` shows one live event at a time; `fold` computes the same end state from a whole
events.jsonl at once, in a worker thread: every loss point, but only the log lines the RichLog keeps and
the last value of each label. Replaying event by event on the UI thread took 0.4 ms per event (4.5 s for a
10,000-step run), nearly all of it in widget updates whose results were immediately overwritten.
No widgets here: this module runs off the UI thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from workbench.formatting import (
    best_line,
    checkpoint_line,
    done_line,
    eval_line,
    generation_eval_line,
    log_line,
    paused_line,
    paused_phase,
    probe_line,
    resumed_line,
    start_line,
    status_line,
)
from workbench.protocol import (
    BestCheckpoint,
    Checkpoint,
    Done,
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


def event_key(e: Event) -> tuple[str, float, int]:
    """Tells one event apart: the engine writes an event to the file and sends that same event live. The
    rank too: the memory reports of a run's ranks are made together and may share a timestamp."""
    return type(e).__name__, e.t, e.rank if isinstance(e, Memory) else 0


@dataclass
class History:
    """The Train pane's end state after a run's events, shown in one go."""

    count: int = 0
    losses: list[tuple[int, float | None]] = field(default_factory=list)
    evals: list[tuple[int, float]] = field(default_factory=list)
    generation_evals: list[GenerationEval] = field(default_factory=list)
    best: BestCheckpoint | None = None
    lines: deque[str] = field(default_factory=deque)
    """The newest log lines, as many as the RichLog keeps."""
    start: TrainStart | None = None
    last_log: Log | None = None
    progress: tuple[int, int] | None = None
    """(total, progress) of the progress bar's last update."""
    phase: str | None = None
    memory: dict[int, Memory] = field(default_factory=dict)
    """The newest memory report of each rank (one entry on one GPU)."""
    done: Done | None = None
    phase_is_status: bool = False
    """The phase shown is a Status message (it gives way to the run's line when steps come)."""
    running: bool | None = None
    """After the last TrainStart or Done; None when there was neither."""
    paused_at: int | None = None
    """The step the run waits at (a Paused not yet followed by Resumed, TrainStart or Done)."""
    keys: set[tuple[str, float, int]] = field(default_factory=set)


def fold(events: Iterable[Event], max_lines: int) -> History:
    h = History(lines=deque(maxlen=max_lines))
    for e in events:
        h.count += 1
        h.keys.add(event_key(e))
        if isinstance(e, TrainStart):
            h.start, h.running, h.phase, h.phase_is_status, h.paused_at = e, True, start_line(e), False, None
            h.progress = (e.total_steps, e.start_step)
        elif isinstance(e, Log):
            if h.phase_is_status and h.start:  # a phase said before the steps ("compiling…") is over
                h.phase, h.phase_is_status = start_line(h.start), False
            h.last_log = e
            h.losses.append((e.step, e.loss))
            h.progress = (e.total_steps, e.step)
            h.lines.append(log_line(e))
        elif isinstance(e, Eval):
            h.evals.append((e.step, e.eval_loss))
            h.lines.append(eval_line(e))
        elif isinstance(e, GenerationEval):
            h.generation_evals.append(e)
            h.lines.append(generation_eval_line(e))
        elif isinstance(e, BestCheckpoint):
            h.best = e
            h.lines.append(best_line(e))
        elif isinstance(e, Memory):
            h.memory = {r: m for r, m in h.memory.items() if r < e.ranks}  # a new run may have fewer ranks
            h.memory[e.rank] = e
        elif isinstance(e, Checkpoint):
            h.lines.append(checkpoint_line(e))
        elif isinstance(e, Status):
            h.phase, h.phase_is_status = e.message, True
            h.lines.append(status_line(e))
        elif isinstance(e, Paused):
            h.paused_at, h.phase, h.phase_is_status = e.step, paused_phase(e), False
            h.lines.append(paused_line(e))
        elif isinstance(e, Resumed):
            h.paused_at = None
            h.phase = start_line(h.start) if h.start else h.phase
            h.lines.append(resumed_line(e))
        elif isinstance(e, Probe):
            h.lines.append(probe_line(e))
        elif isinstance(e, Done):
            h.done, h.running, h.phase, h.paused_at = e, False, done_line(e), None
            h.lines.append(done_line(e))
    return h

