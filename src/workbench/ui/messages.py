"""Textual messages. Two kinds:

- from worker threads to the UI thread: engine events and GPU samples;
- from panes up to the App (attributes go down, messages go up): a pane says what happened, and the App,
  which owns the run configuration, the active run and the engine connection, decides what follows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

from workbench.config import RunConfig
from workbench.protocol import Done, Event

if TYPE_CHECKING:
    from workbench.gpu import Reading  # off the start-up path: the gauges are built after the first frame


class EngineEvent(Message):
    """One event from the engine (posted from the client's reader thread; never dropped)."""

    def __init__(self, event: Event, generation: int = 0) -> None:
        super().__init__()
        self.event = event
        self.generation = generation
        """Which engine sent it: events of an engine that was replaced are ignored."""


class GpuSample(Message):
    """One reading of every GPU (or, without one, of the host's CPU and RAM). Coalesced: a newer sample
    replaces an unhandled older one."""

    def __init__(self, reading: Reading) -> None:
        super().__init__()
        self.reading = reading

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpuSample)


# -- up from the panes ---------------------------------------------------------------------------------

class ConfigEdited(Message):
    """The user changed the run configuration (a field in the Config or the Data pane)."""

    def __init__(self, config: RunConfig, data_affecting: bool) -> None:
        super().__init__()
        self.config = config
        self.data_affecting = data_affecting
        """The Data pane must render again (source, columns, template, tokenizer, length)."""


class ConfigFileLoaded(Message):
    def __init__(self, path: Path, config: RunConfig) -> None:
        super().__init__()
        self.path = path
        self.config = config


class ConfigFileSaved(Message):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path


class ConfigValidity(Message):
    """Which form fields hold a value that does not validate (the config keeps their last good value)."""

    def __init__(self, invalid: tuple[str, ...]) -> None:
        super().__init__()
        self.invalid = invalid


class RunStarted(Message):
    """The engine started (or resumed) a run: it becomes the active run."""

    def __init__(self, run_dir: str) -> None:
        super().__init__()
        self.run_dir = run_dir


class TrainingFinished(Message):
    """A run ended (completed, stopped or failed), live or in a replayed history."""

    def __init__(self, done: Done, replayed: bool) -> None:
        super().__init__()
        self.done = done
        self.replayed = replayed


class OpenRun(Message):
    """The user picked a past run: make it the active run, with its own config."""

    def __init__(self, run_dir: str) -> None:
        super().__init__()
        self.run_dir = run_dir


class RunsChanged(Message):
    """A run was deleted or renamed on disk: whatever pointed at it (the active run, the compared run, the
    config path) follows the rename or lets go of a deleted run."""

    def __init__(self, renamed: tuple[str, str] | None = None, deleted: str | None = None) -> None:
        super().__init__()
        self.renamed = renamed
        """(old folder, new folder)."""
        self.deleted = deleted
        """The folder that is gone."""


class CompareRun(Message):
    """The user marked a run to overlay on the active run's loss curve (None: no overlay)."""

    def __init__(self, run_dir: str | None) -> None:
        super().__init__()
        self.run_dir = run_dir
