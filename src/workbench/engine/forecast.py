"""The memory forecast for a config, as the engine answers it: the model's shape from its config.json
(nothing loaded), the longest training sample from the tokenized data, the free memory from NVML."""

from __future__ import annotations

from typing import Any

from workbench import data as wbdata
from workbench import gpu as nvml_readings  # its sample_gpus is looked up at each call, not bound at import
from workbench import memory_forecast as mf
from workbench import requests as rq
from workbench.config import RunConfig
from workbench.engine.tiny import resolve_model_name

GIB = 1024**3


def model_shape(config: RunConfig) -> mf.Shape:
    """The base model's shape from its config alone (a cached hub model, or a local folder)."""
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(resolve_model_name(config.model.name),
                                              trust_remote_code=config.model.trust_remote_code)
    text = getattr(model_config, "text_config", None) or model_config  # multimodal configs nest the LM's
    return mf.Shape.of(text.to_dict())


def longest_sample(config: RunConfig, tokenizer: Any, dataset: wbdata.LoadedDataset) -> int:
    """The longest training sample in tokens, after truncation to max_seq_length."""
    d = config.data
    stats = wbdata.compute_stats(dataset, tokenizer, d.input_column, d.output_column, d.template, d.instruction,
                                 config.model.max_seq_length, d.train_on_responses_only)
    return min(int(stats.token_lengths.get("max", config.model.max_seq_length)), config.model.max_seq_length)


def free_memory() -> tuple[float | None, str]:
    """Free memory of the first GPU in GiB and its name; (None, "no NVIDIA GPU here") where NVML sees none
    (the GPU panel says why at length)."""
    gpus, _why = nvml_readings.sample_gpus()
    first = gpus[0] if gpus else None
    if first is None or first.memory_total is None or first.memory_used is None:
        return None, "no NVIDIA GPU here"
    return (first.memory_total - first.memory_used) / GIB, f"GPU {first.index} {first.name}"


def answer(config: RunConfig, shape: mf.Shape, longest: int, free_gib: float | None, gpu: str,
           gpus: list[Any] | None = None) -> rq.MemoryForecastAnswer:
    """`gpus`: NVML's snapshots, for checking a run on several GPUs (None: read them here)."""
    from workbench.distributed import check_gpus

    setting = mf.setting_for(config, [longest])
    forecast = mf.forecast(shape, setting)
    profiles = mf.profiles(shape, setting, free_gib) if free_gib is not None else []
    check = None
    if config.training.gpus != 1:
        check = check_gpus(config.training.gpus, nvml_readings.sample_gpus()[0] if gpus is None else gpus, forecast.total_gib)
    return rq.MemoryForecastAnswer(
        gpus_ok=check.ok if check else True, gpus_line=check.line if check else "",
        total_gib=forecast.total_gib, breakdown=forecast.breakdown(), verdict=forecast.verdict(free_gib),
        free_gib=free_gib, gpu=gpu, longest=longest,
        profiles=[rq.ProfileLine(name=p.name, why=p.why, micro_batch=p.setting.micro_batch,
                                 checkpointing=p.setting.checkpointing, total_gib=p.forecast.total_gib,
                                 packing=p.setting.packing, stream_layers=p.setting.stream_layers)
                  for p in profiles])
