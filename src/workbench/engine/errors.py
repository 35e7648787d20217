"""Turn exceptions from the ML stack into messages a user can act on (type, message, hint).

The engine never lets a traceback reach the UI: every failure of a command becomes an `Error` event
built here, and the full traceback goes to the engine's log file for whoever debugs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workbench import settings
from workbench.errors import UserError


@dataclass(frozen=True)
class Explained:
    type: str
    message: str
    hint: str


def _gpu_memory() -> str:
    import torch

    if not torch.cuda.is_available():
        return ""
    total = torch.cuda.get_device_properties(0).total_memory / 1024**3
    peak = torch.cuda.max_memory_reserved() / 1024**3
    return f"; peak reserved {peak:.1f} of {total:.1f} GiB"


def explain(
    exc: BaseException, *, model_name: str = "", batch: int | None = None, accum: int | None = None,
    seq: int | None = None,
) -> Explained:
    from workbench.config import ConfigError
    from workbench.data import DataError

    if isinstance(exc, UserError):
        return Explained(exc.type, exc.message, exc.hint)
    if isinstance(exc, ConfigError):
        return Explained("config", str(exc), "Fix the field in the Config pane or the TOML file.")
    if isinstance(exc, DataError):
        return Explained("data", str(exc), "Check the data source and column names in the Config pane.")
    name = type(exc).__name__
    text = str(exc)
    if name == "OutOfMemoryError" or "CUDA out of memory" in text:
        size = f" at micro-batch {batch}" if batch else ""
        if batch and accum:
            size += f" x accumulation {accum}"
        if seq:
            size += f", max_seq_length {seq}"
        size += _gpu_memory()
        # torch's message runs to a paragraph about allocator settings; what the user needs is the size.
        asked = re.search(r"Tried to allocate ([\d.]+ [KMGT]i?B)", text)
        first = (f"CUDA out of memory (tried to allocate {asked.group(1)})" if asked
                 else text.splitlines()[0].split(". ")[0] if text else "CUDA out of memory")
        return Explained(
            "oom",
            f"The GPU ran out of memory{size}: {first}",
            "Lower per_device_train_batch_size (raise gradient_accumulation_steps to keep the effective "
            "batch), lower max_seq_length, keep load_in_4bit on and gradient_checkpointing 'unsloth', or turn "
            "on auto_retry_oom.",
        )
    if name in ("GatedRepoError",) or "gated" in text.lower():
        return Explained(
            "gated",
            f"{model_name or 'The model'} is gated: its terms must be accepted on the Hugging Face hub.",
            "Accept the terms on the model's hub page, then log in (huggingface-cli login) or set HF_TOKEN.",
        )
    if name in ("RepositoryNotFoundError", "LocalEntryNotFoundError") or (
        isinstance(exc, OSError)
        and ("is not a local folder" in text or "not a valid model identifier" in text or "offline" in text.lower()
             or "couldn't connect" in text.lower() or "cannot find the requested files" in text.lower())
    ):
        if settings.hub_offline() or "offline" in text.lower() or "connect" in text.lower() or name == "LocalEntryNotFoundError":
            return Explained(
                "offline",
                f"{model_name or 'The model'} is not on this machine and the Hugging Face hub cannot be "
                "reached (offline).",
                "Download it on a machine with network access (huggingface-cli download), copy the cache here, "
                "or set model.name to a local folder.",
            )
        return Explained(
            "model_not_found",
            f"{model_name or 'The model'} is neither a local folder nor a model id on the Hugging Face hub.",
            "Check the spelling of model.name (e.g. unsloth/gemma-2-9b), or log in if the repository is private.",
        )
    if isinstance(exc, OSError) and exc.errno == 28:
        return Explained("disk_full", f"The disk is full: {text}", "Free disk space or choose another runs_dir.")
    if isinstance(exc, PermissionError):
        return Explained("permission", f"Permission denied: {text}", "Choose a folder you can write to.")
    if "bitsandbytes" in text.lower() and ("cuda" in text.lower() or "gpu" in text.lower()):
        return Explained(
            "no_gpu_4bit",
            "4-bit loading needs an NVIDIA GPU with bitsandbytes.",
            "Turn off model.load_in_4bit on a machine without a GPU.",
        )
    lowered = text.lower()
    if "connection closed by peer" in lowered or "connection reset by peer" in lowered or (
            "nccl" in lowered and ("remote process exited" in lowered or "unhandled system error" in lowered)):
        return Explained("rank", "Another rank of this run stopped (killed, crashed or out of memory), so this "
                         "one could not go on.", "The newest complete checkpoint is kept: resume continues from "
                         "it. Each rank's output is in the run's ranks/ folder.")
    if "watchdog caught collective operation timeout" in lowered or ("nccl" in lowered and "timeout" in lowered):
        return Explained("rank", "The GPUs stopped hearing from each other (an NCCL timeout): one rank hung or "
                         "fell far behind.", "The newest complete checkpoint is kept. Check each rank's output in "
                         "the run's ranks/ folder, and uneven free memory across the GPUs (`workbench gpus`).")
    first = text.strip().splitlines()[0] if text.strip() else name
    return Explained("internal", f"{name}: {first}", "The engine log has the details (Train pane: log lines).")
