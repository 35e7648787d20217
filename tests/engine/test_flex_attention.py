"""The Gemma-2 FlexAttention path against an fp32 reference written out by hand (scores, soft-cap, mask,
softmax): right and left padding, packed samples, a sliding window, grouped-query heads.

On the CPU, torch's FlexAttention runs forward only (it has no CPU backward), so outputs are checked for
flex itself and gradients for the CPU training path (the same mask, scores materialized). The compiled
CUDA kernel's gradients are checked on the GPU machine (`benchmarks/gpu_flex.py`, BENCHMARKS.md).
"""

from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")

from workbench.engine import flex_attention as fa  # noqa: E402
from workbench.packing import bucket  # noqa: E402

HEADS, KV_HEADS, DIM = 4, 2, 16
SCALE, CAP = 16 ** -0.5, 5.0  # a small cap so that the soft-capping bites on these scores


def reference(q, k, v, documents, window):
    """Plain fp32 attention: each query sees the earlier keys of its own sample (and window of them)."""
    q, k, v = q.double(), k.double(), v.double()
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scores = q @ k.transpose(-1, -2) * SCALE
    scores = CAP * torch.tanh(scores / CAP)
    length = q.shape[-2]
    idx = torch.arange(length)
    allowed = (idx[:, None] >= idx[None, :])
    if window is not None:
        allowed = allowed & (idx[:, None] - idx[None, :] < window)
    allowed = allowed[None] & (documents[:, :, None] == documents[:, None, :])
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    return torch.softmax(scores, -1) @ v


def qkv(batch, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, HEADS, length, DIM, generator=g) * 3
    k = torch.randn(batch, KV_HEADS, length, DIM, generator=g) * 3
    v = torch.randn(batch, KV_HEADS, length, DIM, generator=g)
    return q, k, v


def layouts():
    length = 24
    right = torch.tensor([[1] * 24, [1] * 17 + [0] * 7])
    left = torch.tensor([[1] * 24, [0] * 9 + [1] * 15])
    packed_positions = torch.tensor([list(range(10)) + list(range(8)) + list(range(6)),
                                     list(range(20)) + [0] * 4])
    packed_mask = torch.tensor([[1] * 24, [1] * 20 + [0] * 4])
    return {
        "right padding": (right, None, length),
        "left padding": (left, None, length),
        "packed samples": (packed_mask, packed_positions, length),
    }


def test_document_ids_mark_samples_and_padding():
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    positions = torch.tensor([[0, 1, 2, 3, 0, 0], [1, 1, 0, 1, 2, 3], [0, 1, 0, 1, 2, 0]])
    docs = fa.document_ids(mask, positions, 3, 6, "cpu")
    assert docs.tolist() == [[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 1, 2, 2, 2, 0]]
    assert fa.document_ids(None, None, 1, 4, "cpu").tolist() == [[1, 1, 1, 1]]


@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize("layout", ["right padding", "left padding", "packed samples"])
def test_flex_forward_matches_the_reference(layout, window):
    mask, positions, length = layouts()[layout]
    q, k, v = qkv(2, length)
    state = fa.FlexState(documents=fa.document_ids(mask, positions, 2, length, "cpu"))
    with torch.no_grad():
        out = fa.flex_softcap_attention(q, k, v, state, SCALE, CAP, window)
    want = reference(q, k, v, state.documents, window)
    real = mask.bool()[:, None, :, None]  # padding's own outputs are never used
    assert torch.allclose(out.double() * real, want * real, atol=1e-5), (out.double() - want).abs().max()
    assert state.calls == 1


@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize("layout", ["right padding", "left padding", "packed samples"])
def test_cpu_training_path_gradients_match_the_reference(layout, window):
    mask, positions, length = layouts()[layout]
    q0, k0, v0 = qkv(2, length, seed=1)
    documents = fa.document_ids(mask, positions, 2, length, "cpu")
    grad_out = torch.randn(2, HEADS, length, DIM, generator=torch.Generator().manual_seed(2))
    grad_out = grad_out * mask.bool()[:, None, :, None]  # the loss never reads padding

    def grads(fn):
        q, k, v = (t.clone().double().requires_grad_() for t in (q0, k0, v0))
        fn(q, k, v).backward(grad_out.double())
        return q.grad, k.grad, v.grad

    state = fa.FlexState(documents=documents)
    got = grads(lambda q, k, v: fa.flex_softcap_attention(q, k, v, state, SCALE, CAP, window))
    want = grads(lambda q, k, v: reference(q, k, v, documents, window))
    for name, a, b in zip("qkv", got, want, strict=True):
        assert torch.allclose(a, b, atol=1e-9), f"d{name}: {(a - b).abs().max()}"


def test_a_real_query_never_sees_padding_or_another_sample():
    mask, positions, length = layouts()["packed samples"]
    q, k, v = qkv(2, length)
    state = fa.FlexState(documents=fa.document_ids(mask, positions, 2, length, "cpu"))
    with torch.no_grad():
        before = fa.flex_softcap_attention(q, k, v, state, SCALE, CAP, None)
        v2 = v.clone()
        v2[0, :, 10:] += 100.0  # the second and third samples of row 0, the padding of row 1
        v2[1, :, 20:] += 100.0
        state.masks.clear()
        after = fa.flex_softcap_attention(q, k, v2, state, SCALE, CAP, None)
    assert torch.equal(before[0, :, :10], after[0, :, :10])  # the first sample is blind to the others
    assert torch.equal(before[1, :, :20], after[1, :, :20])  # real tokens are blind to padding


def test_sliding_window_reaching_past_the_sequence_is_the_global_mask():
    mask, positions, length = layouts()["right padding"]
    state = fa.FlexState(documents=fa.document_ids(mask, positions, 2, length, "cpu"))
    fa.block_mask(state, length, 4096, "cpu")
    fa.block_mask(state, length, None, "cpu")
    assert list(state.masks) == [(2, length, None)]


class _Module:
    def __init__(self, index, layer_types=None, window=4096):
        self.layer_idx = index
        self.config = type("Config", (), {"sliding_window": window, "layer_types": layer_types})()


def test_sliding_layers_follow_the_config():
    assert fa.sliding_window_of(_Module(0)) == 4096  # Gemma-2: even layers slide
    assert fa.sliding_window_of(_Module(1)) is None
    types = ["full_attention", "sliding_attention"]
    assert fa.sliding_window_of(_Module(0, types)) is None
    assert fa.sliding_window_of(_Module(1, types)) == 4096
    assert fa.sliding_window_of(_Module(1, types, window=None)) is None


def unsloth_gemma2(function, flash=False):
    """A stand-in for unsloth.models.gemma2 (importing unsloth here would patch transformers for every later
    test in this process); the real module is patched in test_packing.py's subprocess and on the GPU."""
    module = types.ModuleType("unsloth.models.gemma2")
    if function is not None:
        module.slow_attention_softcapping = function
    module.HAS_FLASH_ATTENTION_SOFTCAPPING = flash
    return module


def test_the_unsloth_patch_refuses_a_target_that_is_gone():
    why = fa.patch_unsloth(unsloth_gemma2(None))
    assert why is not None and "slow_attention_softcapping" in why


def test_the_unsloth_patch_refuses_another_signature():
    module = unsloth_gemma2(lambda query, key, value, mask: None)
    why = fa.patch_unsloth(module)
    assert why is not None and "takes (query, key, value, mask)" in why
    assert not getattr(module.slow_attention_softcapping, "workbench_flex", False)


def test_flash_attn_keeps_unsloths_flash_path():
    why = fa.patch_unsloth(unsloth_gemma2(lambda Q, K, V, causal_mask, self, bsz, kv_len: None, flash=True))
    assert why is not None and "flash-attn" in why


def test_the_unsloth_patch_dispatches_only_what_it_can_serve():
    seen = []

    def original(Q, K, V, causal_mask, self, bsz, kv_len):
        seen.append(kv_len)
        return "unsloth's own"

    module = unsloth_gemma2(original)
    assert fa.patch_unsloth(module) is None
    patched = module.slow_attention_softcapping
    assert patched.workbench_flex and patched.original is original
    assert fa.patch_unsloth(module) is None and module.slow_attention_softcapping is patched  # once only

    class Attention(torch.nn.Module):
        layer_idx = 1
        config = type("Config", (), {"query_pre_attn_scalar": 16, "attn_logit_softcapping": CAP,
                                     "sliding_window": None, "layer_types": None})()

    attention = Attention()
    q, k, v = qkv(2, 24)
    assert patched(q, k, v, None, attention, 2, 24) == "unsloth's own"  # no state: another model
    mask, positions, _ = layouts()["right padding"]
    attention.__dict__["_workbench_flex"] = fa.FlexState(documents=fa.document_ids(mask, positions, 2, 24, "cpu"))
    attention.eval()
    assert patched(q, k, v, None, attention, 2, 24) == "unsloth's own"  # eval keeps unsloth's path
    attention.train()
    with torch.no_grad():
        out = patched(q, k, v, None, attention, 2, 24)
    assert out.shape == (2, 24, HEADS * DIM)
    assert seen == [24, 24]


def test_cuda_lengths_are_padded_to_a_few_buckets():
    assert [bucket(n) for n in (1, 256, 257, 700, 1400, 2048, 2049)] == [256, 256, 512, 1024, 2048, 2048, 4096]
