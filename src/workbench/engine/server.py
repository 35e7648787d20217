"""The engine: typed command dispatch, its state, and the unix-socket transport.

One client at a time talks to the engine over a unix socket (JSON lines, `workbench.protocol`; the
commands and their answers are `workbench.requests`). A client that goes away (the UI quit, the SSH
session dropped) does not stop training: events keep going to the run's events.jsonl, and a new client
can connect and carry on. With no client and nothing running, the engine exits, so no stray process
holds GPU memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel

from workbench import data as wbdata
from workbench import requests as rq
from workbench.config import RunConfig
from workbench.engine.errors import explain
from workbench.engine.fast_chat import FastChat
from workbench.engine.model import Loaded, check_same_prompts
from workbench.engine.pause import PauseControl
from workbench.errors import UserError
from workbench.protocol import (
    ChatPath,
    Done,
    EngineState,
    Error,
    EvalProgress,
    Event,
    GenerationEval,
    Hello,
    Paused,
    Probe,
    ProtocolError,
    Request,
    Result,
    Resumed,
    State,
    StatsProgress,
    Status,
    Token,
    decode_request,
    encode,
)
from workbench.runs import RunDir, new_run_name, resolve_weights

log = logging.getLogger("workbench.engine")
PREPARING_CHAT = "loading a model for chat"
"""The activity of `PrepareChat`: other commands wait for it rather than being refused."""
PREPARE_WAIT_S = 900.0


class Busy(UserError):
    def __init__(self, what: str) -> None:
        super().__init__("busy", f"The engine is {what}.", "Wait for it to finish, or stop it first.")


@dataclass
class TrainingJob:
    run: RunDir
    config: RunConfig
    stop: threading.Event
    thread: threading.Thread
    pause: PauseControl
    ranks: int = 1
    """Processes training it: more than one under torchrun (no pause or probes there)."""
    ended: threading.Event = field(default_factory=threading.Event)
    """Set once the run has let go of the model, just before its Done goes out: a client that hears Done and
    at once asks for the next run or a chat must find the engine free, not still winding the thread down."""


class DataCache:
    """Tokenizers and the current dataset, kept between previews (both are slow to make).

    Loading a tokenizer may build the tiny demo model (first run only, ~30 s): `building` hears its
    progress and `built` is called when a build this cache started is over."""

    def __init__(self, building: Callable[[str], None] | None = None, built: Callable[[], None] | None = None) -> None:
        self._tokenizers: dict[tuple[Any, ...], Any] = {}
        self._datasets: dict[tuple[str, str, float], wbdata.LoadedDataset] = {}
        self._lock = threading.Lock()  # previews and statistics run on threads of their own
        self._building = building or (lambda message: None)
        self._built = built or (lambda: None)

    def tokenizer(self, config: RunConfig, loaded: Loaded | None) -> Any:
        from workbench.engine.model import load_tokenizer, model_key

        key = model_key(config)
        if loaded is not None and loaded.key == key:
            return loaded.tokenizer
        with self._lock:
            if key not in self._tokenizers:
                heard: list[str] = []  # the callback is called only when this load builds the tiny model

                def status(message: str) -> None:
                    heard.append(message)
                    self._building(message)

                try:
                    self._tokenizers[key] = load_tokenizer(config, status)
                finally:
                    if heard:
                        self._built()
            return self._tokenizers[key]

    def dataset(self, config: RunConfig) -> wbdata.LoadedDataset:
        source, split = config.data.source, config.data.split
        try:
            mtime = Path(source).stat().st_mtime if not source.startswith("builtin:") else 0.0
        except OSError:
            mtime = -1.0
        key = (source, split, mtime)
        with self._lock:
            if key not in self._datasets:
                self._datasets.clear()  # one dataset at a time: they can be large
                self._datasets[key] = wbdata.load_rows(source, split)
            return self._datasets[key]


class Engine:
    def __init__(self, socket_path: str | None = None, notes: list[str] | None = None) -> None:
        self.socket_path = socket_path
        self.notes = notes or []
        self.loaded: Loaded | None = None
        self.state: EngineState = "ready"
        self.state_detail = ""
        self.job: TrainingJob | None = None
        self.data = DataCache(building=self._loading, built=self._loaded_tokenizer)
        self.fast_chat = FastChat(lambda s: self.emit(ChatPath(state=s.state, line=s.line())))
        """The fast decoder of the model loaded for chat, built in the background (engine.fast_chat)."""
        self.shutdown_requested = threading.Event()
        self._write_lock = threading.Lock()
        self._writer: BinaryIO | None = None
        self._model_lock = threading.Lock()
        """Held by whatever uses the model: a load, a generation, a save, a training run."""
        self._activity = ""
        self._cancels: dict[str, threading.Event] = {}
        self._longest: dict[tuple[Any, ...], int] = {}
        """The longest sample per (data, template, tokenizer, length): a forecast after an unrelated edit
        does not tokenize the dataset again."""
        # command -> (handler, answered on the reader thread?). Inline commands are instant and must
        # work while a long one runs (stop during training, cancel during a generation).
        self._handlers: dict[type[rq.Args], tuple[Callable[[Any, str], rq.Answer], bool]] = {
            rq.Ping: (self.ping, True),
            rq.GetStatus: (self.status, True),
            rq.Stop: (self.stop, True),
            rq.Pause: (self.pause, True),
            rq.Continue: (self.continue_, True),
            rq.Cancel: (self.cancel, True),
            rq.Shutdown: (self.shutdown, True),
            rq.Load: (self.load, False),
            rq.Unload: (self.unload, False),
            rq.Preview: (self.preview, False),
            rq.Statistics: (self.dataset_stats, False),
            rq.Train: (self.train, False),
            rq.Generate: (self.generate, False),
            rq.Save: (self.save, False),
            rq.Evaluate: (self.evaluate, False),
            rq.QuickEval: (self.quick_eval, False),
            rq.MemoryForecast: (self.memory_forecast, False),
            rq.PrepareChat: (self.prepare_chat, False),
        }

    # -- output ---------------------------------------------------------------------------------
    def attach_writer(self, writer: BinaryIO | None) -> None:
        with self._write_lock:
            self._writer = writer

    def detach_writer(self, writer: BinaryIO) -> None:
        """Forget `writer` if it is still the current one (a newer client may have taken over)."""
        with self._write_lock:
            if self._writer is writer:
                self._writer = None

    def emit(self, event: BaseModel) -> None:
        line = encode(event).encode("utf-8")
        with self._write_lock:
            if self._writer is None:
                return
            try:
                self._writer.write(line)
                self._writer.flush()
            except (OSError, ValueError):
                self._writer = None  # the client went away; training carries on

    def say(self, message: str) -> None:
        self.emit(Status(message=message))

    def set_state(self, state: EngineState, detail: str = "") -> None:
        self.state, self.state_detail = state, detail
        self.emit(State(state=state, detail=detail))

    def hello(self) -> Hello:
        from workbench.engine.model import device_description

        versions: dict[str, str] = {}
        for name in ("unsloth", "torch", "transformers", "trl", "peft"):
            with contextlib.suppress(PackageNotFoundError):
                versions[name] = version(name)
        return Hello(pid=os.getpid(), device=device_description(), versions=versions, notes=self.notes)

    # -- dispatch -------------------------------------------------------------------------------
    def handle_line(self, line: bytes) -> None:
        try:
            request = decode_request(line)
        except ProtocolError as exc:
            self.emit(Error(type="protocol", message=str(exc)))
            return
        self.handle(request)

    def handle(self, request: Request) -> None:
        try:
            args = rq.parse_args(request.cmd, request.args)
        except rq.BadArguments as exc:
            hint = "Fix the field in the Config pane or the TOML file." if exc.in_config else ""
            self.emit(Error(id=request.id, type="config" if exc.in_config else "protocol", message=str(exc),
                            hint=hint))
            return
        handler, inline = self._handlers[type(args)]
        if inline:
            self._answer(request.id, args, handler)
        else:
            threading.Thread(target=self._answer, args=(request.id, args, handler), name=f"cmd-{args.cmd}",
                             daemon=True).start()

    def _answer(self, rid: str, args: rq.Args, handler: Callable[[Any, str], rq.Answer]) -> None:
        try:
            answer = handler(args, rid)
        except Exception as exc:  # a process boundary: every failure becomes an Error event, never a crash
            if not isinstance(exc, UserError):
                log.error("command %s failed:\n%s", args.cmd, traceback.format_exc())
            config = getattr(args, "config", None)
            why = explain(exc, model_name=config.model.name if isinstance(config, RunConfig) else "")
            self.emit(Error(id=rid, type=why.type, message=why.message, hint=why.hint))
            return
        self.emit(Result(id=rid, data=answer.model_dump(mode="json")))

    # -- the model lock -------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self.job is not None and not self.job.ended.is_set()  # `ended` is set however work() ends

    @property
    def idle(self) -> bool:
        return not self.training and not self._model_lock.locked()

    def _claim(self, activity: str) -> None:
        if self.training:
            raise Busy("training")
        # Loading for chat ahead of a question is a courtesy: what the user asks for waits behind it (a model
        # load, minutes at most) instead of being refused.
        got = self._model_lock.acquire(blocking=False) or (
            self._activity == PREPARING_CHAT and self._model_lock.acquire(timeout=PREPARE_WAIT_S))
        if not got:
            raise Busy(self._activity or "busy")
        self._activity = activity

    def _release(self) -> None:
        self._activity = ""
        self._model_lock.release()
        self.set_state("ready")

    @contextlib.contextmanager
    def busy(self, activity: str, state: EngineState, detail: str = "") -> Iterator[None]:
        """Use the model for one command: refused while something else uses it; ready again after."""
        self._claim(activity)
        try:
            self.set_state(state, detail)
            yield
        finally:
            self._release()

    def _loading(self, message: str) -> None:
        """Progress of a load, or of the tiny model's first build: the state says loading, with it."""
        if not self.training:
            self.set_state("loading", message)
        self.emit(Status(message=message))

    def _loaded_tokenizer(self) -> None:
        if not self._model_lock.locked():  # a load holding the lock sets its own state when it ends
            self.set_state("ready")

    def _ensure_model(self, config: RunConfig, adapter: str | None) -> Loaded:
        """The base model of `config`, with `adapter` on it when given; reused when already loaded."""
        from workbench.engine.model import load_adapter, load_base, model_key

        loaded = self.loaded
        if loaded is not None and loaded.key == model_key(config) and (adapter is None or loaded.adapter_path == adapter):
            return loaded
        self.set_state("loading", f"loading {config.model.name}")
        self.fast_chat.drop()
        self.loaded = None  # the old model's memory can go before the new one is loaded
        loaded = load_base(config, self._loading)
        if adapter is not None:
            load_adapter(loaded, adapter)
        self.loaded = loaded
        return loaded

    # -- inline commands ------------------------------------------------------------------------
    def ping(self, args: rq.Ping, rid: str) -> rq.Pong:
        return rq.Pong()

    def status(self, args: rq.GetStatus, rid: str) -> rq.EngineStatus:
        run = self.job.run if self.job else None
        return rq.EngineStatus(
            state=self.state, detail=self.state_detail, run=run.name if run else None,
            run_dir=str(run.path) if run else None, training=self.training, model_loaded=self.loaded is not None,
            has_adapter=bool(self.loaded and self.loaded.has_lora), pid=os.getpid())

    def stop(self, args: rq.Stop, rid: str) -> rq.Stopping:
        if self.job is None or not self.training:
            return rq.Stopping(stopping=False)
        self.job.stop.set()
        self.set_state("stopping", "stopping at the next step boundary, then saving a checkpoint")
        return rq.Stopping(stopping=True)

    def cancel(self, args: rq.Cancel, rid: str) -> rq.Nothing:
        event = self._cancels.get(args.target)
        if event is not None:
            event.set()
        return rq.Nothing()

    def shutdown(self, args: rq.Shutdown, rid: str) -> rq.Nothing:
        if self.training:
            raise Busy("training; stop it first")
        self.shutdown_requested.set()
        return rq.Nothing()

    @contextlib.contextmanager
    def cancellable(self, rid: str) -> Iterator[threading.Event]:
        event = threading.Event()
        self._cancels[rid] = event
        try:
            yield event
        finally:
            self._cancels.pop(rid, None)

    # -- model ----------------------------------------------------------------------------------
    def load(self, args: rq.Load, rid: str) -> rq.ModelLoaded:
        from workbench.engine.model import count_parameters

        with self.busy("loading a model", "loading", args.config.model.name):
            loaded = self._ensure_model(args.config, args.adapter)
            _trainable, total = count_parameters(loaded.model)
            return rq.ModelLoaded(model=args.config.model.name, device=loaded.device, total_params=total,
                                  has_adapter=loaded.has_lora)

    def unload(self, args: rq.Unload, rid: str) -> rq.Nothing:
        from workbench.engine.model import release_memory

        with self.busy("unloading", "loading", "unloading the model"):
            self.fast_chat.drop()
            self.loaded = None
            release_memory()
        return rq.Nothing()

    # -- data -----------------------------------------------------------------------------------
    def preview(self, args: rq.Preview, rid: str) -> rq.PreviewAnswer:
        config = args.config
        d = config.data
        tokenizer = self.data.tokenizer(config, self.loaded)
        dataset = self.data.dataset(config)
        rows = dataset.rows
        positions = [p for p in args.positions if 0 <= p < len(rows)]
        if args.file_rows:  # file row numbers, as the statistics list them
            by_row = {r.row: i for i, r in enumerate(rows)}
            positions += [by_row[r] for r in args.file_rows if r in by_row]
        # The whole dataset is validated (once: cached on it): how rows are read (two text columns or
        # chat turns) depends on all of them, and a dataset with no usable row is an error the pane shows.
        wanted = {rows[p].row for p in positions}
        examples, issues = wbdata.require_usable(dataset, d.input_column, d.output_column, d.template)
        examples = [e for e in examples if e.row in wanted]
        samples = {s.row: s for s in wbdata.tokenize_examples(
            examples, tokenizer, d.template, d.instruction, config.model.max_seq_length, d.train_on_responses_only)}
        examples_by_row = {e.row: e for e in examples}
        problems = {i.row: i for i in issues if i.kind in wbdata.INVALID_KINDS}
        items = []
        for p in positions:
            row = rows[p].row
            example, problem = examples_by_row.get(row), problems.get(row)
            items.append(rq.PreviewItem(
                position=p, row=row, sample=samples.get(row), issue=problem.describe() if problem else None,
                conversation=example.conversation if example else None, summary=example.summary if example else None))
        return rq.PreviewAnswer(source=dataset.source, rows_total=len(rows), columns=dataset.columns,
                                fingerprint=dataset.fingerprint, items=items, max_seq_length=config.model.max_seq_length)

    def dataset_stats(self, args: rq.Statistics, rid: str) -> rq.StatsAnswer:
        config = args.config
        d = config.data
        tokenizer = self.data.tokenizer(config, self.loaded)
        dataset = self.data.dataset(config)
        wbdata.require_usable(dataset, d.input_column, d.output_column, d.template)  # none usable: an error
        last = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last > 0.2 or done == total:
                last = now
                self.emit(StatsProgress(id=rid, done=done, total=total))

        with self.cancellable(rid) as cancel:
            stats = wbdata.compute_stats(dataset, tokenizer, d.input_column, d.output_column, d.template,
                                         d.instruction, config.model.max_seq_length, d.train_on_responses_only,
                                         on_progress=progress, stop=cancel)
        return rq.StatsAnswer(stats=stats)

    def memory_forecast(self, args: rq.MemoryForecast, rid: str) -> rq.MemoryForecastAnswer:
        from workbench.engine import forecast
        from workbench.engine.model import model_key

        config, d = args.config, args.config.data
        dataset = self.data.dataset(config)
        key = (dataset.fingerprint, d.input_column, d.output_column, d.template, d.instruction,
               d.train_on_responses_only, model_key(config))
        if key not in self._longest:
            self._longest[key] = forecast.longest_sample(config, self.data.tokenizer(config, self.loaded), dataset)
        free_gib, gpu = forecast.free_memory()
        return forecast.answer(config, forecast.model_shape(config), self._longest[key], free_gib, gpu)

    # -- training -------------------------------------------------------------------------------
    def train(self, args: rq.Train, rid: str) -> rq.TrainStarted:
        from workbench.engine.train import check_resume, run_training

        config = args.config
        plan = self._launch_plan(args)  # refused before anything is claimed or written
        self._claim("training")
        try:
            run = self._run_dir(args)
            if args.resume:
                check_resume(config, run)  # refused here, to the request, before anything is written
        except BaseException:
            self._release()
            raise
        stop = threading.Event()
        pause = PauseControl(record=self._recorder(run))

        held: list[BaseModel] = []

        def emit_holding_done(event: BaseModel) -> None:
            # The run's Done waits until the engine is free again (below): it is the client's cue to go on.
            (held.append if isinstance(event, Done) else self.emit)(event)

        def work() -> None:
            try:
                self.set_state("training", run.name)
                self.fast_chat.drop()  # its weights would go stale, and its memory is the run's
                if plan is None:
                    _done, self.loaded = run_training(config, run, emit_holding_done, stop, resume=args.resume,
                                                      loaded=self.loaded, socket_path=self.socket_path, pause=pause)
                else:
                    self._train_on_ranks(plan, config, run, stop, args.resume, emit_holding_done)
            finally:
                job.ended.set()
                self._release()
                for event in held:
                    self.emit(event)

        thread = threading.Thread(target=work, name="train", daemon=True)
        job = TrainingJob(run, config, stop, thread, pause, ranks=plan.world if plan else 1)
        self.job = job
        job.thread.start()
        return rq.TrainStarted(run=run.name, run_dir=str(run.path))

    def _launch_plan(self, args: rq.Train) -> Any:
        """None for a run on this process; else how its ranks start (CPU ranks asked for, or more than one GPU
        in training.gpus, checked against the GPUs NVML sees: a request the machine cannot run is refused)."""
        from workbench.distributed import LaunchError, LaunchPlan, resolve_gpus

        strategy = args.config.training.strategy
        if args.cpu_ranks is not None:
            return LaunchPlan(nproc_per_node=args.cpu_ranks, strategy=strategy)
        if args.config.training.gpus == 1:
            return None
        from workbench.gpu import sample_gpus

        gpus, _why = sample_gpus()
        try:
            ids = resolve_gpus(args.config.training.gpus, len(gpus))
        except LaunchError as exc:
            raise UserError("config", str(exc), "Change training.gpus in the Config pane.") from None
        return LaunchPlan(nproc_per_node=len(ids), gpu_ids=ids, strategy=strategy) if len(ids) > 1 else None

    def _train_on_ranks(self, plan: Any, config: RunConfig, run: RunDir, stop: threading.Event, resume: bool,
                        emit: Callable[[BaseModel], None]) -> None:
        """The run under torchrun: the engine's own model goes first (rank 0 needs GPU 0's memory), then the
        ranks' events are passed on as rank 0 writes them."""
        from workbench.engine.model import release_memory
        from workbench.rank_launcher import train_on_ranks

        self.loaded = None
        release_memory()
        train_on_ranks(plan, config, run, emit, stop, resume=resume, engine_socket=self.socket_path)

    def _recorder(self, run: RunDir) -> Callable[[Event], None]:
        """An event of the run: into its events.jsonl and to the client; the engine's state follows a pause."""
        def record(event: Event) -> None:
            event.run = run.name
            run.append(event)
            self.emit(event)
            if isinstance(event, Paused):
                self.set_state("paused", f"{run.name} at step {event.step}")
            elif isinstance(event, Resumed):
                self.set_state("training", run.name)
        return record

    def pause(self, args: rq.Pause, rid: str) -> rq.Pausing:
        if self.job is None or not self.training:
            return rq.Pausing(pausing=False)
        if self.job.ranks > 1:
            raise UserError("ranks", "Pause, probes and the quick eval are for runs on one process; this run has "
                            f"{self.job.ranks} ranks.", "Stop it (a checkpoint is saved) and chat with that.")
        self.job.pause.request()
        return rq.Pausing(pausing=True)

    def continue_(self, args: rq.Continue, rid: str) -> rq.Continuing:
        if self.job is None or not self.training:
            return rq.Continuing(continuing=False)
        return rq.Continuing(continuing=self.job.pause.resume())

    def _paused_job(self, cancel: threading.Event) -> TrainingJob:
        """The training run, paused (asked to pause now if it was not): a probe's model."""
        job = self.job
        assert job is not None
        if job.ranks > 1:
            raise UserError("ranks", f"This run trains on {job.ranks} ranks: chat and the quick eval answer from a "
                            "run on one process, or after it ends.", "Stop the run (a checkpoint is saved), then chat.")
        if not job.pause.paused:
            job.pause.request()
            self.say("Pausing training at the next step boundary to answer with the live adapter…")
            if not job.pause.wait_paused(PAUSE_WAIT_S, cancel):
                raise UserError("busy", "The run did not reach a step boundary in time (or the request was "
                                "cancelled).", "Try again, or stop the run.")
        return job

    def _run_dir(self, args: rq.Train) -> RunDir:
        if args.run_dir:
            path = Path(args.run_dir)
            return RunDir(path) if args.resume else RunDir.create(path.parent, path.name)
        output = args.config.output
        return RunDir.create(output.runs_dir, output.run_name or new_run_name(args.config.model.name))

    # -- chat -----------------------------------------------------------------------------------
    def generate(self, args: rq.Generate, rid: str) -> rq.Generated:
        from workbench.engine.generate import generate_fast, generate_stream

        if self.training:
            return self._probe_chat(args, rid)
        config, adapter = self._chat_weights(args)
        with self.busy("generating", "generating"), self.cancellable(rid) as cancel:
            loaded = self._ensure_model(config, adapter)
            if args.run_dir is not None:
                check_same_prompts(Path(args.run_dir), loaded.tokenizer, config, "the model loaded for chat")
            self.set_state("generating")
            self.fast_chat.offer(loaded, args.config.model.chat_path, config.model.max_seq_length)
            streams: list[rq.Stream] = ["tuned", "base"] if args.compare else ["tuned"]
            results: dict[rq.Stream, rq.GenerationStats] = {}
            for stream in streams:
                settings: dict[str, Any] = dict(
                    template=config.data.template, instruction=config.data.instruction,
                    conversation=args.conversation, on_text=self._token_sender(rid, stream), cancel=cancel,
                    max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
                # The base model's answer (adapter off) always takes the standard path: the fast decoder
                # holds the tuned weights only.
                decoder = self.fast_chat.decoder_for(loaded) if stream == "tuned" else None
                result = generate_fast(loaded, decoder, self.fast_chat.status.path, **settings) if decoder else None
                if result is None:
                    result = generate_stream(loaded, use_adapter=(stream == "tuned"), **settings)
                results[stream] = result.stats()
            return rq.Generated(results=results, has_adapter=loaded.has_lora,
                                fast_chat=self.fast_chat.status.line())  # offer() set it, unavailable included

    def prepare_chat(self, args: rq.PrepareChat, rid: str) -> rq.ChatPrepared:
        """Load what Chat will answer with and start its fast decoder's build, before the first question."""
        if self.training:
            return rq.ChatPrepared(fast_chat="training: chat answers from the live adapter (standard path)",
                                   has_adapter=True)
        config, adapter = self._chat_weights(rq.Generate(config=args.config, run_dir=args.run_dir, conversation=""))
        with self.busy(PREPARING_CHAT, "loading", config.model.name):
            loaded = self._ensure_model(config, adapter)
            status = self.fast_chat.offer(loaded, args.config.model.chat_path, config.model.max_seq_length)
            return rq.ChatPrepared(fast_chat=status.line(), has_adapter=loaded.has_lora)

    def _probe_chat(self, args: rq.Generate, rid: str) -> rq.Generated:
        """Chat during training: the run pauses at a step boundary and the live adapter answers, with the
        run's own config; the answer is recorded with the run (what the model said when)."""
        from workbench.engine.generate import generate_stream

        with self.cancellable(rid) as cancel:
            job = self._paused_job(cancel)
            config = job.config
            with job.pause.probe() as live:
                streams: list[rq.Stream] = ["tuned", "base"] if args.compare else ["tuned"]
                results: dict[rq.Stream, rq.GenerationStats] = {}
                for stream in streams:
                    result = generate_stream(
                        live, template=config.data.template, instruction=config.data.instruction,
                        conversation=args.conversation, on_text=self._token_sender(rid, stream), cancel=cancel,
                        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                        use_adapter=(stream == "tuned"))
                    results[stream] = result.stats()
            job.pause.record(Probe(step=job.pause.step, prompt=args.conversation, output=results["tuned"].text))
            return rq.Generated(results=results, has_adapter=True)

    def quick_eval(self, args: rq.QuickEval, rid: str) -> rq.QuickEvalDone:
        """A few held-out rows summarized by the live adapter while the run waits; recorded with the run as
        a probe and as a generation eval at that step (so the chart and a re-attached run show it)."""
        from workbench.engine.quick_eval import held_out_prompts, summarize_and_score

        if not self.training or self.job is None:
            raise UserError("not_training", "Nothing is training: the quick eval probes a running run.",
                            "Use the Eval pane (6) or `workbench eval` for a finished run.")
        with self.cancellable(rid) as cancel:
            job = self._paused_job(cancel)
            config = job.config
            count = args.rows or config.eval.generate_rows
            with job.pause.probe() as live:
                rows = held_out_prompts(live.tokenizer, config, count)
                if not rows.prompts:
                    raise UserError("no_rows", "The run's config has no held-out rows to summarize.",
                                    "Set data.eval_fraction, or an eval split or file, for the next run.")
                scored = summarize_and_score(live, rows, config.eval, cancel)
            step = job.pause.step
            sample = scored.texts[0] if scored.texts else ""
            job.pause.record(GenerationEval(run=job.run.name, step=step, rouge_l=scored.rouge_l, chrf=scored.chrf,
                                            rows=len(scored.texts), sample=sample))
            job.pause.record(Probe(step=step, kind="eval", prompt=f"{len(scored.texts)} held-out rows",
                                   output=f"ROUGE-L {scored.rouge_l:.1f}, chrF++ {scored.chrf:.1f}"))
            return rq.QuickEvalDone(step=step, rouge_l=scored.rouge_l, chrf=scored.chrf, rows=len(scored.texts),
                                    sample=sample)

    def _token_sender(self, rid: str, stream: rq.Stream) -> Callable[[str], None]:
        def send(text: str) -> None:
            self.emit(Token(id=rid, text=text, stream=stream))
        return send

    def _chat_weights(self, args: rq.Generate) -> tuple[RunConfig, str | None]:
        """The config and adapter to chat with: the run's own, when a run with weights is named."""
        if args.run_dir is None or not RunDir(args.run_dir).has_weights():
            return args.config, None
        source = resolve_weights(RunDir(args.run_dir))
        return source.config, str(source.adapter)

    # -- judging summaries ------------------------------------------------------------------------
    def evaluate(self, args: rq.Evaluate, rid: str) -> rq.EvalFinished:
        from workbench.engine.evaluate import EvalRequest, run_eval

        request = EvalRequest(run=RunDir(args.run_dir), rows=args.rows, base=args.base, checkpoint=args.checkpoint,
                              resume=args.resume, name=args.name)
        folder_seen: list[str] = []

        def progress(made: list[Any], done: int, total: int) -> None:
            self.emit(EvalProgress(id=rid, done=done, total=total, folder=folder_seen[0] if folder_seen else ""))

        with self.busy("evaluating", "generating", "judging summaries"), self.cancellable(rid) as cancel:
            outcome = run_eval(request, say=self.say, models=self._ensure_model, stop=cancel, on_rows=progress,
                               fast=self._eval_decoder,
                               on_folder=folder_seen.append)
        return rq.EvalFinished(folder=str(outcome.folder), complete=outcome.complete, rows_done=outcome.rows_done,
                               rows_total=outcome.rows_planned)

    def _eval_decoder(self, loaded: Loaded, config: RunConfig, rows: int, capacity: int) -> Any:
        """The batched fast decoder for an eval's tuned answers (or None: `generate` makes them)."""
        return self.fast_chat.rows_decoder(loaded, config.model.chat_path, rows, capacity, say=self.say)

    # -- saving ---------------------------------------------------------------------------------
    def save(self, args: rq.Save, rid: str) -> rq.Saved:
        from workbench.engine.export import export_run

        with self.busy("saving", "saving", args.kind):
            return export_run(RunDir(args.run_dir), args.kind, Path(args.path).expanduser(),
                              checkpoint=args.checkpoint, overwrite=args.overwrite, say=self.say,
                              models=self._ensure_model)


# -- transport ------------------------------------------------------------------------------------

PAUSE_WAIT_S = 600.0
"""A probe waits at most this long for the run to reach a step boundary (a slow step on a big model)."""

FIRST_CLIENT_WAIT_S = 120.0
"""An engine nobody connects to in this time exits: its UI died while it started (the UI connects within
milliseconds of the socket appearing), and an engine with no run must not hold memory forever."""


def serve_socket(engine: Engine, path: str, idle_exit: bool = True,
                 first_client_wait_s: float = FIRST_CLIENT_WAIT_S) -> None:
    """Accept clients one at a time until shut down (or idle with no client, when idle_exit)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)  # the socket is the user's alone
    try:
        server.bind(path)
    finally:
        os.umask(old_umask)
    server.listen(4)
    server.settimeout(0.5)
    active: list[socket.socket] = []
    client_seen = False
    listening_since = time.monotonic()

    def serve(conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        writer = conn.makefile("wb")
        engine.attach_writer(writer)
        engine.emit(engine.hello())
        engine.emit(State(state=engine.state, detail=engine.state_detail))
        try:
            for line in reader:
                if line.strip():
                    engine.handle_line(line)
        except OSError:
            pass  # the client went away
        finally:
            engine.detach_writer(writer)
            with contextlib.suppress(ValueError):
                active.remove(conn)
            with contextlib.suppress(OSError):
                conn.close()

    try:
        while not engine.shutdown_requested.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                waited = time.monotonic() - listening_since
                if idle_exit and not active and engine.idle and (client_seen or waited > first_client_wait_s):
                    break
                continue
            client_seen = True
            for old in list(active):  # a new client takes over: one UI at a time
                with contextlib.suppress(OSError):
                    old.shutdown(socket.SHUT_RDWR)
            active.append(conn)
            threading.Thread(target=serve, args=(conn,), name="client", daemon=True).start()
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
