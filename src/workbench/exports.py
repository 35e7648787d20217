"""What can be saved, and why an option is unavailable, without importing the ML stack (for the UI)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SAVE_KINDS = ("lora", "merged_16bit", "gguf")
SAVE_TITLES = {
    "lora": "LoRA adapter (small; loads on top of the base model)",
    "merged_16bit": "Merged 16-bit model (base + adapter, for vLLM / transformers)",
    "gguf": "GGUF (llama.cpp, Ollama; q8_0)",
}


def llama_cpp_dir() -> Path | None:
    """Where llama.cpp's converter lives: $LLAMA_CPP_DIR, ~/llama.cpp or ./llama.cpp."""
    for candidate in (os.environ.get("LLAMA_CPP_DIR"), "~/llama.cpp", "llama.cpp"):
        if candidate:
            path = Path(candidate).expanduser()
            if (path / "convert_hf_to_gguf.py").exists():
                return path
    return None


def gguf_unavailable_reason() -> str | None:
    if llama_cpp_dir() is None:
        return (
            "GGUF needs llama.cpp: clone it and set LLAMA_CPP_DIR to its folder "
            "(convert_hf_to_gguf.py was not found in $LLAMA_CPP_DIR, ~/llama.cpp or ./llama.cpp)"
        )
    return None


def unavailable_reason(kind: str) -> str | None:
    if kind == "gguf":
        return gguf_unavailable_reason()
    if kind not in SAVE_KINDS:
        return f"unknown save kind {kind!r} (known: {', '.join(SAVE_KINDS)})"
    return None


def python_for_llama_cpp() -> str:
    return shutil.which("python3") or "python3"
