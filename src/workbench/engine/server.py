"""The engine: command dispatch and the unix-socket transport.

One client at a time talks to the engine over a unix socket (JSON lines, `workbench.protocol`). A
client that goes away (the UI quit, the SSH session dropped) does not stop training: events keep going
to the run's events.jsonl, and a new client can connect and carry on. With no client and nothing
running, the engine exits, so no stray process holds GPU memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel

from workbench import data as wbdata
from workbench.config import RunConfig, config_from_dict
from workbench.engine.errors import UserError, explain
from workbench.protocol import (
    Error,
    Hello,
    ProtocolError,
    Request,
    Result,
    State,
    StatsProgress,
    Status,
    Token,
    decode_request,
    encode,
)
from workbench.runs import RunDir, new_run_name

log = logging.getLogger("workbench.engine")


class Busy(UserError):
    def __init__(self, what: str) -> None:
        super().__init__("busy", f"The engine is {what}.", "Wait for it to finish, or stop it first.")


class Engine:
    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path
        self.loaded: Any = None
        self.state = "ready"
        self.state_detail = ""
        self._write_lock = threading.Lock()
        self._writer: BinaryIO | None = None
        self._model_lock = threading.Lock()
        self._activity = ""
        self.train_stop = threading.Event()
        self.train_thread: threading.Thread | None = None
        self.run: RunDir | None = None
        self.run_config: RunConfig | None = None
        self._cancels: dict[str, threading.Event] = {}
        self._tokenizers: dict[tuple[Any, ...], Any] = {}
        self._datasets: dict[tuple[str, str, float], wbdata.LoadedDataset] = {}
        self.fingerprint = ""
        self.shutdown_requested = threading.Event()

    # -- output ---------------------------------------------------------------------------------
    def attach_writer(self, writer: BinaryIO | None) -> None:
        with self._write_lock:
            self._writer = writer

    def emit(self, event: BaseModel) -> None:
        line = encode(event).encode("utf-8")
        with self._write_lock:
            if self._writer is None:
                return
            try:
                self._writer.write(line)
                self._writer.flush()
            except (BrokenPipeError, ConnectionResetError, OSError, ValueError):
                self._writer = None  # the client went away; training carries on

    def set_state(self, state: str, detail: str = "") -> None:
        self.state, self.state_detail = state, detail
        self.emit(State(state=state, detail=detail))  # type: ignore[arg-type]

    def hello(self) -> Hello:
        from workbench.engine.model import device_description

        versions: dict[str, str] = {}
        for name in ("unsloth", "torch", "transformers", "trl", "peft"):
            with contextlib.suppress(Exception):
                from importlib.metadata import version

                versions[name] = version(name)
        return Hello(pid=os.getpid(), device=device_description(), versions=versions)

    # -- dispatch -------------------------------------------------------------------------------
    def handle_line(self, line: bytes) -> None:
        try:
            req = decode_request(line)
        except ProtocolError as exc:
            self.emit(Error(type="protocol", message=str(exc)))
            return
        self.handle(req)

    def handle(self, req: Request) -> None:
        inline = {"ping": self._ping, "stop": self._stop, "cancel": self._cancel, "status": self._status,
                  "shutdown": self._shutdown}
        if req.cmd in inline:
            self._answer(req, inline[req.cmd])
            return
        handler = getattr(self, f"_cmd_{req.cmd}")
        threading.Thread(target=self._answer, args=(req, handler), name=f"cmd-{req.cmd}", daemon=True).start()

    def _answer(self, req: Request, handler: Callable[[Request], dict[str, Any] | None]) -> None:
        try:
            data = handler(req)
            self.emit(Result(id=req.id, data=data or {}))
        except Exception as exc:
            if not isinstance(exc, UserError):
                log.error("command %s failed:\n%s", req.cmd, traceback.format_exc())
            why = explain(exc, model_name=str(req.args.get("config", {}).get("model", {}).get("name", "")))
            self.emit(Error(id=req.id, type=why.type, message=why.message, hint=why.hint))

    def _config(self, req: Request) -> RunConfig:
        return config_from_dict(req.args.get("config") or {}, "config")

    # -- inline commands ------------------------------------------------------------------------
    def _ping(self, req: Request) -> dict[str, Any]:
        return {"pong": True}

    def _status(self, req: Request) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": self.state_detail,
            "run": self.run.name if self.run else None,
            "run_dir": str(self.run.path) if self.run else None,
            "training": self.training,
            "model_loaded": self.loaded is not None,
            "has_adapter": bool(self.loaded and self.loaded.has_lora),
            "pid": os.getpid(),
        }

    def _stop(self, req: Request) -> dict[str, Any]:
        if not self.training:
            return {"stopping": False}
        self.train_stop.set()
        self.set_state("stopping", "stopping at the next step boundary, then saving a checkpoint")
        return {"stopping": True}

    def _cancel(self, req: Request) -> dict[str, Any]:
        target = str(req.args.get("target", ""))
        for key, ev in list(self._cancels.items()):
            if not target or key == target:
                ev.set()
        return {}

    def _shutdown(self, req: Request) -> dict[str, Any]:
        if self.training:
            raise Busy("training; stop it first")
        self.shutdown_requested.set()
        return {}

    @property
    def training(self) -> bool:
        return self.train_thread is not None and self.train_thread.is_alive()

    # -- model ----------------------------------------------------------------------------------
    def _acquire(self, what: str) -> None:
        if self.training:
            raise Busy("training")
        if not self._model_lock.acquire(blocking=False):
            raise Busy(self._activity or "busy")
        self._activity = what

    def _release(self) -> None:
        self._activity = ""
        self._model_lock.release()

    def _ensure_model(self, config: RunConfig, adapter: str | None = None) -> None:
        from workbench.engine.model import load_adapter, load_base, model_key

        want_adapter = adapter or ""
        current = getattr(self.loaded, "adapter_path", None) if self.loaded else None
        if self.loaded is not None and self.loaded.key == model_key(config) and (
            not want_adapter or current == want_adapter
        ):
            return
        self.set_state("loading", f"loading {config.model.name}")
        self.loaded = None
        self.loaded = load_base(config, self._loading)
        if want_adapter:
            load_adapter(self.loaded, want_adapter)
            self.loaded.adapter_path = want_adapter

    def _loading(self, message: str) -> None:
        """Progress of a load, or of the tiny model's first build: the state says loading, with it."""
        if not self.training:
            self.set_state("loading", message)
        self.emit(Status(message=message))

    def _cmd_load(self, req: Request) -> dict[str, Any]:
        from workbench.engine.model import count_parameters

        config = self._config(req)
        self._acquire("loading a model")
        try:
            self._ensure_model(config, req.args.get("adapter"))
            _trainable, total = count_parameters(self.loaded.model)
        finally:
            self._release()
            self.set_state("ready")
        return {"model": config.model.name, "device": self.loaded.device, "total_params": total,
                "has_adapter": self.loaded.has_lora}

    def _cmd_unload(self, req: Request) -> dict[str, Any]:
        self._acquire("unloading")
        try:
            self.loaded = None
            with contextlib.suppress(Exception):
                import gc

                import torch

                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        finally:
            self._release()
        return {}

    # -- data -----------------------------------------------------------------------------------
    def _tokenizer(self, config: RunConfig) -> Any:
        from workbench.engine.model import load_tokenizer, model_key

        key = model_key(config)
        if self.loaded is not None and self.loaded.key == key:
            return self.loaded.tokenizer
        if key not in self._tokenizers:
            heard: list[str] = []  # the status callback is only called when this call builds the tiny model

            def status(message: str) -> None:
                heard.append(message)
                self._loading(message)

            try:
                self._tokenizers[key] = load_tokenizer(config, status)
            finally:
                if heard and not self._model_lock.locked():  # a load holding the lock sets its own state
                    self.set_state("ready")
        return self._tokenizers[key]

    def _dataset(self, config: RunConfig) -> wbdata.LoadedDataset:
        source, split = config.data.source, config.data.split
        try:
            mtime = Path(source).stat().st_mtime if not source.startswith("builtin:") else 0.0
        except OSError:
            mtime = -1.0
        key = (source, split, mtime)
        if key not in self._datasets:
            self._datasets.clear()  # one dataset at a time: they can be large
            self._datasets[key] = wbdata.load_rows(source, split)
        return self._datasets[key]

    def _cmd_preview(self, req: Request) -> dict[str, Any]:
        config = self._config(req)
        d = config.data
        tokenizer = self._tokenizer(config)
        dataset = self._dataset(config)
        rows = dataset.rows
        positions = [int(p) for p in req.args.get("positions", [])]
        if "rows" in req.args:  # file row numbers (as the statistics list them)
            by_row = {r.row: i for i, r in enumerate(rows)}
            positions = [by_row[r] for r in req.args["rows"] if r in by_row]
        if not positions:
            start = int(req.args.get("start", 0))
            count = int(req.args.get("count", 1))
            positions = list(range(max(0, start), min(len(rows), start + max(1, count))))
        mini = wbdata.LoadedDataset(dataset.source, [rows[p] for p in positions if 0 <= p < len(rows)],
                                    dataset.columns, dataset.fingerprint)
        examples, issues = wbdata.validate_rows(mini, d.input_column, d.output_column)
        samples = {s.row: s for s in wbdata.tokenize_examples(
            examples, tokenizer, d.template, d.instruction, config.model.max_seq_length, d.train_on_responses_only)}
        problems = {i.row: i for i in issues if i.kind in wbdata.INVALID_KINDS}
        items = []
        for p in positions:
            if not 0 <= p < len(rows):
                continue
            row = rows[p].row
            sample = samples.get(row)
            issue = problems.get(row)
            items.append({
                "position": p,
                "row": row,
                "sample": sample.to_dict() if sample else None,
                "issue": issue.describe() if issue else None,
                "summary": (rows[p].values or {}).get(d.output_column) if sample else None,
                "conversation": (rows[p].values or {}).get(d.input_column) if sample else None,
            })
        return {"source": dataset.source, "rows_total": len(rows), "columns": dataset.columns,
                "fingerprint": dataset.fingerprint, "items": items, "max_seq_length": config.model.max_seq_length}

    def _cmd_dataset_stats(self, req: Request) -> dict[str, Any]:
        config = self._config(req)
        d = config.data
        tokenizer = self._tokenizer(config)
        dataset = self._dataset(config)
        cancel = threading.Event()
        self._cancels[req.id] = cancel
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.2 or done == total:
                last[0] = now
                self.emit(StatsProgress(id=req.id, done=done, total=total))

        try:
            stats = wbdata.compute_stats(dataset, tokenizer, d.input_column, d.output_column, d.template,
                                         d.instruction, config.model.max_seq_length, d.train_on_responses_only,
                                         on_progress=progress, stop=cancel)
        finally:
            self._cancels.pop(req.id, None)
        return stats.to_dict()

    # -- training -------------------------------------------------------------------------------
    def _cmd_train(self, req: Request) -> dict[str, Any]:
        from workbench.engine.train import run_training

        config = self._config(req)
        if self.training:
            raise Busy("already training")
        if not self._model_lock.acquire(blocking=False):
            raise Busy(self._activity or "busy")
        try:
            run_dir = req.args.get("run_dir")
            if run_dir:
                run = RunDir.create(Path(run_dir).parent, Path(run_dir).name)
            else:
                name = config.output.run_name or new_run_name(config.model.name)
                run = RunDir.create(config.output.runs_dir, name)
            run.write_engine_info(os.getpid(), self.socket_path)
            self.run, self.run_config = run, config
            self.train_stop = threading.Event()
            resume = bool(req.args.get("resume", False))
        except Exception:
            self._model_lock.release()
            raise

        def work() -> None:
            try:
                self.set_state("training", run.name)
                _done, self.loaded = run_training(config, run, self.emit, self.train_stop, resume=resume,
                                                 loaded=self.loaded)
            finally:
                run.clear_engine_info()
                self._model_lock.release()
                self.set_state("ready")

        self.train_thread = threading.Thread(target=work, name="train", daemon=True)
        self.train_thread.start()
        return {"run": run.name, "run_dir": str(run.path)}

    # -- chat -----------------------------------------------------------------------------------
    def _cmd_generate(self, req: Request) -> dict[str, Any]:
        from workbench.engine.generate import generate_stream

        config = self._config(req)
        a = req.args
        self._acquire("generating")
        cancel = threading.Event()
        self._cancels[req.id] = cancel
        try:
            self._ensure_model(config, a.get("adapter"))
            self.set_state("generating")
            streams = ["tuned", "base"] if a.get("compare") else [a.get("stream", "tuned")]
            results = {}
            for stream in streams:
                result = generate_stream(
                    self.loaded,
                    template=config.data.template,
                    instruction=config.data.instruction,
                    conversation=str(a.get("conversation", "")),
                    on_text=lambda text, s=stream: self.emit(Token(id=req.id, text=text, stream=s)),
                    cancel=cancel,
                    max_new_tokens=int(a.get("max_new_tokens", 256)),
                    temperature=float(a.get("temperature", 0.7)),
                    top_p=float(a.get("top_p", 0.9)),
                    use_adapter=(stream == "tuned"),
                )
                results[stream] = result.as_dict()
            return {"results": results, "has_adapter": self.loaded.has_lora}
        finally:
            self._cancels.pop(req.id, None)
            self._release()
            self.set_state("ready")

    # -- saving ---------------------------------------------------------------------------------
    def _cmd_save(self, req: Request) -> dict[str, Any]:
        from workbench.engine.export import SAVERS

        adapter = req.args.get("adapter")
        config = self._config(req) if (adapter or not self.run_config) else self.run_config
        kind = str(req.args.get("kind", "lora"))
        if kind not in SAVERS:
            raise UserError("save", f"unknown save kind {kind!r}", f"Use one of {', '.join(SAVERS)}.")
        target = req.args.get("path")
        if not target:
            raise UserError("save", "no path given to save to", "Choose a folder.")
        self._acquire("saving")
        try:
            if adapter:
                self.set_state("loading", f"loading the adapter {adapter}")
                self._ensure_model(config, str(adapter))
            if self.loaded is None or not self.loaded.has_lora:
                raise UserError("save", "There is no tuned model in the engine to save.",
                                "Train first, or open a run whose adapter should be loaded.")
            self.set_state("saving", kind)
            fingerprint = ""
            with contextlib.suppress(Exception):  # the fingerprint is metadata: a moved dataset must not block saving
                fingerprint = wbdata.load_rows(config.data.source, config.data.split).fingerprint
            path = SAVERS[kind](self.loaded, config, Path(str(target)).expanduser(), fingerprint,
                                overwrite=bool(req.args.get("overwrite", False)))
        finally:
            self._release()
            self.set_state("ready")
        return {"path": str(path), "kind": kind}


# -- transport ------------------------------------------------------------------------------------

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
    client_seen = threading.Event()
    listening_since = time.monotonic()

    def serve(conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        writer = conn.makefile("wb")
        engine.attach_writer(writer)
        engine.emit(engine.hello())
        engine.emit(State(state=engine.state, detail=engine.state_detail))  # type: ignore[arg-type]
        try:
            for line in reader:
                if line.strip():
                    engine.handle_line(line)
        except (ConnectionResetError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                engine.attach_writer(None) if active and active[-1] is conn else None
            with contextlib.suppress(ValueError):
                active.remove(conn)
            with contextlib.suppress(OSError):
                conn.close()

    try:
        while not engine.shutdown_requested.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                idle = not active and not engine.training and not engine._model_lock.locked()
                if idle_exit and idle and (client_seen.is_set() or time.monotonic() - listening_since > first_client_wait_s):
                    break
                continue
            client_seen.set()
            for old in list(active):  # a new client takes over: one UI at a time
                with contextlib.suppress(OSError):
                    old.shutdown(socket.SHUT_RDWR)
            active.append(conn)
            threading.Thread(target=serve, args=(conn,), name="client", daemon=True).start()
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
