"""Load the base model and tokenizer with unsloth, and attach or load LoRA adapters.

This module is only imported inside the engine process (or the headless `workbench train`), after
`workbench.engine.boot` has imported unsloth, which must come before trl / transformers / peft.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench import fingerprint
from workbench.config import RunConfig
from workbench.engine.tiny import resolve_model_name
from workbench.errors import UserError
from workbench.fingerprint import TemplateFingerprint
from workbench.templates import chat_template_jinja


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    key: tuple[Any, ...]
    """What was loaded (name, seq length, 4-bit, dtype): a load with the same key reuses the model."""
    device: str
    has_lora: bool = False
    adapter_path: str | None = None
    """The adapter folder on disk that the LoRA weights in memory equal (a run's adapter or checkpoint);
    None for the base model, or for weights not saved (yet)."""


def model_key(config: RunConfig) -> tuple[Any, ...]:
    m = config.model
    return (m.name, m.max_seq_length, m.load_in_4bit, m.dtype, m.trust_remote_code)


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:0 ({torch.cuda.get_device_name(0)})"
    return "cpu"


def _dtype(name: str) -> Any:
    import torch

    return {"auto": None, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def load_tokenizer(config: RunConfig, status: Callable[[str], None] | None = None) -> Any:
    """The tokenizer alone (fast; for previews and statistics before the model is loaded). `status` hears
    the tiny model's build, when this call triggers it."""
    from transformers import AutoTokenizer

    name = resolve_model_name(config.model.name, status)
    return AutoTokenizer.from_pretrained(name, trust_remote_code=config.model.trust_remote_code)


def cpu_4bit_supported() -> bool:
    """Whether QLoRA's 4-bit weights work without a GPU here: unsloth's CPU loader quantizes with bitsandbytes'
    CPU backend where that runs (an x86 CPU with the instructions it needs)."""
    try:
        from unsloth_zoo.cpu import cpu_bnb_4bit_supported
    except ImportError:  # an unsloth without the CPU backend
        return False
    return bool(cpu_bnb_4bit_supported())


def load_base(config: RunConfig, status: Callable[[str], None]) -> Loaded:
    import torch
    from unsloth import FastLanguageModel

    name = resolve_model_name(config.model.name, status)
    load_in_4bit = config.model.load_in_4bit
    if load_in_4bit and not torch.cuda.is_available() and not cpu_4bit_supported():
        status("No NVIDIA GPU, and bitsandbytes' CPU backend cannot run 4-bit on this CPU: loading without "
               "4-bit quantization.")
        load_in_4bit = False
    status(f"Loading {config.model.name} ({'4-bit' if load_in_4bit else 'full precision'})…")
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=name,
        max_seq_length=config.model.max_seq_length,
        load_in_4bit=load_in_4bit,
        dtype=_dtype(config.model.dtype),
        trust_remote_code=config.model.trust_remote_code,
    )
    return Loaded(model=model, tokenizer=tokenizer, key=model_key(config), device=device_description())


def add_lora(loaded: Loaded, config: RunConfig) -> None:
    from unsloth import FastLanguageModel

    if loaded.has_lora:
        return
    loaded.model = FastLanguageModel.get_peft_model(loaded.model, **config.lora_kwargs())
    loaded.has_lora = True


def load_adapter(loaded: Loaded, adapter_path: str) -> None:
    """Put a saved adapter (safetensors only) on the loaded base model, for chat."""
    from peft import PeftModel

    if loaded.has_lora:
        raise RuntimeError("the model already carries an adapter; reload the base model first")
    loaded.model = PeftModel.from_pretrained(loaded.model, adapter_path, is_trainable=False, use_safetensors=True)
    loaded.has_lora = True
    loaded.adapter_path = adapter_path


def release_memory() -> None:
    """Give freed tensors back (after dropping a model): Python's cycles first, then CUDA's cache."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def count_parameters(model: Any) -> tuple[int, int]:
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        # bitsandbytes packs two 4-bit values per byte: count the logical parameters.
        if getattr(p, "quant_state", None) is not None or type(p).__name__ == "Params4bit":
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def run_fingerprint(tokenizer: Any, config: RunConfig) -> TemplateFingerprint:
    """What a run's model reads: its tokenizer with the template it is trained with (instruction baked in)."""
    return TemplateFingerprint.of(tokenizer, chat_template_jinja(config.data.template, config.data.instruction))


def check_same_prompts(run_path: Path, tokenizer: Any, config: RunConfig, what: str, own_template: bool = False) -> None:
    """Refuse to use `tokenizer` for a run whose recorded fingerprint differs, saying what differs (a base
    model replaced in the cache since training, another tokenizer): answers would not be the run's.
    `own_template`: judge the tokenizer's own chat template (an export's, which other tools will use),
    not the run's training template applied to it (what the workbench itself renders)."""
    recorded = fingerprint.load(run_path)
    if recorded is None:
        return  # a run made before fingerprints were recorded
    current = TemplateFingerprint.of(tokenizer) if own_template else run_fingerprint(tokenizer, config)
    found = recorded.differences(current, "the run", what)
    if found:
        raise UserError("fingerprint", f"{what} does not prompt the model as {run_path.name} was trained: "
                        + "; ".join(found), "Use the base model and tokenizer the run was trained with.")
