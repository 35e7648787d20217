"""GPU benchmarks (issue 4): training throughput and memory of three arms on the same token data, chat
latency, and the memory report, for a randomly initialised model of Gemma-2's real shape.

    python benchmarks/gpu_bench.py build  --shape 9b --out .gpucache      # model (4-bit) + tokenizer + data
    python benchmarks/gpu_bench.py plain  --cache .gpucache               # B: transformers + peft + TRL
    python benchmarks/gpu_bench.py unsloth --cache .gpucache              # A: workbench engine, then C: bare unsloth
    python benchmarks/gpu_bench.py packing --cache .gpucache              # A with packing (padding-free)

Each arm prints one JSON line prefixed with RESULT. Throughput counts real (non-pad) tokens only and
is measured after warm-up steps (unsloth compiles kernels in its first step). MFU uses
workbench.mfu (4N + 3A FLOPs per token, written out there) and the card's dense bf16 peak.
Run on the GPU machine with UNSLOTH_BLOCK_COMPILE=0 (see ../shared/gpu/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

SHAPES = {
    "9b": dict(hidden_size=3584, intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
               num_key_value_heads=8, head_dim=256, vocab_size=256000),
    "2b": dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
               num_key_value_heads=4, head_dim=256, vocab_size=256000),
}
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
BATCH, ACCUM, WARMUP, MEASURE = 2, 1, 3, 15


def log(*parts: Any) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def build(shape: str, out: Path, rows: int = 256, seed: int = 0) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        AutoModelForCausalLM,
        BitsAndBytesConfig,
        Gemma2Config,
        Gemma2ForCausalLM,
        PreTrainedTokenizerFast,
    )

    from workbench.templates import GEMMA_CHAT_JINJA

    out.mkdir(parents=True, exist_ok=True)
    dims = SHAPES[shape]
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for i in range(len(SPECIALS), dims["vocab_size"]):
        vocab[f"t{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    fast.chat_template = GEMMA_CHAT_JINJA
    bf16_dir, q_dir = out / f"gemma2-{shape}-bf16", out / f"gemma2-{shape}-4bit"
    if not (q_dir / "config.json").exists():
        t0 = time.time()
        config = Gemma2Config(**dims, pad_token_id=0, eos_token_id=1, bos_token_id=2, max_position_embeddings=8192,
                              attn_implementation="eager")
        torch.manual_seed(seed)
        with torch.device("cuda"):
            model = Gemma2ForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(bf16_dir, safe_serialization=True)
        fast.save_pretrained(bf16_dir)
        del model
        torch.cuda.empty_cache()
        log(f"built bf16 {shape} in {time.time() - t0:.0f} s")
        t0 = time.time()
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(bf16_dir, quantization_config=bnb, dtype=torch.bfloat16,
                                                     device_map={"": 0})
        model.save_pretrained(q_dir, safe_serialization=True)
        fast.save_pretrained(q_dir)
        del model
        import shutil

        shutil.rmtree(bf16_dir)
        log(f"quantized to nf4 (double quant) in {time.time() - t0:.0f} s")
    # Dialogue-summary-like lengths: 150-1,500 tokens per sample, a fifth of it the summary.
    rng = random.Random(seed)
    with open(out / "data.jsonl", "w", encoding="utf-8") as fh:
        for _ in range(rows):
            total = rng.randint(150, 1500)
            n_sum = max(10, total // 5)
            words = lambda n: " ".join(f"t{rng.randint(6, dims['vocab_size'] - 1)}" for _ in range(n))  # noqa: E731
            fh.write(json.dumps({"dialogue": words(total - n_sum), "summary": words(n_sum)}) + "\n")
    log("wrote", out / "data.jsonl")


def run_config(cache: Path, shape: str, packing: bool = False, max_steps: int = WARMUP + MEASURE):
    from workbench.config import RunConfig

    c = RunConfig()
    c.model.name = str(cache / f"gemma2-{shape}-4bit")
    c.data.source = str(cache / "data.jsonl")
    c.data.instruction = "t7 t8 t9"
    c.data.packing = packing
    c.training.per_device_train_batch_size = BATCH
    c.training.gradient_accumulation_steps = ACCUM
    c.training.max_steps = max_steps
    c.training.save_steps = 10_000
    c.training.warmup_steps = 2
    c.output.runs_dir = str(cache / "runs")
    return c


def token_data(config: Any, tokenizer: Any) -> Any:
    from datasets import Dataset

    from workbench.engine.train import prepare_data

    prepared = prepare_data(config, tokenizer)
    return Dataset.from_dict({"input_ids": [s.input_ids for s in prepared.train],
                              "completion_mask": [[int(t) for t in s.trained] for s in prepared.train]})


def counting(trainer_cls: Any) -> Any:
    """The same real-token count the engine keeps (attention-mask sum per micro-batch), for arms B and C."""
    import torch

    class Counting(trainer_cls):  # type: ignore[misc, valid-type]
        wb_tokens: Any = None

        def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            mask = inputs.get("attention_mask")
            real = mask.sum() if mask is not None else torch.tensor(inputs["input_ids"].numel())
            self.wb_tokens = real if self.wb_tokens is None else self.wb_tokens + real
            return super().training_step(model, inputs, *args, **kwargs)

    return Counting


class Meter:
    """Per-step wall time and real-token counts; built as a TrainerCallback."""

    @staticmethod
    def make() -> Any:
        import torch
        from transformers import TrainerCallback

        class _M(TrainerCallback):
            def __init__(self) -> None:
                self.times: list[float] = []
                self.tokens: list[float] = []
                self.trainer: Any = None

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                torch.cuda.synchronize()
                self.times.append(time.time())
                self.tokens.append(float(self.trainer.wb_tokens))

        return _M()


def summarize(arm: str, times: list[float], tokens: list[float], flops_per_token: float, extra: dict) -> dict:
    import torch

    from workbench.gpu import peak_tflops
    from workbench.mfu import mfu

    w = WARMUP
    dt = times[-1] - times[w - 1]
    dtok = tokens[-1] - tokens[w - 1]
    steps = len(times) - w
    tps = dtok / dt
    name = torch.cuda.get_device_name(0)
    peak = peak_tflops(name) or 989.0
    result = {"arm": arm, "card": name, "steps_measured": steps, "tokens_per_s": round(tps, 1),
              "s_per_step": round(dt / steps, 3), "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 1024**3, 2),
              "mfu_pct": round(100 * mfu(tps, flops_per_token, peak), 2), "flops_per_token": flops_per_token, **extra}
    print("RESULT " + json.dumps(result), flush=True)
    return result


def fpt(model_dir: Path, context: float) -> float:
    from workbench.mfu import lora_flops_per_token

    cfg = json.loads((model_dir / "config.json").read_text())
    return lora_flops_per_token(cfg, context)


def mean_len(ds: Any) -> float:
    return sum(len(x) for x in ds["input_ids"]) / len(ds)


def arm_plain(cache: Path, shape: str, chat: bool = True) -> None:
    import torch
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    config = run_config(cache, shape)
    mdir = Path(config.model.name)
    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(mdir)
    model = AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.bfloat16, device_map={"": 0},
                                                 attn_implementation="eager")
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    log(f"plain: loaded in {time.time() - t0:.0f} s")
    ds = token_data(config, tokenizer)
    meter = Meter.make()
    args = SFTConfig(output_dir=str(cache / "plain-out"), per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUM,
                     max_steps=WARMUP + MEASURE, learning_rate=2e-4, warmup_steps=2, optim="adamw_8bit", bf16=True,
                     gradient_checkpointing=True, logging_steps=1, save_strategy="no", report_to="none",
                     max_length=2048, completion_only_loss=True, disable_tqdm=True, seed=3407)
    lora = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    torch.cuda.reset_peak_memory_stats()
    trainer = counting(SFTTrainer)(model=model, processing_class=tokenizer, train_dataset=ds, args=args,
                                   peft_config=lora, callbacks=[meter])
    meter.trainer = trainer
    trainer.train()
    summarize("B plain transformers+peft+TRL", meter.times, meter.tokens, fpt(mdir, mean_len(ds)), {"batch": BATCH})
    if chat:
        chat_plain(trainer.model, tokenizer)


def chat_prompt_ids(tokenizer: Any, n: int = 1000) -> Any:
    rng = random.Random(1)
    text = "<bos>" + " ".join(f"t{rng.randint(6, 255999)}" for _ in range(n - 1))
    return tokenizer(text, add_special_tokens=False, return_tensors="pt").to("cuda")


def time_generate(model: Any, tokenizer: Any, label: str) -> None:
    import torch
    from transformers import TextIteratorStreamer  # noqa: F401  (ttft measured with a streamer-free 1-token run)

    ids = chat_prompt_ids(tokenizer)
    with torch.inference_mode():
        model.generate(**ids, max_new_tokens=8, do_sample=False, min_new_tokens=8)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(**ids, max_new_tokens=1, do_sample=False, min_new_tokens=1)
        torch.cuda.synchronize()
        ttft = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = model.generate(**ids, max_new_tokens=256, do_sample=False, min_new_tokens=256)
        torch.cuda.synchronize()
        total = time.perf_counter() - t0
    new = out.shape[-1] - ids["input_ids"].shape[-1]
    decode = (new - 1) / max(total - ttft, 1e-9)
    print("RESULT " + json.dumps({"arm": label, "prompt_tokens": int(ids["input_ids"].shape[-1]), "ttft_ms": round(1000 * ttft, 1),
                                  "decode_tokens_per_s": round(decode, 1), "new_tokens": int(new)}), flush=True)


def chat_plain(model: Any, tokenizer: Any) -> None:
    model.config.use_cache = True
    model.eval()
    time_generate(model, tokenizer, "chat: plain generate (4-bit + LoRA, peft)")


def arm_unsloth(cache: Path, shape: str, packing: bool) -> None:
    from workbench.engine.boot import boot

    boot()
    import threading

    import torch

    from workbench.engine.generate import generate_stream
    from workbench.engine.train import run_training
    from workbench.protocol import Done, Log, Memory
    from workbench.runs import RunDir

    # A: the workbench engine's own training path, events and run directory on.
    config = run_config(cache, shape, packing=packing)
    label = "A workbench engine" + (" + packing" if packing else "")
    run = RunDir.create(config.output.runs_dir, f"bench-{int(time.time())}")
    events: list[Any] = []
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    done, loaded = run_training(config, run, events.append, threading.Event())
    assert isinstance(done, Done) and done.status == "completed", done.message
    logs = [e for e in events if isinstance(e, Log)]
    mems = [e for e in events if isinstance(e, Memory)]
    log(f"{label}: {done.step} steps in {time.time() - t0:.0f} s (includes load and first-step compile)")
    times = [e.t for e in logs]
    tokens = [float(e.tokens) for e in logs]
    after = mems[-1] if mems else None
    extra = {"batch": BATCH, "first_step_s": round(logs[0].elapsed_s, 1) if logs else None}
    if after:
        extra.update(memory_report={"before_gib": after.reserved_before_gib, "peak_gib": after.peak_gib,
                                    "lora_gib": after.lora_gib, "peak_pct": round(after.peak_pct, 1),
                                    "torch_max_reserved_gib": round(torch.cuda.max_memory_reserved() / 1024**3, 3)})
    summarize(label, times, tokens, _flops_from_start(events), extra)
    if packing:
        return
    # chat with the workbench generate path (unsloth for_inference) on the just-trained model
    ids_text = chat_prompt_ids(loaded.tokenizer)
    prompt = loaded.tokenizer.decode(ids_text["input_ids"][0])
    cancel = threading.Event()
    generate_stream(loaded, template="instruction", instruction="", conversation="", on_text=lambda s: None,
                    cancel=cancel, max_new_tokens=8, temperature=0.0, prompt_override=prompt)
    r = generate_stream(loaded, template="instruction", instruction="", conversation="", on_text=lambda s: None,
                        cancel=cancel, max_new_tokens=256, temperature=0.0, prompt_override=prompt)
    print("RESULT " + json.dumps({"arm": "chat: workbench generate_stream (unsloth for_inference, streamed)",
                                  "prompt_tokens": r.prompt_tokens, "ttft_ms": round(1000 * (r.time_to_first_token_s or 0), 1),
                                  "decode_tokens_per_s": round(r.decode_tokens_per_s or 0, 1), "new_tokens": r.new_tokens}), flush=True)
    del loaded
    import gc

    gc.collect()
    torch.cuda.empty_cache()
    arm_bare(cache, shape)


def _flops_from_start(events: list[Any]) -> float:
    from workbench.protocol import TrainStart

    starts = [e for e in events if isinstance(e, TrainStart)]
    return starts[-1].flops_per_token if starts else 0.0


def arm_bare(cache: Path, shape: str) -> None:
    """C: a bare script in the style of the first recipe (unsloth, no workbench code on the path)."""
    import torch
    from trl import SFTConfig, SFTTrainer
    from unsloth import FastLanguageModel

    config = run_config(cache, shape)
    mdir = Path(config.model.name)
    model, tokenizer = FastLanguageModel.from_pretrained(str(mdir), max_seq_length=2048, load_in_4bit=True, dtype=None)
    model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=16, lora_dropout=0, bias="none",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                             use_gradient_checkpointing="unsloth", random_state=3407)
    ds = token_data(config, tokenizer)
    meter = Meter.make()
    torch.cuda.reset_peak_memory_stats()
    trainer = counting(SFTTrainer)(model=model, processing_class=tokenizer, train_dataset=ds, callbacks=[meter],
                         args=SFTConfig(output_dir=str(cache / "bare-out"), per_device_train_batch_size=BATCH,
                                        gradient_accumulation_steps=ACCUM, max_steps=WARMUP + MEASURE, warmup_steps=2,
                                        learning_rate=2e-4, optim="adamw_8bit", bf16=True, logging_steps=1,
                                        save_strategy="no", report_to="none", max_length=2048, completion_only_loss=True,
                                        disable_tqdm=True, seed=3407))
    meter.trainer = trainer
    trainer.train()
    summarize("C bare unsloth script", meter.times, meter.tokens, fpt(mdir, mean_len(ds)), {"batch": BATCH})


def base_parser() -> argparse.ArgumentParser:
    """The options every GPU benchmark script takes."""
    p = argparse.ArgumentParser()
    p.add_argument("--cache", "--out", dest="cache", default=".gpucache")
    p.add_argument("--shape", default="9b", choices=sorted(SHAPES))
    return p


def boot_engine() -> None:
    """The engine's process set-up for the scripts that train: src importable, unsloth imported first."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    os.environ.setdefault("UNSLOTH_BLOCK_COMPILE", "0")
    from workbench.engine.boot import boot

    boot()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["build", "plain", "unsloth", "packing"])
    p.add_argument("--shape", default="9b", choices=sorted(SHAPES))
    p.add_argument("--cache", "--out", dest="cache", default=".gpucache")
    a = p.parse_args()
    cache = Path(a.cache).resolve()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    os.environ.setdefault("UNSLOTH_BLOCK_COMPILE", "0")
    if a.what == "build":
        build(a.shape, cache)
    elif a.what == "plain":
        arm_plain(cache, a.shape)
    else:
        arm_unsloth(cache, a.shape, packing=(a.what == "packing"))


if __name__ == "__main__":
    main()
