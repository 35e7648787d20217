"""Build the tiny local Gemma-2 (model + tokenizer) used by the offline demo and the tests.

No machine here reaches the model hub, so the demo trains a real Gemma-2 architecture of toy size: a
byte-level BPE tokenizer trained on the bundled Hindi sample with Gemma's special tokens and chat
template, and a randomly initialised `Gemma2ForCausalLM` (hidden 64, 2 layers). It is built once into
a cache folder (atomically: built beside, then renamed) and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from workbench.templates import GEMMA_CHAT_JINJA

TINY_MODEL_NAME = "builtin:tiny-gemma2"
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
VOCAB_SIZE = 8000  # large enough that Devanagari samples stay a few hundred tokens long
BUILD_VERSION = "5"  # bump when the recipe below changes, so caches rebuild
PRETRAIN_STEPS = 250


def cache_root() -> Path:
    root = os.environ.get("WORKBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "workbench"
    )
    return Path(root)


def _corpus() -> list[str]:
    from workbench.data import builtin_path

    texts: list[str] = []
    for split in ("train", "heldout"):
        path = builtin_path("hindi_dialogues", split)
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                texts.extend([row["dialogue"], row["summary"]])
    # The prompt scaffolding, so template words are single tokens like in a real tokenizer.
    texts.extend(["### बातचीत:", "### सारांश:", "नीचे दी गई बातचीत का हिंदी में संक्षिप्त सारांश लिखिए।"] * 50)
    return texts


def tiny_model_dir() -> Path:
    digest = hashlib.sha256(("\n".join(_corpus()) + BUILD_VERSION).encode()).hexdigest()[:12]
    return cache_root() / f"tiny-gemma2-{digest}"


def build_tokenizer(texts: list[str]):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
        padding_side="right",
        model_max_length=8192,
    )
    fast.chat_template = GEMMA_CHAT_JINJA
    return fast


def build_tiny_model(target: Path | None = None) -> Path:
    """Build (once) and return the folder of the tiny Gemma-2 model and tokenizer."""
    target = target or tiny_model_dir()
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        tokenizer = build_tokenizer(_corpus())
        config = Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=8192,
            sliding_window=4096,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            attn_implementation="eager",
        )
        torch.manual_seed(0)
        model = Gemma2ForCausalLM(config).to(torch.float32)
        _pretrain(model, tokenizer, _corpus())
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = [
            tokenizer.eos_token_id,
            tokenizer.convert_tokens_to_ids("<end_of_turn>"),
        ]
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").exists():  # someone else finished first: use theirs
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _pretrain(model, tokenizer, texts: list[str], steps: int = PRETRAIN_STEPS, seq: int = 128, batch: int = 8) -> None:
    """A short language-model pre-training on the bundled Hindi text, so the demo's base model already
    knows the script: LoRA then fine-tunes a model whose loss starts near 4 rather than at ln(vocab), and
    chat answers come out as Hindi words. Deterministic; about 20 s on 2 CPU cores, once per cache."""
    import torch

    ids: list[int] = []
    for text in texts:
        ids.extend([tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"],
                    tokenizer.eos_token_id])
    data = torch.tensor(ids, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=generator)
        batch_ids = torch.stack([data[s : s + seq] for s in starts])
        loss = model(input_ids=batch_ids, labels=batch_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()


def resolve_model_name(name: str) -> str:
    """Turn the config's model name into what `from_pretrained` takes (builds the tiny model if named)."""
    if name == TINY_MODEL_NAME:
        return str(build_tiny_model())
    return name
