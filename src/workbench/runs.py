"""Run directories: the durable record of a fine-tuning run.

    runs/<name>/
      config.toml        the resolved configuration the run was started with
      events.jsonl       every engine event of the run, appended line by line (replayed on re-attach)
      engine.json        pid and socket of the engine process while it runs
      checkpoints/       checkpoint-<step>/ folders written by the trainer; a folder counts as complete
                         only once it holds COMPLETE_MARKER (written after everything else), so a
                         checkpoint cut short by a crash is never resumed from
      adapter/           the final LoRA adapter, tokenizer and chat template

A run is deleted by renaming its folder aside to a hidden `.deleting-...` name, then removing that:
`list_runs` never lists hidden folders, so a run is always either whole or gone from the list.

Run folders are created private to the user (0700). Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from workbench import settings
from workbench.config import ConfigError, RunConfig, load_config
from workbench.errors import UserError
from workbench.protocol import Done, Event, Log, ProtocolError, TrainStart, decode_event, encode

EVENTS_FILE = "events.jsonl"
CONFIG_FILE = "config.toml"
ENGINE_FILE = "engine.json"
CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
COMPLETE_MARKER = "workbench-complete"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TRASH_PREFIX = ".deleting-"
"""A run being deleted is first renamed to this prefix (hidden, never listed), then removed."""
RUN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RUN_NAME_MAX = 100


def new_run_name(model_name: str, now: _dt.datetime | None = None) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name.rstrip("/").split("/")[-1].split(":")[-1]).strip("-.")
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"{base or 'run'}-{stamp}"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class RunSummary:
    name: str
    path: Path
    model: str
    status: str
    """running, completed, stopped, failed, interrupted (the engine died without a final event), new."""
    step: int
    total_steps: int
    final_loss: float | None
    started: float | None
    checkpoint: Path | None


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    # -- layout -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def adapter_dir(self) -> Path:
        return self.path / ADAPTER_DIR

    @property
    def engine_path(self) -> Path:
        return self.path / ENGINE_FILE

    @classmethod
    def create(cls, runs_dir: str | Path, name: str) -> RunDir:
        runs = Path(runs_dir)
        runs.mkdir(parents=True, exist_ok=True)
        path = runs / name
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
        return cls(path)

    # -- events -----------------------------------------------------------------------------------
    def append(self, event: BaseModel) -> None:
        """Append one event as one line; a whole line per write, so a crash tears at most the last."""
        line = encode(event).encode("utf-8")
        with self._lock:
            fd = os.open(self.events_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a crash tore the last line: start ours on a fresh one
                os.write(fd, line)
            finally:
                os.close(fd)

    def iter_events(self) -> Iterator[Event]:
        """Every readable event in order; a torn or foreign line (a crash mid-write) is skipped."""
        try:
            data = self.events_path.read_bytes()
        except FileNotFoundError:
            return
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                yield decode_event(raw)
            except (ProtocolError, UnicodeDecodeError, ValueError):
                continue

    def events(self) -> list[Event]:
        return list(self.iter_events())

    def loss_curve(self) -> tuple[list[float], list[float]]:
        """(steps, losses) of every finite training loss, each step once (its first value, as the loss
        chart keeps it: a resumed run logs the steps after its checkpoint again)."""
        steps: list[float] = []
        losses: list[float] = []
        seen: set[int] = set()
        for ev in self.iter_events():
            if isinstance(ev, Log) and ev.loss is not None and math.isfinite(ev.loss) and ev.step not in seen:
                seen.add(ev.step)
                steps.append(float(ev.step))
                losses.append(ev.loss)
        return steps, losses

    # -- checkpoints ------------------------------------------------------------------------------
    def checkpoints(self, complete_only: bool = True) -> list[tuple[int, Path]]:
        found: list[tuple[int, Path]] = []
        if not self.checkpoints_dir.is_dir():
            return found
        for child in self.checkpoints_dir.iterdir():
            match = _CHECKPOINT_RE.match(child.name)
            if match and child.is_dir() and (not complete_only or (child / COMPLETE_MARKER).exists()):
                found.append((int(match.group(1)), child))
        return sorted(found)

    def newest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1][1] if found else None

    def has_weights(self) -> bool:
        """A final adapter or a complete checkpoint: something chat, eval and export can load."""
        return (self.adapter_dir / "adapter_config.json").exists() or bool(self.checkpoints())

    def discard_incomplete_checkpoints(self) -> list[Path]:
        """Remove checkpoint folders a crash left half-written (no completion marker)."""
        complete = {p for _, p in self.checkpoints(complete_only=True)}
        removed = []
        for _, path in self.checkpoints(complete_only=False):
            if path not in complete:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    # -- engine bookkeeping ---------------------------------------------------------------------
    def write_engine_info(self, pid: int, socket_path: str | None) -> None:
        tmp = self.engine_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": pid, "socket": socket_path}), encoding="utf-8")
        tmp.replace(self.engine_path)

    def engine_info(self) -> dict[str, object] | None:
        try:
            info = json.loads(self.engine_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def clear_engine_info(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.engine_path.unlink()

    def engine_alive(self) -> bool:
        info = self.engine_info()
        pid = info.get("pid") if info else None
        return isinstance(pid, int) and pid_alive(pid)

    # -- summary ----------------------------------------------------------------------------------
    def summary(self) -> RunSummary:
        step = total = 0
        final_loss: float | None = None
        last_loss: float | None = None
        status = "new"
        started: float | None = None
        for ev in self.iter_events():
            if isinstance(ev, TrainStart):
                total = ev.total_steps
                started = started or ev.t
                status = "running"
            elif isinstance(ev, Log):
                step = ev.step
                total = ev.total_steps or total
                if ev.loss is not None:
                    last_loss = ev.loss
            elif isinstance(ev, Done):
                status = ev.status
                step = ev.step or step
                final_loss = ev.final_loss if ev.final_loss is not None else last_loss
        if status == "running" and not self.engine_alive():
            status = "interrupted"
        if final_loss is None:
            final_loss = last_loss
        return RunSummary(
            name=self.name,
            path=self.path,
            model=_model_name_from_config(self.config_path),
            status=status,
            step=step,
            total_steps=total,
            final_loss=final_loss,
            started=started,
            checkpoint=self.newest_checkpoint(),
        )


def _model_name_from_config(path: Path) -> str:
    import tomllib

    try:
        return str(tomllib.loads(path.read_text(encoding="utf-8")).get("model", {}).get("name", "?"))
    except (OSError, ValueError):
        return "?"


def list_runs(runs_dir: str | Path) -> list[RunSummary]:
    """Every run folder under runs_dir, newest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    # Hidden folders are skipped: a run being deleted is renamed to one (TRASH_PREFIX) before it is removed.
    runs = [RunDir(p).summary() for p in root.iterdir()
            if not p.name.startswith(".") and p.is_dir() and (p / EVENTS_FILE).exists()]
    return sorted(runs, key=lambda r: (r.started or r.path.stat().st_mtime), reverse=True)


def find_run(name: str | Path, runs_dir: str | Path) -> RunDir | None:
    """A run by folder path, or by name under `runs_dir`; None when neither holds a run."""
    for candidate in (Path(name), Path(runs_dir) / name):
        if (candidate / EVENTS_FILE).exists():
            return RunDir(candidate)
    return None


def is_run_record(path: str | Path) -> bool:
    """Whether `path` is a run's config.toml: the record of what the run was trained with, never rewritten."""
    path = Path(path)
    return path.name == CONFIG_FILE and (path.parent / EVENTS_FILE).exists()


def live_runs(runs_dir: str | Path) -> list[RunSummary]:
    return [r for r in list_runs(runs_dir) if r.status == "running"]


def free_bytes(path: str | Path) -> int:
    """Free space on the file system that holds `path` (WORKBENCH_FREE_BYTES overrides it, for tests of
    the disk-full path)."""
    override = settings.free_bytes_override()
    if override is not None:
        return override
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


# -- rename and delete ---------------------------------------------------------------------------------
# Both refuse a live run: its engine appends to events.jsonl and writes checkpoints by path, so a rename
# would make it fail mid-run and a delete would leave it writing into a folder that is gone. The check and
# the rename are not one atomic step (another engine could start on the run in between); the window is a
# few microseconds and needs a user starting a resume of this very run at the same moment.

def check_run_name(name: str) -> str | None:
    """Why `name` cannot name a run folder, or None. The characters new_run_name makes (letters, digits,
    `.`, `_`, `-`): safe in a path on every file system and in a shell, never hidden (a leading dot is
    how deletion hides a run)."""
    if not name:
        return "a run needs a name"
    if len(name) > RUN_NAME_MAX:
        return f"at most {RUN_NAME_MAX} characters (this is {len(name)})"
    if not RUN_NAME_RE.fullmatch(name):
        bad = sorted({ch for ch in name if not re.match(r"[A-Za-z0-9._-]", ch)})
        if bad:
            shown = " ".join(repr(ch) for ch in bad[:5])
            return f"only letters, digits, '.', '_' and '-' (not {shown})"
        return "it must start with a letter or a digit"
    return None


def _refuse_live(run: RunDir, doing: str) -> None:
    info = run.engine_info()
    if run.engine_alive():
        pid = info.get("pid") if info else "?"
        raise UserError("run_live", f"{run.name} is training (engine pid {pid}): it cannot be {doing} now.",
                        "Stop it first (Train pane, x), then try again.")


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or type(exc).__name__


def rename_run(run: RunDir, new_name: str) -> RunDir:
    """Rename a run's folder in place (same runs folder); the run under its new name. Raises UserError
    (bad_name, name_taken, run_live, not_found, os_error) with the reason; the run is then untouched."""
    reason = check_run_name(new_name)
    if reason:
        raise UserError("bad_name", f"{new_name!r} cannot name a run: {reason}.", "Choose another name.")
    if new_name == run.name:
        raise UserError("bad_name", f"{run.name} already has that name.", "Type a new name.")
    if not run.path.is_dir():
        raise UserError("not_found", f"{run.path}: no such run folder (deleted or renamed meanwhile).",
                        "Refresh the list (f5).")
    _refuse_live(run, "renamed")
    target = run.path.parent / new_name
    # os.rename silently replaces an empty folder at the target: look first. A target that is the same
    # folder (only the case differs, on a case-insensitive file system) is a rename, not a clash.
    if (target.exists() or target.is_symlink()) and not _same_file(target, run.path):
        raise UserError("name_taken", f"{new_name} is taken: {target} already exists.", "Choose another name.")
    try:
        os.rename(run.path, target)
    except OSError as exc:
        raise UserError("os_error", f"{run.name} could not be renamed to {new_name}: {_os_reason(exc)}.",
                        f"Check the permissions of {run.path.parent}.") from None
    return RunDir(target)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@dataclass(frozen=True)
class RunInventory:
    """What deleting a run loses (for the question that confirms it)."""

    name: str
    path: Path
    live_pid: int | None
    """The engine training it now, if any (a live run cannot be deleted)."""
    steps: int
    checkpoints: int
    has_adapter: bool
    exports: tuple[str, ...]
    """Folders saved from it that live inside it (export-lora, export-merged, ...)."""
    bytes: int
    files: int

    def describe(self) -> str:
        parts = [f"its loss history ({self.steps} steps logged)" if self.steps else "its event log", "its config"]
        if self.checkpoints:
            parts.append(f"{self.checkpoints} checkpoint{'s' * (self.checkpoints != 1)}")
        if self.has_adapter:
            parts.append("the final adapter")
        if self.exports:
            parts.append(f"{len(self.exports)} export{'s' * (len(self.exports) != 1)} saved inside it "
                         f"({', '.join(self.exports)})")
        return f"{', '.join(parts)}: {format_bytes(self.bytes)} in {self.files} files"


def format_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def run_inventory(run: RunDir) -> RunInventory:
    """What is in a run folder. Walks it (a merged 9B export is a few large files, so this is quick)."""
    total = files = 0
    for folder, _dirs, names in os.walk(run.path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
                files += 1
    info = run.engine_info()
    pid = info.get("pid") if info else None
    live = pid if isinstance(pid, int) and run.engine_alive() else None
    exports = tuple(sorted(p.name for p in run.path.glob("export-*") if p.is_dir())) if run.path.is_dir() else ()
    steps = sum(1 for ev in run.iter_events() if isinstance(ev, Log))
    return RunInventory(run.name, run.path, live, steps, len(run.checkpoints(complete_only=False)),
                        _is_adapter(run.adapter_dir), exports, total, files)


@dataclass(frozen=True)
class Deleted:
    name: str
    leftover: Path | None
    """Set when the folder was taken out of the runs list but some of its files could not be removed:
    the hidden folder that holds them."""
    reason: str = ""


def delete_run(run: RunDir) -> Deleted:
    """Delete a run folder, never half: it is first renamed aside to a hidden name (one atomic step: the
    run is then either whole and listed, or out of the list), then removed. A failure before the rename
    raises UserError and leaves the run as it was; a failure while removing reports the leftover folder."""
    if not run.path.is_dir():
        raise UserError("not_found", f"{run.path}: no such run folder (deleted or renamed meanwhile).",
                        "Refresh the list (f5).")
    _refuse_live(run, "deleted")
    aside = run.path.parent / f"{TRASH_PREFIX}{run.name}-{os.getpid()}-{time.time_ns()}"
    try:
        os.rename(run.path, aside)
    except OSError as exc:
        raise UserError("os_error", f"{run.name} could not be deleted: {_os_reason(exc)}.",
                        f"Nothing was removed. Check the permissions of {run.path.parent}.") from None
    try:
        shutil.rmtree(aside)
    except OSError as exc:
        return Deleted(run.name, aside, _os_reason(exc))
    return Deleted(run.name, None)


# -- weights ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WeightsSource:
    """Which weights an export holds, and the run they came from."""

    run: RunDir
    config: RunConfig
    adapter: Path
    """The run's adapter folder, or a checkpoint folder (both hold adapter_model.safetensors)."""
    step: int | None
    checkpoint: str | None
    """checkpoint-N, or None for the run's final adapter."""


def _is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").exists()


def resolve_weights(run: RunDir, checkpoint: int | None = None) -> WeightsSource:
    """The weights to export: a checkpoint when asked, else the final adapter, else the newest checkpoint."""
    if not run.path.is_dir():
        raise UserError("bad_run", f"{run.path}: no such run folder", "Name a folder under runs/ (workbench runs).")
    if not run.config_path.exists():
        raise UserError("bad_run", f"{run.path}: not a workbench run (it has no {run.config_path.name})",
                        "Name a folder that `workbench runs` lists.")
    try:
        config = load_config(run.config_path)
    except ConfigError as exc:
        raise UserError("bad_run", str(exc), "The run's config.toml was edited or damaged.") from None
    complete = dict(run.checkpoints())
    if checkpoint is not None:
        if checkpoint not in complete:
            have = ", ".join(str(s) for s in complete) or "none"
            raise UserError("bad_checkpoint", f"{run.name} has no complete checkpoint at step {checkpoint}",
                            f"Complete checkpoints: {have}.")
        return WeightsSource(run, config, complete[checkpoint], checkpoint, complete[checkpoint].name)
    if _is_adapter(run.adapter_dir):
        return WeightsSource(run, config, run.adapter_dir, run.summary().step or None, None)
    if complete:
        step = max(complete)
        return WeightsSource(run, config, complete[step], step, complete[step].name)
    raise UserError("bad_run", f"{run.name} has no adapter and no complete checkpoint yet",
                    "Train it (or resume it) until a checkpoint is saved.")
