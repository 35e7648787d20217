"""The trainer's memory report from every rank: each process reads its own GPU (torch.cuda, the device the
rank trains on), and the readings are gathered so that rank 0, which alone writes events, reports one
`Memory` per rank. On one process it is one reading and no collective.

Every rank must call `memory_events` at the same point (it is a collective under torchrun); the callers are
the step reporter's logging step and the run's start and end, which every rank passes."""

from __future__ import annotations

import os
from typing import Any, Literal

from workbench import distributed
from workbench.protocol import Memory

GIB = 1024**3

Reading = dict[str, Any]
"""One rank's reading: Memory's fields without run, phase and rank."""


def visible_gpu(local_index: int) -> int | None:
    """The NVML index of this process's CUDA device `local_index`: CUDA_VISIBLE_DEVICES renumbers the GPUs a
    rank sees (the launcher gives a run's ranks the GPUs it asked for). None when it names GPUs by UUID."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return local_index
    ids = [part.strip() for part in visible.split(",") if part.strip()]
    if local_index >= len(ids) or not ids[local_index].isdigit():
        return None
    return int(ids[local_index])


def local_reading(before_gib: float) -> Reading:
    """This rank's GPU: its name and size, reserved now, the peak, and what training took beyond `before_gib`."""
    import torch

    local = distributed.current().local_rank
    index = local if local < torch.cuda.device_count() else 0  # cuda:LOCAL_RANK, as unsloth places each rank
    device = torch.device("cuda", index)
    props = torch.cuda.get_device_properties(device)
    peak = torch.cuda.max_memory_reserved(device) / GIB
    return {
        "gpu_name": props.name,
        "gpu_index": visible_gpu(index),
        "total_gib": round(props.total_memory / GIB, 3),
        "reserved_before_gib": round(before_gib, 3),
        "reserved_gib": round(torch.cuda.memory_reserved(device) / GIB, 3),
        "peak_gib": round(peak, 3),
        "lora_gib": round(max(0.0, peak - before_gib), 3),
    }


def gathered(reading: Reading) -> list[Reading]:
    """Every rank's reading, in rank order (all_gather_object: gloo or NCCL alike); this one alone without a
    process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [reading]
    readings: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(readings, reading)
    return readings


def memory_events(run_name: str, phase: Literal["before", "step", "after"], before_gib: float,
                  reading: Reading | None = None) -> list[Memory]:
    """One Memory per rank (CUDA only). `reading` replaces this rank's own GPU reading (tests without a GPU)."""
    readings = gathered(reading if reading is not None else local_reading(before_gib))
    return [Memory(run=run_name, phase=phase, rank=rank, ranks=len(readings), **r) for rank, r in enumerate(readings)]
