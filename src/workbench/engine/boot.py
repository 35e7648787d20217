"""Prepare the process that trains: environment first, then unsloth before trl / transformers / peft.

unsloth patches those libraries when it is imported, so it must come first. It also writes compiled
kernels to `unsloth_compiled_cache/` in the working directory unless told otherwise: we point it at
the workbench cache, so users' folders stay clean.
"""

from __future__ import annotations

import os
import warnings

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


def boot() -> None:
    """Import unsloth (once) with the environment set; call before importing trl or transformers."""
    global _booted
    if _booted:
        return
    prepare_environment()
    (cache_root()).mkdir(parents=True, exist_ok=True)
    import unsloth  # noqa: F401  (import for its patches)

    _booted = True
