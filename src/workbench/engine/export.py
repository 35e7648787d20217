"""Export a run's weights: the LoRA adapter, a merged 16-bit model, or GGUF (llama.cpp).

One recipe for the Save pane and `workbench export`:
1. resolve the weights: a run's final adapter or one of its complete checkpoints, with the run's own
   config (never the UI's current one);
2. write the export into a hidden folder beside the target (`staged`);
3. prove it: reload it the way its users will (peft; plain transformers; llama.cpp) and compare its
   greedy answer to a held-out prompt with the workbench's own model (`verify`);
4. write the provenance (`workbench.json`: run, step, checkpoint, verification) and a README card
   (`model_card.py`), and only then rename the folder into place. A crash, a full disk or a failed proof leaves no folder that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench import __version__, fingerprint
from workbench import data as wbdata
from workbench.config import RunConfig, save_config
from workbench.engine.model import Loaded, check_same_prompts, run_fingerprint
from workbench.errors import UserError
from workbench.model_card import write_card
from workbench.requests import Saved, Verification
from workbench.runs import RunDir, WeightsSource, resolve_weights
from workbench.save_kinds import GGUF_KINDS, SAVE_KINDS, SaveKind, llama_cpp_dir, unavailable_reason
from workbench.templates import TEMPLATE_TITLES, chat_template_jinja, render_prompt

ModelSource = Callable[[RunConfig, str | None], Loaded]
"""Gives the workbench's own model for a config with an adapter on it (the engine reuses a loaded one)."""
Say = Callable[[str], None]

VERIFY_TOKENS = 32
MIN_AGREEMENT = 0.9
"""Next-token agreement an export must reach where its numbers differ from the workbench's (a 16-bit merge
of a model trained in 4-bit, another kernel): a merge that lost the adapter agrees on almost nothing."""
MIN_QUANTIZED_AGREEMENT = 0.5
"""A q8_0 / Q4_K_M file's: rounding moves some choices; a file that lost the adapter or its vocabulary
agrees on almost nothing."""
FALLBACK_CONVERSATION = "राम: कल बाज़ार चलें?\nसीता: हाँ, सुबह 10 बजे चलते हैं।"


@contextlib.contextmanager
def staged(target: Path, overwrite: bool) -> Iterator[Path]:
    """A hidden folder beside `target` to write into, renamed to `target` when the block completes.

    An existing target is replaced only after the new folder is complete (with `overwrite`); on any
    failure the staging folder is removed and the target is left as it was."""
    if target.exists() and not overwrite:
        raise UserError("exists", f"{target} already exists", "Confirm overwriting, or choose another path.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            old = target.with_name(f".{target.name}.old-{int(time.time() * 1000)}")
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- savers -----------------------------------------------------------------------------------------

def write_adapter(loaded: Loaded, folder: Path) -> None:
    loaded.model.save_pretrained(str(folder), safe_serialization=True)
    loaded.tokenizer.save_pretrained(str(folder))


def _merge_dtype(base: str) -> Any:
    """16-bit (bf16, or fp16 on a GPU without bf16), as the base checkpoints of the models people tune are;
    a base stored in 32-bit (the tiny demo model) stays 32-bit, so its merge answers exactly as the adapter
    does instead of rounding weights the workbench never rounded."""
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base)
    stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if stored in (torch.float32, "float32"):
        return torch.float32
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def write_chat_template(folder: Path, config: RunConfig) -> None:
    """The template the run was trained with, instruction included, where transformers looks for it (it
    replaces the base tokenizer's own): other tools then prompt the model exactly as it was trained."""
    jinja = chat_template_jinja(config.data.template, config.data.instruction)
    (folder / "chat_template.jinja").write_text(jinja, encoding="utf-8")


@contextlib.contextmanager
def adapter_writer(model: Any, config: RunConfig, main: bool) -> Iterator[bool]:
    """Whether this process writes the run's adapter. With unsloth's FSDP2 (training.strategy = "fsdp2") each
    rank holds a shard of every parameter, so every rank must enter: the LoRA weights are gathered whole onto
    the writing rank for the save while the others wait (unsloth's `fsdp2_gathered`). Otherwise rank 0
    writes alone, from the replica it holds."""
    if config.training.strategy != "fsdp2":
        yield main
        return
    try:
        from unsloth.models.fsdp2_save import fsdp2_gathered
    except ImportError as exc:  # the installed unsloth moved it: say so rather than save a shard
        raise RuntimeError("training.strategy = \"fsdp2\" needs unsloth's FSDP2 save "
                           "(unsloth.models.fsdp2_save.fsdp2_gathered), which this unsloth does not have; "
                           "train with strategy = \"ddp\"") from exc
    with fsdp2_gathered(model, trainable_only=True) as writer:
        yield main if writer is None else bool(writer)  # None: the model is not sharded


def write_run_adapter(loaded: Loaded, run: RunDir, config: RunConfig) -> Path:
    """A finished run's adapter, into run/adapter (atomically), with the template it was trained with."""
    with staged(run.adapter_dir, overwrite=True) as folder:
        write_adapter(loaded, folder)
        save_config(config, folder / "workbench-config.toml")
        write_chat_template(folder, config)
    loaded.adapter_path = str(run.adapter_dir)
    return run.adapter_dir


def write_merged(source: WeightsSource, folder: Path, say: Say) -> None:
    """Base weights in 16-bit plus the adapter, merged into plain linear layers.

    Merged from the files on disk with transformers and peft, not from the engine's model in memory: that
    one may be 4-bit, and a peft model loaded on top of unsloth's does not merge (its save kept lora_A /
    lora_B / base_layer keys, and transformers then initialised those layers at random)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.engine.tiny import resolve_model_name

    base_path = resolve_model_name(source.config.model.name)
    dtype = _merge_dtype(base_path)
    say(f"Merging the adapter into a {str(dtype).removeprefix('torch.')} copy of {source.config.model.name}…")
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype, low_cpu_mem_usage=True)
    merged = PeftModel.from_pretrained(base, str(source.adapter)).merge_and_unload()
    merged.save_pretrained(str(folder), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(source.adapter)).save_pretrained(str(folder))


def write_gguf(source: WeightsSource, folder: Path, kind: SaveKind, say: Say) -> Path:
    """The run's weights merged, converted to an f16 GGUF by llama.cpp's converter, quantized when `kind`
    asks for it, and an Ollama Modelfile beside the file (template and stop tokens of the run's template)."""
    from workbench.engine import gguf
    from workbench.modelfile import modelfile

    llama = llama_cpp_dir()
    assert llama is not None  # unavailable_reason(kind) was checked first
    out = folder / gguf.gguf_file_name(source.run.name, kind)
    with tempfile.TemporaryDirectory(prefix=".gguf-work-", dir=folder.parent) as tmp:
        merged = Path(tmp) / "merged"
        merged.mkdir()
        write_merged(source, merged, say)
        write_chat_template(merged, source.config)  # the converter writes it into the file's metadata
        gguf.check_llama_cpp_can_run(merged)
        f16 = out if kind == "gguf_f16" else Path(tmp) / "model.f16.gguf"
        say("Converting to GGUF with llama.cpp's converter…")
        gguf.convert(merged, f16, llama)
        if kind != "gguf_f16":
            say(f"Quantizing to {gguf.FILE_TYPES[kind]} (llama.cpp)…")
            gguf.quantize(f16, out, kind)
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(str(source.adapter)).eos_token or "<eos>"
    (folder / "Modelfile").write_text(modelfile(out.name, source.config, eos), encoding="utf-8")
    return out


# -- proof ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbePrompt:
    text: str
    row: int | None


def probe_prompt(config: RunConfig, bos: str) -> ProbePrompt:
    """A held-out prompt rendered with the run's template: the bundled held-out split, else the first
    usable row of the run's data, else a fixed conversation (the data may have moved since training)."""
    d = config.data
    split = "heldout" if d.source.startswith(wbdata.BUILTIN_PREFIX) else d.split
    conversation, row = FALLBACK_CONVERSATION, None
    with contextlib.suppress(wbdata.DataError, OSError):
        examples, _ = wbdata.validate_rows(wbdata.load_rows(d.source, split), d.input_column, d.output_column)
        if examples:
            conversation, row = examples[0].conversation, examples[0].row
    return ProbePrompt(render_prompt(d.template, d.instruction, conversation, bos=bos), row)


def reference_tokens(loaded: Loaded, prompt: ProbePrompt, say: Say) -> list[int]:
    """The workbench's own greedy answer (its chat path, adapter on)."""
    import threading

    from workbench.engine.generate import generate_stream

    say("Proving the export: the workbench's own answer to a held-out prompt…")
    result = generate_stream(loaded, template="", instruction="", conversation="", on_text=lambda _t: None,
                             cancel=threading.Event(), max_new_tokens=VERIFY_TOKENS, temperature=0.0,
                             prompt_override=prompt.text)
    return result.token_ids


def compare_next_tokens(model: Any, tokenizer: Any, prompt: str, expected: list[int]) -> list[bool]:
    """Feed the prompt and the expected answer; count where the model's own next-token choice is the
    expected one. Returns (leading tokens equal, tokens equal). Teacher forcing: one forward pass, and a
    single early difference does not make every later position differ."""
    import torch

    prompt_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    answer = torch.tensor([expected], dtype=prompt_ids.dtype)
    ids = torch.cat([prompt_ids, answer], dim=1).to(next(model.parameters()).device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, prompt_ids.shape[1] - 1 : -1]
    chosen = logits.argmax(dim=-1).tolist()
    return [c == e for c, e in zip(chosen, expected, strict=True)]


def verdict(how: str, prompt_row: int | None, equal: list[bool], threshold: float, what: str,
            note: str = "") -> Verification:
    """The proof's result from where the export's next-token choice was the workbench's; an error (nothing
    is written) below `threshold`."""
    compared = len(equal)
    leading = next((i for i, same in enumerate(equal) if not same), compared)
    agreement = sum(equal) / compared if compared else 1.0
    passed = compared > 0 and agreement >= threshold
    detail = (f"{how}: the first {leading} of {compared} greedy tokens are the workbench's; next-token "
              f"agreement {100 * agreement:.0f}%{note}")
    if not passed:
        raise UserError("export_mismatch", f"{what} does not answer as the workbench did ({detail})",
                        "The export was not written; see the engine log.")
    return Verification(loader=how, prompt_row=prompt_row, tokens_compared=compared, tokens_equal=leading,
                        agreement=agreement, passed=passed, detail=detail)


def _lora_keys(folder: Path) -> list[str]:
    from safetensors import safe_open

    found: list[str] = []
    for shard in folder.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            found += [k for k in f.keys() if "lora_" in k or "base_layer" in k]  # noqa: SIM118 (not a dict)
    return found


def _device_for(folder: Path) -> str:
    """The GPU when the export's weights fit in its free memory with room to spare, else the CPU (slower,
    but a proof on a small card must not fail for lack of memory beside the engine's own model)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    free, _total = torch.cuda.mem_get_info()
    return "cuda" if size * 1.3 < free else "cpu"


def _load_export(kind: SaveKind, folder: Path) -> tuple[Any, Any, str]:
    """The export, loaded as its users load it: (model, tokenizer, how)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    placement = {"": _device_for(folder)}
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if kind == "lora":
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(str(folder), dtype="auto", device_map=placement)
        return model.eval(), tokenizer, "peft AutoPeftModelForCausalLM"
    model, info = AutoModelForCausalLM.from_pretrained(str(folder), dtype="auto", device_map=placement,
                                                       output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if "lm_head" not in k]  # tied to the embeddings
    if missing:
        raise UserError("export_mismatch", f"the merged model reloads with {len(missing)} weights missing "
                        f"(e.g. {missing[0]}): transformers would initialise them at random",
                        "The export was not written; see the engine log.")
    return model.eval(), tokenizer, "transformers AutoModelForCausalLM"


def verify(kind: SaveKind, folder: Path, loaded: Loaded, source: WeightsSource, say: Say) -> Verification:
    """Reload the export the way its users will and compare its greedy answer with the workbench's."""
    if kind in GGUF_KINDS:
        return verify_gguf(kind, folder, loaded, source, say)
    if kind == "merged_16bit":
        leftover = _lora_keys(folder)
        if leftover:
            raise UserError("export_mismatch", f"the merged model still holds {len(leftover)} LoRA tensors "
                            f"(e.g. {leftover[0]}): it is not merged", "The export was not written.")
    prompt = probe_prompt(source.config, loaded.tokenizer.bos_token or "<bos>")
    expected = reference_tokens(loaded, prompt, say)
    say(f"Proving the export: reloading it ({kind}) and comparing {len(expected)} tokens…")
    model, tokenizer, how = _load_export(kind, folder)
    try:
        check_same_prompts(source.run.path, tokenizer, source.config, "the export", own_template=True)
        equal = compare_next_tokens(model, tokenizer, prompt.text, expected)
    finally:
        del model
    return verdict(how, prompt.row, equal, MIN_AGREEMENT, "the export")


def verify_gguf(kind: SaveKind, folder: Path, loaded: Loaded, source: WeightsSource, say: Say) -> Verification:
    """Read the GGUF's metadata (tokens, special ids, chat template: the run's fingerprint), then run it with
    llama-cpp-python on the held-out prompt's ids. f16 must agree as a merged model does; a quantized file's
    agreement is reported, and refused only below MIN_QUANTIZED_AGREEMENT (a broken file, not rounding)."""
    from workbench.engine import gguf

    llama = llama_cpp_dir()
    assert llama is not None
    path = folder / gguf.gguf_file_name(source.run.name, kind)
    meta = gguf.read_metadata(path, llama)
    gguf.check_metadata(meta, fingerprint.load(source.run.path), loaded.tokenizer)
    prompt = probe_prompt(source.config, loaded.tokenizer.bos_token or "<bos>")
    expected = reference_tokens(loaded, prompt, say)
    say(f"Proving the export: running {path.name} with llama.cpp on {len(expected)} tokens…")
    prompt_ids = loaded.tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    chosen = gguf.next_token_choices(path, list(prompt_ids), expected)
    equal = [c == e for c, e in zip(chosen, expected, strict=True)]
    threshold = MIN_AGREEMENT if kind == "gguf_f16" else MIN_QUANTIZED_AGREEMENT
    return verdict(f"llama-cpp-python ({gguf.FILE_TYPES[kind]})", prompt.row, equal, threshold, "the GGUF file",
                   "; tokens, special ids and chat template match the run's")


# -- provenance -------------------------------------------------------------------------------------

def _data_fingerprint(run: RunDir) -> str:
    from workbench.protocol import TrainStart

    starts = [e for e in run.iter_events() if isinstance(e, TrainStart)]
    return starts[-1].data_fingerprint if starts else ""


def write_provenance(folder: Path, source: WeightsSource, kind: SaveKind, verification: Verification | None,
                     tokenizer: Any) -> None:
    """workbench.json and fingerprint.json beside the weights. Nothing in them depends on when the export
    was made: a run exported twice gives byte-identical metadata."""
    config = source.config
    fp = run_fingerprint(tokenizer, config)
    fingerprint.save(fp, folder)
    save_config(config, folder / "workbench-config.toml")
    meta = {
        "kind": kind,
        "base_model": config.model.name,
        "run": source.run.name,
        "run_dir": str(source.run.path.resolve()),
        "step": source.step,
        "checkpoint": source.checkpoint,
        "weights_from": str(source.adapter.resolve()),
        "template": config.data.template,
        "template_title": TEMPLATE_TITLES[config.data.template],
        "instruction": config.data.instruction,
        "data_source": config.data.source,
        "data_fingerprint_sha256": _data_fingerprint(source.run),
        "verification": verification.model_dump() if verification else None,
        "template_fingerprint": fp.digest,
        "workbench_version": __version__,
    }
    (folder / "workbench.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2, sort_keys=True),
                                           encoding="utf-8")


# -- the recipe -------------------------------------------------------------------------------------

def export_run(run: RunDir, kind: SaveKind, target: Path, *, checkpoint: int | None = None, overwrite: bool = False,
               say: Say, models: ModelSource) -> Saved:
    """Export one run's weights as `kind` into `target`, proven to answer as the workbench does."""
    if kind not in SAVE_KINDS:
        raise UserError("bad_kind", f"unknown export kind {kind!r}", f"Use one of {', '.join(SAVE_KINDS)}.")
    reason = unavailable_reason(kind)
    if reason:
        raise UserError("unavailable", reason, "Save the LoRA adapter or the merged model instead.")
    source = resolve_weights(run, checkpoint)
    if target.exists() and not overwrite:  # said before the model loads (staged() checks again, to be sure)
        raise UserError("exists", f"{target} already exists", "Confirm overwriting, or choose another path.")
    what = source.checkpoint or "final adapter"
    say(f"Exporting {run.name} ({what}) as {kind} to {target}…")
    loaded = models(source.config, str(source.adapter))
    with staged(target, overwrite) as folder:
        if kind == "lora":
            write_adapter(loaded, folder)
        elif kind == "merged_16bit":
            write_merged(source, folder, say)
        else:
            write_gguf(source, folder, kind, say)
        write_chat_template(folder, source.config)  # before the proof: the export is reloaded with it
        verification = verify(kind, folder, loaded, source, say)
        write_provenance(folder, source, kind, verification, loaded.tokenizer)
        write_card(folder, source, kind, verification)
    return Saved(kind=kind, path=str(target), run=run.name, step=source.step, checkpoint=source.checkpoint,
                 verification=verification)
