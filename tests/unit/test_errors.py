"""What the user is told about a CUDA out-of-memory error: the sizes and what to change, not torch's
paragraph about allocator settings. Real message text from an H200 run (benchmarks/gpu_oom.py)."""

from __future__ import annotations

from workbench.engine.errors import explain

TORCH_MESSAGE = (
    "CUDA out of memory. Tried to allocate 1.06 GiB. GPU 0 has a total capacity of 139.80 GiB of which "
    "129.11 GiB is free. Including non-PyTorch memory, this process has 10.66 GiB memory in use. 10.00 GiB "
    "allowed; Of the allocated memory 9.62 GiB is allocated by PyTorch, and 42.99 MiB is reserved by PyTorch "
    "but unallocated. If reserved but unallocated memory is large try setting "
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.")


class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError's name, without importing torch
    pass


def test_oom_names_sizes_and_the_fix_not_the_allocator_paragraph() -> None:
    why = explain(OutOfMemoryError(TORCH_MESSAGE), batch=16, accum=1, seq=2048)
    assert why.type == "oom"
    assert "micro-batch 16 x accumulation 1, max_seq_length 2048" in why.message
    assert "tried to allocate 1.06 GiB" in why.message
    assert "PYTORCH_CUDA_ALLOC_CONF" not in why.message and "expandable_segments" not in why.message
    assert "auto_retry_oom" in why.hint


def test_oom_without_a_size_keeps_the_first_sentence() -> None:
    why = explain(OutOfMemoryError("CUDA out of memory. Something else entirely."), batch=2)
    assert "CUDA out of memory" in why.message and "Something else" not in why.message
