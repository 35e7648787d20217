"""GGUF files for llama.cpp and Ollama: made from a merged 16-bit export with llama.cpp's own converter,
quantized with llama-cpp-python, read back (metadata) and run (the proof) the way their users will.

The converter and its `gguf-py` come from `workbench gguf-setup` (`save_kinds.llama_cpp_dir`); llama-cpp-python
from the `[gguf]` extra. Both are imported only here, in the engine.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import UserError
from workbench.fingerprint import SPECIAL_ROLES, TURN_TOKENS, TemplateFingerprint
from workbench.save_kinds import SaveKind

FILE_TYPES: dict[SaveKind, str] = {"gguf_f16": "f16", "gguf_q8_0": "q8_0", "gguf_q4_k_m": "Q4_K_M"}
QUANTIZE_FTYPES: dict[SaveKind, int] = {"gguf_q8_0": 7, "gguf_q4_k_m": 15}
"""llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0 and LLAMA_FTYPE_MOSTLY_Q4_K_M."""
CONVERT_SCRIPT = Path(__file__).with_name("gguf_convert.py")
GGUF_ROLE_KEYS = {"bos": "bos_token_id", "eos": "eos_token_id", "pad": "padding_token_id", "unk": "unknown_token_id"}


def gguf_file_name(run_name: str, kind: SaveKind) -> str:
    return f"{run_name}.{FILE_TYPES[kind]}.gguf"


def check_llama_cpp_can_run(merged: Path) -> None:
    """Refuse a model llama.cpp would compute differently. Its Gemma-2 scales attention by 1/sqrt(head_dim)
    (by 1/sqrt(hidden / heads) for the 27B) and reads no query_pre_attn_scalar: a Gemma-2 whose scalar is
    something else would convert without an error and answer otherwise."""
    import json

    config = json.loads((merged / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "gemma2":
        return
    head_dim, layers = config.get("head_dim"), config.get("num_hidden_layers")
    expected = config["hidden_size"] // config["num_attention_heads"] if layers == 46 else head_dim
    scalar = config.get("query_pre_attn_scalar", head_dim)
    if scalar != expected:
        raise UserError("gguf_unsupported", f"llama.cpp's Gemma-2 scales attention by 1/sqrt({expected}) but this "
                        f"model by 1/sqrt({scalar}) (query_pre_attn_scalar): its GGUF would answer differently",
                        "Nothing was written. Export the merged 16-bit model or the adapter instead.")


def convert(merged: Path, out: Path, llama_dir: Path) -> None:
    """The merged model as an f16 GGUF, by llama.cpp's converter (in a child process: it imports its own
    `gguf` package, which must not meet another one in the engine)."""
    proc = subprocess.run([sys.executable, str(CONVERT_SCRIPT), str(llama_dir), str(merged), "--outfile", str(out),
                           "--outtype", "f16"], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out.exists():
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        tail = next((line for line in reversed(lines) if line.strip()), "no output")
        raise UserError("gguf_failed", f"llama.cpp's converter failed: {tail}", "Nothing was written; see the engine log.")


def quantize(f16: Path, out: Path, kind: SaveKind) -> None:
    """q8_0 or Q4_K_M from the f16 file, with llama-cpp-python (no llama-quantize binary needed)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTIZE_FTYPES[kind]
    params.nthread = max(1, (os.cpu_count() or 2) - 1)
    status = llama_cpp.llama_model_quantize(str(f16).encode(), str(out).encode(), params)
    if status != 0 or not out.exists():
        raise UserError("gguf_failed", f"quantizing to {FILE_TYPES[kind]} failed (llama.cpp status {status})",
                        "Nothing was written; see the engine log.")


# -- reading a GGUF back ------------------------------------------------------------------------------------

@dataclass
class GgufMetadata:
    architecture: str
    file_type: int | None
    chat_template: str
    tokens: list[str]
    special_ids: dict[str, int | None]


@contextlib.contextmanager
def _gguf_py(llama_dir: Path) -> Iterator[Any]:
    """llama.cpp's own gguf-py (the version its converter wrote with), for this block only."""
    path = str(llama_dir / "gguf-py")
    sys.path.insert(0, path)
    try:
        import gguf

        yield gguf
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(path)


def read_metadata(path: Path, llama_dir: Path) -> GgufMetadata:
    with _gguf_py(llama_dir) as gguf:
        reader = gguf.GGUFReader(str(path))

        def value(key: str) -> Any:
            found = reader.get_field(key)
            return None if found is None else found.contents()

        tokens = value("tokenizer.ggml.tokens") or []
        ids: dict[str, int | None] = {}
        for role in SPECIAL_ROLES:
            raw = value(f"tokenizer.ggml.{GGUF_ROLE_KEYS[role]}")
            ids[role] = int(raw) if raw is not None else None
        index = {token: i for i, token in enumerate(tokens)}
        for token in TURN_TOKENS:
            ids[token] = index.get(token)
        return GgufMetadata(architecture=str(value("general.architecture") or ""), file_type=value("general.file_type"),
                            chat_template=str(value("tokenizer.chat_template") or ""), tokens=list(tokens),
                            special_ids=ids)


def gguf_fingerprint(meta: GgufMetadata, tokenizer: Any) -> TemplateFingerprint:
    """The GGUF file's own fingerprint: its token list, special ids and chat template (the template's probe
    rendered with `tokenizer`, which only supplies the renderer)."""
    vocab = {token: i for i, token in enumerate(meta.tokens)}
    return TemplateFingerprint.from_parts(meta.special_ids, vocab, meta.chat_template, tokenizer)


def check_metadata(meta: GgufMetadata, recorded: TemplateFingerprint | None, tokenizer: Any) -> TemplateFingerprint:
    """Refuse a GGUF whose tokens, special ids or template differ from the run's, saying what differs."""
    mine = gguf_fingerprint(meta, tokenizer)
    if recorded is not None:
        found = recorded.differences(mine, "the run", "the GGUF file")
        if found:
            raise UserError("export_mismatch", "the GGUF file does not prompt the model as it was trained: "
                            + "; ".join(found), "Nothing was written; see the engine log.")
    return mine


# -- running it ------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _without_extra_buffers() -> Iterator[None]:
    """Models loaded in this block do not use llama.cpp's extra buffer types (weight repacking): on CPUs with
    AMX, q8_0 / Q4_K matmuls crash in `ggml_backend_amx_mul_mat` otherwise. `Llama` takes no argument for
    it, so the default model parameters it starts from are changed for the moment it loads."""
    import llama_cpp.llama_cpp as low_level

    original = low_level.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    low_level.llama_model_default_params = defaults
    try:
        yield
    finally:
        low_level.llama_model_default_params = original


def next_token_choices(path: Path, prompt_ids: list[int], expected: list[int]) -> list[int]:
    """llama.cpp's greedy choice at each position of prompt + expected (teacher-forced): what the GGUF model
    says next where the workbench's model said `expected`."""
    import numpy as np
    from llama_cpp import Llama

    ids = prompt_ids + expected
    with _without_extra_buffers():
        llm = Llama(model_path=str(path), n_ctx=max(64, len(ids) + 8), n_batch=len(ids) + 8, logits_all=True,
                    verbose=False, n_threads=max(1, (os.cpu_count() or 2) - 1))
    try:
        llm.eval(ids)
        scores = np.asarray(llm.scores[: len(ids)])
        choices = scores[len(prompt_ids) - 1 : len(ids) - 1].argmax(axis=-1)
        return [int(c) for c in choices]
    finally:
        llm.close()
