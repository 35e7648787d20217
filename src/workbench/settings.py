"""Every environment variable the workbench reads, in one place (the README's table lists the same).

Read when asked, not at import: tests and the engine's launcher set them after Python starts.
"""

from __future__ import annotations

import os
from pathlib import Path

# name -> what it does (the README's "Environment" table is checked against this by a test)
VARIABLES: dict[str, str] = {
    "WORKBENCH_CACHE": "where the tiny demo model and unsloth's compiled kernels go (default ~/.cache/workbench)",
    "WORKBENCH_ENGINE_THREADS": "CPU threads of the engine (default: all but one core when training on a CPU)",
    "WORKBENCH_ENGINE_SOCKET": "set by the engine for the ranks it starts: its socket, which rank 0 names for `workbench attach`",
    "WORKBENCH_DEBUG": "show Python tracebacks from CLI commands instead of one-line messages",
    "WORKBENCH_FREE_BYTES": "pretend this many bytes are free on disk (tests of the disk-full path)",
    "WORKBENCH_INJECT_NAN_AT_STEP": "make the loss NaN at this optimizer step (tests of the NaN path)",
    "WORKBENCH_INJECT_OOM_AT_STEP": "raise CUDA out-of-memory at this step while the micro-batch is above 1 (tests)",
    "LLAMA_CPP_DIR": "a llama.cpp checkout whose convert_hf_to_gguf.py makes GGUF files (default: the one `workbench gguf-setup` unpacked)",
    "TEXTUAL_ANIMATIONS": "basic or full turns the UI's animations on (off by default: bytes over SSH)",
    "HF_HUB_OFFLINE": "1: never reach the Hugging Face hub (models and datasets must be on disk)",
}


def _get(name: str) -> str:
    assert name in VARIABLES, name  # every variable read is listed above
    return os.environ.get(name, "").strip()


def cache_root() -> Path:
    explicit = _get("WORKBENCH_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "workbench"


def engine_threads() -> str:
    return _get("WORKBENCH_ENGINE_THREADS")


def engine_socket() -> str | None:
    """The socket of the engine that started this rank (None: started from a terminal)."""
    return _get("WORKBENCH_ENGINE_SOCKET") or None


def debug() -> bool:
    return bool(_get("WORKBENCH_DEBUG"))


def free_bytes_override() -> int | None:
    value = _get("WORKBENCH_FREE_BYTES")
    return int(value) if value else None


def injected_step(name: str) -> int:
    """The step of a fault-injection variable (0: none)."""
    try:
        return int(_get(name) or "0")
    except ValueError:
        return 0


def llama_cpp_dir() -> str:
    return _get("LLAMA_CPP_DIR")


def animations_requested() -> bool:
    return "TEXTUAL_ANIMATIONS" in os.environ


def hub_offline() -> bool:
    return _get("HF_HUB_OFFLINE").lower() in ("1", "true", "yes")
