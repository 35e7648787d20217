"""What the Save pane and `workbench export` can produce, and why an option is unavailable here.

No ML import: the TUI reads this to draw its choices (whether llama-cpp-python is installed is asked of
importlib without importing it). The saving itself is `workbench.engine.export`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal, get_args

from workbench import settings

SaveKind = Literal["lora", "merged_16bit", "gguf_f16", "gguf_q8_0", "gguf_q4_k_m"]
SAVE_KINDS: tuple[SaveKind, ...] = get_args(SaveKind)
SAVE_TITLES: dict[SaveKind, str] = {
    "lora": "LoRA adapter (small; loads on top of the base model)",
    "merged_16bit": "Merged 16-bit model (base + adapter, for vLLM / transformers)",
    "gguf_f16": "GGUF f16 (llama.cpp, Ollama; exact)",
    "gguf_q8_0": "GGUF q8_0 (llama.cpp, Ollama; half the size of f16)",
    "gguf_q4_k_m": "GGUF Q4_K_M (llama.cpp, Ollama; a quarter, for small machines)",
}
KIND_ALIASES: dict[str, SaveKind] = {"gguf": "gguf_q8_0", "merged": "merged_16bit", "adapter": "lora"}
"""Names `workbench export --as` also takes."""
GGUF_KINDS: tuple[SaveKind, ...] = ("gguf_f16", "gguf_q8_0", "gguf_q4_k_m")
GGUF_SETUP_STEP = 'pip install -e ".[gguf]" (builds llama-cpp-python, ~15 min on 2 cores), then `workbench gguf-setup`'


def resolve_kind(name: str) -> SaveKind | None:
    """A kind by its name or alias; None when there is none."""
    if name in SAVE_KINDS:
        return name
    return KIND_ALIASES.get(name)


def converter_home() -> Path:
    """Where `workbench gguf-setup` puts llama.cpp's converter (from llama-cpp-python's source)."""
    return settings.cache_root() / "llama.cpp"


def llama_cpp_dir() -> Path | None:
    """Where llama.cpp's converter lives: $LLAMA_CPP_DIR, the one `workbench gguf-setup` unpacked, ~/llama.cpp
    or ./llama.cpp."""
    for candidate in (settings.llama_cpp_dir(), str(converter_home()), "~/llama.cpp", "llama.cpp"):
        if candidate:
            path = Path(candidate).expanduser()
            if (path / "convert_hf_to_gguf.py").exists() and (path / "gguf-py").is_dir():
                return path
    return None


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def unavailable_reason(kind: str) -> str | None:
    """Why `kind` cannot be saved on this machine, or None when it can."""
    if kind not in SAVE_KINDS:
        return f"unknown save kind {kind!r} (known: {', '.join(SAVE_KINDS)})"
    if kind in GGUF_KINDS:
        missing = [what for what, there in (("llama-cpp-python", llama_cpp_installed()),
                                            ("llama.cpp's converter", llama_cpp_dir() is not None)) if not there]
        if missing:
            return f"GGUF is not set up here ({' and '.join(missing)} missing): {GGUF_SETUP_STEP}"
    return None
