"""A scripted engine client for UI tests where the engine is not the point.

It stands where `EngineClient` stands (the App's `engine_factory`): it says hello when started, records
every typed request, and answers each from a script of handlers, by default the deterministic answers of
`tests/ui/scenarios.py` (real tokenization and statistics of the bundled data; fixed training events).
The real engine is tested on its own (tests/engine) and end to end with the UI (test_end_to_end.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.ui import scenarios
from workbench import requests as rq
from workbench.protocol import Error, Event, Hello, Result, State

Emit = Callable[[Event], None]
Handler = Callable[[Any, str, Emit], rq.Answer | Error | None]
"""(request, its id, emit) -> the answer, an error, or None to leave it unanswered (a long command)."""

ENGINE_PID = 4242


def _preview(args: rq.Preview, rid: str, emit: Emit) -> rq.Answer:
    return scenarios.preview_answer(args.config, args.positions, args.file_rows)


def _stats(args: rq.Statistics, rid: str, emit: Emit) -> rq.Answer:
    return scenarios.stats_answer(args.config)


def _train(args: rq.Train, rid: str, emit: Emit) -> rq.Answer:
    run_dir = args.run_dir or str(Path(args.config.output.runs_dir) / "scripted-run")
    return rq.TrainStarted(run=Path(run_dir).name, run_dir=run_dir)


def _generate(args: rq.Generate, rid: str, emit: Emit) -> rq.Answer:
    from workbench.protocol import Token

    results = {}
    for stream in ("tuned", "base") if args.compare else ("tuned",):
        emit(Token(text="सारांश।", stream=stream))
        results[stream] = rq.GenerationStats(text="सारांश।", new_tokens=3, prompt_tokens=40,
                                             path="merged copy" if stream == "tuned" else "standard")
    return rq.Generated(results=results, has_adapter=args.run_dir is not None, fast_chat=FAST_CHAT_READY)


FAST_CHAT_READY = "fast chat ready: merged copy (built in 0.1 s)"
"""What the engine says on a CPU once the tiny model's merged copy is built."""


def _prepare_chat(args: rq.PrepareChat, rid: str, emit: Emit) -> rq.Answer:
    return rq.ChatPrepared(fast_chat=FAST_CHAT_READY, has_adapter=args.run_dir is not None)


def _evaluate(args: rq.Evaluate, rid: str, emit: Emit) -> rq.Answer | Error:
    """As the engine's evaluate: a real eval folder written batch by batch, an EvalProgress after each batch,
    and an existing eval refused unless resumed (the scripted rows are all made at once)."""
    from workbench import evaluation as ev
    from workbench.protocol import EvalProgress

    rows = 24 if args.rows is None else args.rows
    name = args.name or ev.eval_name("final adapter", rows or 24, args.base)
    folder = Path(args.run_dir) / ev.EVALS_DIR / name
    if (folder / ev.ROWS_FILE).exists() and not args.resume:
        return Error(type="exists", message=f"{folder} already holds an eval",
                     hint="Continue it with --resume (the Eval pane: Resume), or give another --name.")
    if args.resume:
        (folder / ev.ROWS_FILE).unlink(missing_ok=True)  # made again whole: the same rows, the same answers
    scenarios.write_eval(args.run_dir, rows, args.base, name,
                         on_batch=lambda done, total, where: emit(EvalProgress(done=done, total=total, folder=where)))
    total = len(ev.read_records(folder / ev.ROWS_FILE))
    return rq.EvalFinished(folder=str(folder), complete=True, rows_done=total, rows_total=total)


def _forecast(args: rq.MemoryForecast, rid: str, emit: Emit) -> rq.Answer:
    return scenarios.forecast_answer(args.config)


def _nothing(args: rq.Args, rid: str, emit: Emit) -> rq.Answer:
    return rq.Nothing()


def _stop(args: rq.Stop, rid: str, emit: Emit) -> rq.Answer:
    return rq.Stopping(stopping=True)


DEFAULT_SCRIPT: dict[type[rq.Args], Handler] = {
    rq.Preview: _preview,
    rq.Statistics: _stats,
    rq.Train: _train,
    rq.Generate: _generate,
    rq.PrepareChat: _prepare_chat,
    rq.Stop: _stop,
    rq.Evaluate: _evaluate,
    rq.MemoryForecast: _forecast,
    rq.Cancel: _nothing,
    rq.Shutdown: _nothing,
}


class ScriptedEngine:
    """Speaks to the App as EngineClient does; answers from `script` (unscripted requests stay unanswered)."""

    def __init__(self, on_event: Emit, script: dict[type[rq.Args], Handler] | None = None) -> None:
        self.on_event = on_event
        self.script = {**DEFAULT_SCRIPT, **(script or {})}
        self.sent: list[rq.Args] = []
        self.ids: dict[str, rq.Args] = {}
        self._ids = itertools.count(1)
        self.closed = False
        self.connected_to: str | None = None
        """The socket the App connected to (re-attaching to a live run's engine); None: it started this one."""

    def start(self, extra_env: dict[str, str] | None = None, timeout: float = 0.0) -> None:
        self.on_event(Hello(pid=ENGINE_PID, device="cpu"))
        self.on_event(State(state="ready"))

    def connect(self, socket_path: str) -> None:
        self.connected_to = socket_path
        self.start()

    def close(self, shutdown: bool = False) -> None:
        self.closed = True

    def send(self, args: rq.Args) -> str:
        rid = f"s{next(self._ids)}"
        self.sent.append(args)
        self.ids[rid] = args
        handler = self.script.get(type(args))
        if handler is not None:
            self.answer(rid, handler(args, rid, self.emit_for(rid)))
        return rid

    def emit_for(self, rid: str) -> Emit:
        def emit(event: Event) -> None:
            event.id = event.id or rid
            self.on_event(event)
        return emit

    def answer(self, rid: str, answer: rq.Answer | Error | None) -> None:
        """Answer request `rid` now (tests call this for requests they left unanswered)."""
        if isinstance(answer, Error):
            answer.id = rid
            self.on_event(answer)
        elif answer is not None:
            self.on_event(Result(id=rid, data=answer.model_dump(mode="json")))

    def broadcast(self, event: Event) -> None:
        """An event that belongs to no request (training progress), as the engine sends it."""
        self.on_event(event)

    def requests(self, kind: type[rq.Args]) -> list[Any]:
        return [a for a in self.sent if isinstance(a, kind)]


def scripted_app_factory(script: dict[type[rq.Args], Handler] | None = None) -> tuple[Callable[[Emit], ScriptedEngine], list[ScriptedEngine]]:
    """An `engine_factory` for WorkbenchApp, and the list the engines it makes are put in."""
    made: list[ScriptedEngine] = []

    def factory(on_event: Emit) -> ScriptedEngine:
        engine = ScriptedEngine(on_event, script)
        made.append(engine)
        return engine

    return factory, made
