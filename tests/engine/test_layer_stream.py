"""Layer streaming (`workbench.engine.layer_stream`, lora.stream_layers): the frozen weights of each decoder
layer wait in host memory and come back just before the layer runs.

On a stack of small layers with checkpointing (both of torch's kinds): the same losses and gradients as
the weights left in place, never more than two layers' weights present, every layer after the first
found already copied (prefetched) in the steady state, a use outside the layers' forward failing instead of
reading stale memory, `resident` and `close` putting everything back. Then the engine on the tiny Gemma-2:
a streamed run, with a generation eval mid-run (unsloth's decoding, which skips the layers' hooks), trains
to the same losses as one without.

The CUDA side (pinned memory, the copy stream and its events) runs on the GPU machine only
(`benchmarks/gpu_flex.py`, variants with `-stream`; BENCHMARKS.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tests import warm
from workbench.config import save_config
from workbench.engine import layer_stream

LAYERS, WIDTH = 6, 32


class TinyDecoderLayer(nn.Module):
    """A residual block with a frozen matrix and vector (as a base model's) and a LoRA-like update."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.proj = nn.Linear(WIDTH, WIDTH, bias=False)
        self.proj.weight.data = torch.randn(WIDTH, WIDTH, generator=gen) / WIDTH**0.5
        self.proj.weight.requires_grad_(False)
        self.norm = nn.Parameter(1 + 0.1 * torch.randn(WIDTH, generator=gen), requires_grad=False)
        self.lora_a = nn.Parameter(0.1 * torch.randn(4, WIDTH, generator=gen))
        self.lora_b = nn.Parameter(0.1 * torch.randn(WIDTH, 4, generator=gen))
        self.present: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.proj(x * self.norm) + x @ self.lora_a.T @ self.lora_b.T)


class Stack(nn.Module):
    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TinyDecoderLayer(seed) for seed in range(LAYERS))
        self.reentrant = reentrant
        self.most_present = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = checkpoint(self._counted(layer), x, use_reentrant=self.reentrant)
        return x

    def _counted(self, layer: nn.Module) -> Any:
        def run(x: torch.Tensor) -> torch.Tensor:
            present = sum(other.proj.weight.numel() > 0 for other in self.layers)
            self.most_present = max(self.most_present, present)
            return layer(x)

        return run


def train(stack: Stack, steps: int = 3) -> tuple[list[float], list[torch.Tensor]]:
    """Losses of a few optimizer steps on fixed data, and the last step's LoRA gradients."""
    torch.manual_seed(0)
    x = torch.randn(5, WIDTH, requires_grad=True)
    target = torch.randn(5, WIDTH)
    optimizer = torch.optim.SGD([p for p in stack.parameters() if p.requires_grad], lr=0.1)
    losses, grads = [], []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = ((stack(x) - target) ** 2).mean()
        loss.backward()
        grads = [p.grad.clone() for p in stack.parameters() if p.requires_grad] + [x.grad.clone()]
        optimizer.step()
        losses.append(loss.item())
    return losses, grads


@pytest.mark.parametrize("reentrant", [True, False])
def test_streamed_layers_train_exactly_as_resident_ones_with_two_present_at_most(reentrant: bool) -> None:
    reference_losses, reference_grads = train(Stack(reentrant))
    stack = Stack(reentrant)
    stream = layer_stream.install(stack)
    assert isinstance(stream, layer_stream.LayerStream)
    assert all(layer.proj.weight.numel() == 0 for layer in stack.layers)  # all in host memory
    assert all(layer.norm.numel() == WIDTH for layer in stack.layers)  # vectors stay

    losses, grads = train(stack)

    assert losses == reference_losses
    assert all(torch.equal(a, b) for a, b in zip(grads, reference_grads, strict=True))
    assert stack.most_present <= layer_stream.SLOTS
    # only the very first layer of the first step was not already copied when it ran
    assert stream.stats.misses == 1
    assert stream.stats.streamed_bytes == LAYERS * WIDTH * WIDTH * 4


def test_a_use_outside_the_layers_forward_fails_instead_of_reading_stale_memory() -> None:
    stack = Stack(reentrant=False)
    layer_stream.install(stack)
    train(stack, steps=1)
    with pytest.raises(RuntimeError):
        stack.layers[LAYERS // 2].proj(torch.randn(2, WIDTH))  # not in a slot: an empty weight


def test_resident_puts_every_layer_back_for_a_moment_and_training_goes_on_the_same() -> None:
    stack = Stack(reentrant=True)
    originals = [layer.proj.weight.detach().clone() for layer in stack.layers]
    layer_stream.install(stack)
    before, _ = train(stack, steps=1)
    with layer_stream.resident(stack):  # e.g. a generation eval mid-run
        assert all(torch.equal(layer.proj.weight, w) for layer, w in zip(stack.layers, originals, strict=True))
        stack.layers[3].proj(torch.randn(2, WIDTH))  # reads weights without the layer's hook: fine here
    assert all(layer.proj.weight.numel() == 0 for layer in stack.layers)
    after, _ = train(stack, steps=1)
    resident = Stack(reentrant=True)
    assert before + after == train(resident, steps=1)[0] + train(resident, steps=1)[0]


def test_close_leaves_an_ordinary_model() -> None:
    stack = Stack(reentrant=False)
    originals = [layer.proj.weight.detach().clone() for layer in stack.layers]
    stream = layer_stream.install(stack)
    train(stack, steps=1)
    layer_stream.close(stack)
    assert layer_stream.of(stack) is None and isinstance(stream, layer_stream.LayerStream) and stream.closed
    assert all(torch.equal(layer.proj.weight, w) for layer, w in zip(stack.layers, originals, strict=True))
    loads = stream.stats.loads
    train(stack, steps=1)
    assert stream.stats.loads == loads  # the hooks are gone


def test_not_on_several_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    stack = Stack(reentrant=False)
    why = layer_stream.install(stack)
    assert isinstance(why, str) and "several ranks" in why
    assert all(layer.proj.weight.numel() == WIDTH * WIDTH for layer in stack.layers)


# -- the engine on the tiny Gemma-2 ----------------------------------------------------------------------------

def losses_of(run_dir: Path) -> list[float]:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e["loss"] for e in events if e.get("event") == "log" and e.get("loss") is not None]


@pytest.mark.engine
def test_a_streamed_run_trains_as_one_without_and_evaluates_mid_run(demo_config: Any, tmp_path: Path) -> None:
    demo_config.model.load_in_4bit = True  # bitsandbytes' packed 4-bit weights, where the CPU runs them
    demo_config.eval.generate_steps = 2  # unsloth's decoding mid-run, on the streamed model
    demo_config.eval.generate_rows = 2
    demo_config.eval.max_new_tokens = 8
    demo_config.data.max_rows = 16
    runs = {}
    for streamed in (False, True):
        demo_config.lora.stream_layers = streamed
        path = tmp_path / f"{streamed}.toml"
        save_config(demo_config, path)
        run_dir = tmp_path / "runs" / f"streamed-{streamed}"
        proc = warm.run("train", "--config", str(path), "--run-dir", str(run_dir), "--max-steps", "3", timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs[streamed] = run_dir
    log = (runs[True] / "events.jsonl").read_text()
    assert "Layer streaming: " in log and "two layers on the device at a time" in log
    assert "Layer streaming" not in (runs[False] / "events.jsonl").read_text()
    assert '"event":"gen_eval"' in log  # the mid-run summaries ran on the streamed model
    assert losses_of(runs[True]) == losses_of(runs[False]) and len(losses_of(runs[True])) == 3
    assert (runs[True] / "adapter" / "adapter_model.safetensors").exists()
