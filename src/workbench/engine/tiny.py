"""Build the tiny local Gemma-2 (model + tokenizer) used by the offline demo and the tests.

No machine here reaches the model hub, so the demo trains a real Gemma-2 architecture of toy size: a
byte-level BPE tokenizer trained on the bundled Hindi sample with Gemma's special tokens and chat
template, and a `Gemma2ForCausalLM` (hidden 128, 2 layers) given a short pre-training on the sample's
conversations. It is built once into a cache folder (atomically: built beside, then renamed) and reused;
threads and processes that ask for it at once wait for one build (a thread lock and a file lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench import settings
from workbench.templates import GEMMA_CHAT_JINJA

TINY_MODEL_NAME = "builtin:tiny-gemma2"
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
BUILD_VERSION = "7"  # bump when the build's code changes, so caches rebuild (RECIPE is in the name too)


@dataclass(frozen=True)
class Recipe:
    """What the build makes. Its repr is part of the cache folder's name: a changed recipe builds anew.

    Measured with benchmarks/demo_learning.py (BENCHMARKS.md, "The demo learns"): hidden 128 learns
    more than 64 from the demo's 194 rows (eval loss -16% instead of -12%); a third layer, pre-training
    windows of 256 or a cosine schedule did not lower the tuned eval loss; fewer pre-training steps did
    raise it (180 steps: -12%); so does a loss on half the positions (-14%), which builds 20% faster.
    It builds in 32 s on one core of an idle 2-core machine.
    """

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    vocab_size: int = 4000
    """Word-level tokens (see WORDS) make 8,000 merges unnecessary; the output layer dominates the cost
    of every step at this size, so a smaller vocabulary builds and trains faster."""
    pretrain_steps: int = 250
    pretrain_seq: int = 128
    pretrain_batch: int = 8
    pretrain_lr: float = 3e-3


RECIPE = Recipe()
BUILDING = "Building the tiny demo model (first run only)"
LOCK_FILE = ".tiny-gemma2.lock"
STAGING_PREFIX = ".building-tiny-gemma2-"
PROGRESS_EVERY = 25  # pre-training steps between progress messages

WORDS = r" ?[\p{L}\p{M}]+| ?\p{N}+| ?[^\s\p{L}\p{M}\p{N}]+|\s+(?!\S)|\s+"
r"""GPT-2's split pattern with combining marks (\p{M}) kept in words. GPT-2's own `\p{L}+` cuts a
Devanagari word at every vowel sign (की = क + ी), so no merge could span one and the tokenizer was
nearly character-level (167 tokens per summary; 73 now); real tokenizers, Gemma's included,
keep Hindi words whole."""

StatusFn = Callable[[str], None]
_BUILD_LOCK = threading.Lock()


def cache_root() -> Path:
    return settings.cache_root()


def _train_rows() -> list[dict[str, str]]:
    from workbench.data import builtin_path

    path = builtin_path("hindi_dialogues", "train")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _corpus() -> list[str]:
    """The tokenizer's text: the train split (the held-out rows stay unseen by every part of the build)."""
    texts: list[str] = []
    for row in _train_rows():
        texts.extend([row["dialogue"], row["summary"]])
    # The prompt scaffolding, so template words are single tokens like in a real tokenizer.
    texts.extend(["### बातचीत:", "### सारांश:", "नीचे दी गई बातचीत का हिंदी में संक्षिप्त सारांश लिखिए।"] * 50)
    return texts


def _pretrain_texts() -> list[str]:
    """The pre-training's text: the train split's conversations, not their summaries.

    A base model that has read the summaries has nothing left to learn from fine-tuning on them but the
    link to the conversation, which a model this small barely learns in a few minutes: with the
    summaries in the pre-training, the demo's eval loss went 3.47 -> 3.35 (-3%) and its chart looked like
    noise. Having read only conversations, the base model knows the language but not the summaries'
    narrative style ("X ने Y को बताया कि ..."), which LoRA learns within the demo's first steps.
    """
    return [row["dialogue"] for row in _train_rows()]


def tiny_model_dir() -> Path:
    digest = hashlib.sha256(("\n".join(_corpus()) + BUILD_VERSION + repr(RECIPE)).encode()).hexdigest()[:12]
    return cache_root() / f"tiny-gemma2-{digest}"


def build_tokenizer(texts: list[str], vocab_size: int = RECIPE.vocab_size) -> Any:  # a PreTrainedTokenizerFast
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(WORDS), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
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


def _is_built(target: Path) -> bool:
    # The build renames a complete folder into place, so these two files mean the whole model is there.
    return (target / "config.json").exists() and (target / "tokenizer.json").exists()


@contextlib.contextmanager
def _file_lock(path: Path, status: StatusFn) -> Iterator[None]:
    """An exclusive flock on `path`, held while the block runs. The kernel drops it when the process
    dies, so a crashed build never leaves the lock taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            status(f"{BUILDING}: another workbench process is building it; waiting…")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def build_tiny_model(target: Path | None = None, status: StatusFn | None = None) -> Path:
    """Build (once) and return the folder of the tiny Gemma-2 model and tokenizer.

    Threads and processes that ask at the same time get one build: the engine asks from several
    threads at once (the Data pane's preview and its statistics both want the tokenizer as it opens),
    and two engines or a `workbench train` can share a cache. A thread lock serialises this process's
    threads, a file lock in the cache folder serialises processes; whoever gets them second finds the
    model built and uses it. `status` receives human-readable progress while building (or waiting).
    """
    target = target or tiny_model_dir()
    if _is_built(target):
        return target
    say: StatusFn = status or (lambda _message: None)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _BUILD_LOCK, _file_lock(target.parent / LOCK_FILE, say):
        if _is_built(target):  # built by the thread or process we waited for
            return target
        # Holding the lock, any staging folder left here is from a build that died (a kill -9 skips the
        # clean-up below): it is only half a model, so remove it.
        for stale in target.parent.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target.parent))
        try:
            _build_into(staging, say)
            try:
                staging.rename(target)  # atomic: the model appears whole or not at all
            except OSError:
                if not _is_built(target):  # else a workbench without this lock finished first: use theirs
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _build_into(folder: Path, say: StatusFn) -> None:
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    started = time.monotonic()
    say(f"{BUILDING}: training the tokenizer…")
    recipe = RECIPE
    tokenizer = build_tokenizer(_corpus(), recipe.vocab_size)
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads,
        head_dim=recipe.head_dim,
        # Attention scaled by 1/sqrt(head_dim), as in Gemma-2 2B and 9B (head_dim 256 = query_pre_attn_scalar):
        # llama.cpp's Gemma-2 always scales so, and the GGUF export's proof compares answers token by token.
        query_pre_attn_scalar=recipe.head_dim,
        max_position_embeddings=8192,
        sliding_window=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config).to(torch.float32)
    # With the process's thread count: in the engine, one core is left to the UI. Both cores of a 2-core
    # machine build in 21 s instead of 32 s when it is idle, but in 254 s instead of 68 s when other
    # processes keep it busy (measured: OpenMP threads wait for each other whenever one is preempted).
    _pretrain(model, tokenizer, _pretrain_texts(), recipe, say=say)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = [
        tokenizer.eos_token_id,
        tokenizer.convert_tokens_to_ids("<end_of_turn>"),
    ]
    say(f"{BUILDING}: saving…")
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    say(f"Built the tiny demo model in {time.monotonic() - started:.0f} s.")


def _pretrain(model: Any, tokenizer: Any, texts: list[str], recipe: Recipe, say: StatusFn) -> None:
    """A short language-model pre-training, so the demo's base model already knows the language: LoRA
    then fine-tunes a model whose loss starts near 6 rather than at ln(vocab), and chat answers come out
    as Hindi words. Deterministic; about half a minute on one CPU core, once per cache."""
    import torch

    ids: list[int] = []
    for text in texts:
        ids.extend([tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"],
                    tokenizer.eos_token_id])
    data = torch.tensor(ids, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    steps, seq, batch = recipe.pretrain_steps, recipe.pretrain_seq, recipe.pretrain_batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.pretrain_lr, weight_decay=0.0)
    model.train()
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=generator)
        batch_ids = torch.stack([data[s : s + seq] for s in starts])
        loss = model(input_ids=batch_ids, labels=batch_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % PROGRESS_EVERY == 0 or step == steps:  # every few seconds: each one is a line in the Train log
            say(f"{BUILDING}: pre-training step {step}/{steps}")
    model.eval()


def resolve_model_name(name: str, status: StatusFn | None = None) -> str:
    """Turn the config's model name into what `from_pretrained` takes (builds the tiny model if named)."""
    if name == TINY_MODEL_NAME:
        return str(build_tiny_model(status=status))
    return name
