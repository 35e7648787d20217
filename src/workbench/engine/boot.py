"""Prepare the process that trains: environment first, then unsloth before trl / transformers / peft.

unsloth patches those libraries when it is imported, so it must come first. It also writes compiled
kernels to `unsloth_compiled_cache/` in the working directory unless told otherwise: we point it at
the workbench cache, so users' folders stay clean.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import warnings
from urllib.parse import urlparse

from workbench import settings
from workbench.engine.tiny import cache_root

_booted = False
HUB_PROBE_TIMEOUT_S = 3.0


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hugging Face hub (or $HF_ENDPOINT) opens within `timeout_s`.

    In a thread, because name resolution has no timeout of its own and can hang on a machine whose DNS
    answers nothing."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    reached = threading.Event()

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                reached.set()
        except OSError:
            pass

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return reached.is_set()


def choose_offline() -> str | None:
    """Work offline when the hub cannot be reached and the user said nothing (HF_HUB_OFFLINE unset).

    Without this, every model or dataset not in the cache was retried against an unreachable hub for
    about 70 s before the user saw "not found" (measured here, with no network). Returns a note for the
    user when it turned offline mode on."""
    if "HF_HUB_OFFLINE" in os.environ or hub_reachable():
        return None
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    return ("The Hugging Face hub cannot be reached: working offline (models and datasets must already be in "
            "the cache). Set HF_HUB_OFFLINE=0 to try the hub anyway.")


def prepare_environment() -> str | None:
    """Environment for the ML libraries, before they are imported. Returns a note for the user, if any."""
    os.environ.setdefault("UNSLOTH_COMPILE_LOCATION", str(cache_root() / "unsloth_compiled_cache"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    return choose_offline()  # before huggingface_hub is imported: it reads HF_HUB_OFFLINE once


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as a container or taskset sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def limit_cpu_threads() -> int | None:
    """Training on CPU: leave one core to the UI. Returns the thread count set, or None if left alone.

    torch uses one thread per core by default. With the UI running on the same cores, its OpenMP threads
    wait for each other at every barrier whenever one is preempted: measured on 2 cores, the engine fell
    from 3.9 to 0.8-2.2 steps/s while the UI was used, and kept 3.4 steps/s with 1 thread. On a GPU the
    CPU threads hardly matter, so they are left alone. WORKBENCH_ENGINE_THREADS sets the count (on any
    device); a user's own OMP_NUM_THREADS is respected (torch already follows it).
    """
    import torch

    explicit = settings.engine_threads()
    if explicit:
        try:
            threads = max(1, int(explicit))
        except ValueError:
            logging.getLogger(__name__).warning("WORKBENCH_ENGINE_THREADS=%r is not a number; ignored", explicit)
        else:
            torch.set_num_threads(threads)
            return threads
    if os.environ.get("OMP_NUM_THREADS", "").strip() or torch.cuda.is_available():
        return None
    threads = max(1, usable_cpus() - 1)
    torch.set_num_threads(threads)
    return threads


def boot() -> str | None:
    """Import unsloth (once) with the environment set; call before importing trl or transformers.
    Returns prepare_environment's note for the user (on the first call)."""
    global _booted
    if _booted:
        return None
    note = prepare_environment()
    (cache_root()).mkdir(parents=True, exist_ok=True)
    import unsloth  # noqa: F401  (import for its patches)

    _booted = True
    return note
