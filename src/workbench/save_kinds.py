"""What the Save pane and `workbench export` can produce, and why an option is unavailable here.

No ML import: the TUI reads this to draw its choices. The saving itself is `workbench.engine.export`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from workbench import settings

SaveKind = Literal["lora", "merged_16bit", "gguf"]
SAVE_KINDS: tuple[SaveKind, ...] = get_args(SaveKind)
SAVE_TITLES: dict[SaveKind, str] = {
    "lora": "LoRA adapter (small; loads on top of the base model)",
    "merged_16bit": "Merged 16-bit model (base + adapter, for vLLM / transformers)",
    "gguf": "GGUF (llama.cpp, Ollama; q8_0)",
}


def llama_cpp_dir() -> Path | None:
    """Where llama.cpp's converter lives: $LLAMA_CPP_DIR, ~/llama.cpp or ./llama.cpp."""
    for candidate in (settings.llama_cpp_dir(), "~/llama.cpp", "llama.cpp"):
        if candidate:
            path = Path(candidate).expanduser()
            if (path / "convert_hf_to_gguf.py").exists():
                return path
    return None


def unavailable_reason(kind: str) -> str | None:
    """Why `kind` cannot be saved on this machine, or None when it can."""
    if kind not in SAVE_KINDS:
        return f"unknown save kind {kind!r} (known: {', '.join(SAVE_KINDS)})"
    if kind == "gguf" and llama_cpp_dir() is None:
        return (
            "GGUF needs llama.cpp: clone it and set LLAMA_CPP_DIR to its folder "
            "(convert_hf_to_gguf.py was not found in $LLAMA_CPP_DIR, ~/llama.cpp or ./llama.cpp)"
        )
    return None
