"""Run under torchrun with gloo ranks: each rank hands `memory_events` a reading of its own (a CPU machine has
no GPU to read), and rank 0 prints the gathered events as JSON lines. Used by tests/unit/test_rank_memory.py."""

from __future__ import annotations

import os

import torch.distributed as dist

from workbench.engine.rank_memory import memory_events


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    reading = {"gpu_name": f"card-{rank}", "gpu_index": int(os.environ["LOCAL_RANK"]) + 2, "total_gib": 80.0,
               "reserved_before_gib": 5.0 + rank, "reserved_gib": 7.0, "peak_gib": 10.0 + rank, "lora_gib": 5.0}
    events = memory_events("run", "step", 5.0 + rank, reading=reading)
    if rank == 0:
        for event in events:
            print(event.model_dump_json())
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
