"""Generation: stream a summary for a conversation, rendered with the template the model was trained
with, from the tuned model (adapter on) or the base model (adapter off)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workbench.engine.model import Loaded
from workbench.requests import GenerationStats
from workbench.templates import END_OF_TURN, render_prompt


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    """The generated tokens (an end-of-turn token included when the model wrote one)."""
    prompt_tokens: int
    time_to_first_token_s: float | None
    decode_tokens_per_s: float | None
    stopped: bool

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids)

    path: str = "standard"
    """Which decoder answered (the fast decoder's path, or the standard `generate`)."""

    def stats(self) -> GenerationStats:
        return GenerationStats(text=self.text, new_tokens=self.new_tokens, prompt_tokens=self.prompt_tokens,
                               time_to_first_token_s=self.time_to_first_token_s,
                               decode_tokens_per_s=self.decode_tokens_per_s, stopped=self.stopped, path=self.path)


class _Stopper:
    """A transformers StoppingCriteria that ends generation when the user cancels."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return self.cancel.is_set()


def eos_ids(tokenizer: Any) -> list[int]:
    ids = [tokenizer.eos_token_id]
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(eot, int) and eot != tokenizer.unk_token_id:
        ids.append(eot)
    return [i for i in ids if i is not None]


def prepare_for_inference(model: Any) -> None:
    """unsloth's inference mode, with the KV cache on: training with gradient checkpointing turns it off in
    the model's config, and without it every new token recomputes the whole prefix (measured: 14 instead of
    350 tokens/s on the tiny model)."""
    from unsloth import FastLanguageModel

    FastLanguageModel.for_inference(model)
    base = getattr(model, "base_model", None)
    configs = (getattr(model, "config", None), getattr(base, "config", None),
               getattr(getattr(base, "model", None), "config", None))
    for cfg in {id(c): c for c in configs if c is not None}.values():
        cfg.use_cache = True
    eager_for_gemma2_on_cpu(model)


def eager_for_gemma2_on_cpu(model: Any) -> None:
    """Gemma-2 on the CPU loads with SDPA, which drops its attention soft-capping: answers there would not
    be the model's. transformers' eager attention applies it (on CUDA, unsloth's inference path does)."""
    configs = {id(m.config): m.config for m in model.modules() if hasattr(getattr(m, "config", None), "model_type")}
    if any(c.model_type != "gemma2" for c in configs.values()) or model.device.type != "cpu":
        return
    for config in configs.values():
        if getattr(config, "_attn_implementation", None) == "sdpa":
            config._attn_implementation = "eager"


def adapter_switch(loaded: Loaded, use_adapter: bool) -> contextlib.AbstractContextManager[Any]:
    """The adapter off for the base model's answer (peft's context manager), else nothing to do."""
    if not use_adapter and loaded.has_lora:
        switch: contextlib.AbstractContextManager[Any] = loaded.model.disable_adapter()
        return switch
    return contextlib.nullcontext()


def generate_stream(
    loaded: Loaded,
    *,
    template: str,
    instruction: str,
    conversation: str,
    on_text: Callable[[str], None],
    cancel: threading.Event,
    max_new_tokens: int = 256,
    temperature: float = 0.7,
    top_p: float = 0.9,
    use_adapter: bool = True,
    prompt_override: str | None = None,
) -> GenerationResult:
    import torch
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    model, tokenizer = loaded.model, loaded.tokenizer
    prompt = prompt_override or render_prompt(template, instruction, conversation, bos=tokenizer.bos_token)
    # Rendered with its one <bos>, so the tokenizer must not add another.
    inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").to(model.device)
    prepare_for_inference(model)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    sampling = temperature > 0
    kwargs: dict[str, Any] = dict(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        streamer=streamer,
        eos_token_id=eos_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        stopping_criteria=StoppingCriteriaList([_Stopper(cancel)]),
        use_cache=True,
    )
    if sampling:
        kwargs.update(temperature=temperature, top_p=top_p)
    adapter_off = adapter_switch(loaded, use_adapter)
    output: dict[str, Any] = {}
    failure: list[BaseException] = []

    def work() -> None:
        try:
            with adapter_off, torch.inference_mode():
                output["ids"] = model.generate(**kwargs)
        except BaseException as exc:  # surfaced to the caller below
            failure.append(exc)
            streamer.end()

    started = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    thread = threading.Thread(target=work, name="generate", daemon=True)
    thread.start()
    for piece in streamer:
        if piece:
            if first is None:
                first = time.perf_counter()
            pieces.append(piece)
            on_text(piece)
    thread.join()
    finished = time.perf_counter()
    if failure:
        raise failure[0]
    prompt_length = int(inputs["input_ids"].shape[-1])
    token_ids = [int(t) for t in output["ids"][0, prompt_length:].tolist()] if "ids" in output else []
    decode_tps = None
    if first is not None and len(token_ids) > 1 and finished > first:
        decode_tps = (len(token_ids) - 1) / (finished - first)
    return GenerationResult(
        text="".join(pieces),
        token_ids=token_ids,
        prompt_tokens=prompt_length,
        time_to_first_token_s=(first - started) if first is not None else None,
        decode_tokens_per_s=decode_tps,
        stopped=cancel.is_set(),
    )


def generate_fast(
    loaded: Loaded,
    decoder: Any,
    path: str,
    *,
    template: str,
    instruction: str,
    conversation: str,
    on_text: Callable[[str], None],
    cancel: threading.Event,
    max_new_tokens: int = 256,
    temperature: float = 0.7,
    top_p: float = 0.9,
) -> GenerationResult | None:
    """The tuned model's answer from the fast decoder (`fast_decode`), or None when the prompt does not fit
    its cache (the standard path answers then)."""
    from workbench.engine import fast_decode as fd

    tokenizer = loaded.tokenizer
    prompt = render_prompt(template, instruction, conversation, bos=tokenizer.bos_token)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if len(ids) >= decoder.capacity:
        return None
    out = fd.decode(decoder, tokenizer, ids, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                    stop_ids=eos_ids(tokenizer), on_text=on_text, cancel=cancel)
    return GenerationResult(text=out.text, token_ids=out.token_ids, prompt_tokens=out.prompt_tokens,
                            time_to_first_token_s=out.time_to_first_token_s,
                            decode_tokens_per_s=out.decode_tokens_per_s, stopped=out.stopped, path=path)
