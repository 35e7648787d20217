"""Save the tuned model: LoRA adapter (default), merged 16-bit, or GGUF (llama.cpp).

Every save is written into a temporary folder beside the target and renamed into place only when
complete, so a crash or a full disk never leaves a half-written model that looks finished. Each save
carries the run's config, the data fingerprint and the chat template it was trained with.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workbench.config import RunConfig, save_config
from workbench.engine.errors import UserError
from workbench.engine.model import Loaded
from workbench.exports import llama_cpp_dir, unavailable_reason
from workbench.templates import TEMPLATE_TITLES, chat_template_jinja


def _write_metadata(folder: Path, config: RunConfig, fingerprint: str, kind: str) -> None:
    save_config(config, folder / "workbench-config.toml")
    jinja = chat_template_jinja(config.data.template, config.data.instruction)  # the run's instruction baked in
    (folder / "chat_template.jinja").write_text(jinja, encoding="utf-8")
    meta = {
        "kind": kind,
        "base_model": config.model.name,
        "template": config.data.template,
        "template_title": TEMPLATE_TITLES[config.data.template],
        "instruction": config.data.instruction,
        "data_source": config.data.source,
        "data_fingerprint_sha256": fingerprint,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (folder / "workbench.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")


def _commit(staging: Path, target: Path, overwrite: bool) -> Path:
    if target.exists():
        if not overwrite:
            raise UserError("exists", f"{target} already exists", "Confirm overwriting, or choose another path.")
        old = target.with_name(f".{target.name}.old-{int(time.time())}")
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(target)
    return target


def _staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not overwrite:
        raise UserError("exists", f"{target} already exists", "Confirm overwriting, or choose another path.")


def save_adapter(loaded: Loaded, config: RunConfig, target: Path, fingerprint: str, overwrite: bool = False) -> Path:
    target = Path(target)
    _check_target(target, overwrite)
    staging = _staging(target)
    try:
        loaded.model.save_pretrained(str(staging), safe_serialization=True)
        loaded.tokenizer.save_pretrained(str(staging))
        _write_metadata(staging, config, fingerprint, "lora")
        return _commit(staging, target, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_merged(loaded: Loaded, config: RunConfig, target: Path, fingerprint: str, overwrite: bool = False) -> Path:
    target = Path(target)
    _check_target(target, overwrite)
    staging = _staging(target)
    try:
        model = loaded.model
        if hasattr(model, "save_pretrained_merged"):
            model.save_pretrained_merged(str(staging), loaded.tokenizer, save_method="merged_16bit")
        else:  # plain peft model: merge a copy's weights
            merged = model.merge_and_unload()
            merged.save_pretrained(str(staging), safe_serialization=True)
            loaded.tokenizer.save_pretrained(str(staging))
        _write_metadata(staging, config, fingerprint, "merged_16bit")
        return _commit(staging, target, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_gguf(loaded: Loaded, config: RunConfig, target: Path, fingerprint: str, overwrite: bool = False) -> Path:
    reason = unavailable_reason("gguf")
    if reason:
        raise UserError("gguf_unavailable", reason, "Save the LoRA adapter or the merged model instead.")
    llama = llama_cpp_dir()
    assert llama is not None
    target = Path(target)
    _check_target(target, overwrite)
    staging = _staging(target)
    try:
        merged_dir = staging / "merged"
        save_merged(loaded, config, merged_dir, fingerprint)
        out = staging / f"{target.name}.q8_0.gguf"
        proc = subprocess.run(
            [sys.executable, str(llama / "convert_hf_to_gguf.py"), str(merged_dir), "--outfile", str(out),
             "--outtype", "q8_0"],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError("gguf_failed", f"llama.cpp's converter failed: {tail[0]}", "See the engine log.")
        shutil.rmtree(merged_dir)
        _write_metadata(staging, config, fingerprint, "gguf")
        return _commit(staging, target, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


SAVERS: dict[str, Any] = {"lora": save_adapter, "merged_16bit": save_merged, "gguf": save_gguf}
