"""Prepare the process that trains: environment first, then unsloth before trl / transformers / peft.

unsloth patches those libraries when it is imported, so it must come first. It also writes compiled
kernels to `unsloth_compiled_cache/` in the working directory unless told otherwise: we point it at
the workbench cache, so users' folders stay clean.
"""

from __future__ import annotations

import logging
import os
import warnings

from workbench import settings
from workbench.engine.tiny import cache_root

_booted = False


def prepare_environment() -> None:
    os.environ.setdefault("UNSLOTH_COMPILE_LOCATION", str(cache_root() / "unsloth_compiled_cache"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


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


def boot() -> None:
    """Import unsloth (once) with the environment set; call before importing trl or transformers."""
    global _booted
    if _booted:
        return
    prepare_environment()
    (cache_root()).mkdir(parents=True, exist_ok=True)
    import unsloth  # noqa: F401  (import for its patches)

    _booted = True
