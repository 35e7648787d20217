"""The memory forecast's arithmetic on known shapes, and the measurements it must stay within 10% of
(H200, BENCHMARKS.md "Memory forecast": the 2B rows were not used to fit it)."""

from __future__ import annotations

import pytest

from workbench.memory_forecast import Forecast, Setting, Shape, computed_length, forecast, profiles

GEMMA2_9B = dict(hidden_size=3584, intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=256, vocab_size=256000)
GEMMA2_2B = dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=256, vocab_size=256000)
LONGEST = 1520  # the benchmark data's longest sample, in tokens


def test_weights_and_adapter_of_gemma2_9b() -> None:
    f = forecast(Shape.of(GEMMA2_9B), Setting(micro_batch=1, longest=256))
    embedding = 256000 * 3584
    matmul = 42 * (3584 * 4096 * 2 + 3584 * 2048 * 2 + 3 * 3584 * 14336)
    assert f.weights_gib == pytest.approx((matmul * 4.125 / 8 + (embedding + 42 * 4 * 3584) * 2) / 1024**3)
    lora = 42 * 16 * ((3584 + 4096) * 2 + (3584 + 2048) * 2 + (3584 + 14336) * 3)
    assert lora == 54_018_048
    assert f.adapter_gib == pytest.approx(lora * 10 / 1024**3)


def test_streamed_layers_leave_two_layers_and_the_quantization_state_on_the_gpu() -> None:
    shape = Shape.of(GEMMA2_9B)
    resident = forecast(shape, Setting(micro_batch=2, longest=LONGEST))
    streamed = forecast(shape, Setting(micro_batch=2, longest=LONGEST, stream_layers=True))
    matrices = 42 * (3584 * 4096 * 2 + 3584 * 2048 * 2 + 3 * 3584 * 14336)
    assert streamed.host_gib == pytest.approx(matrices * 0.5 / 1024**3)  # the packed 4-bit values
    assert resident.weights_gib - streamed.weights_gib == pytest.approx(streamed.host_gib * 40 / 42)
    assert streamed.activations_gib == resident.activations_gib and resident.host_gib == 0
    assert "host memory" in streamed.breakdown() and "host memory" not in resident.breakdown()
    bf16 = forecast(shape, Setting(load_in_4bit=False, stream_layers=True))
    assert bf16.host_gib == pytest.approx(matrices * 2 / 1024**3)
    generating = forecast(shape, Setting(micro_batch=2, longest=LONGEST, stream_layers=True, generates_mid_run=True))
    assert generating.weights_gib > resident.weights_gib  # every layer back for the eval, the slots beside them
    # without checkpointing the backward needs every layer at once: nothing streams (config refuses it too)
    assert forecast(shape, Setting(checkpointing="false", stream_layers=True)).host_gib == 0


def test_flex_pads_to_a_bucket_and_packed_rows_fill_max_seq_length() -> None:
    assert computed_length(Setting(longest=700)) == 1024
    assert computed_length(Setting(longest=700, attention="default")) == 700
    assert computed_length(Setting(longest=700, packing=True, max_seq_length=2048)) == 2048
    assert computed_length(Setting(longest=4000, max_seq_length=2048, attention="default")) == 2048


@pytest.mark.parametrize(("shape", "setting", "measured_gib"), [
    (GEMMA2_9B, Setting(micro_batch=8, longest=LONGEST), 8.99),
    (GEMMA2_9B, Setting(micro_batch=2, longest=LONGEST), 7.14),
    (GEMMA2_9B, Setting(micro_batch=16, longest=LONGEST), 11.38),
    (GEMMA2_9B, Setting(micro_batch=8, longest=LONGEST, packing=True), 9.68),
    (GEMMA2_9B, Setting(micro_batch=4, longest=LONGEST, checkpointing="false"), 40.36),
    (GEMMA2_9B, Setting(micro_batch=4, longest=LONGEST, checkpointing="false", packing=True), 51.1),
    (GEMMA2_9B, Setting(micro_batch=8, longest=LONGEST, checkpointing="false", packing=True), 95.35),
    # predicted before they ran (2026-12-02), the packed-logits term not fitted on them
    (GEMMA2_9B, Setting(micro_batch=2, longest=LONGEST, checkpointing="false", packing=True), 29.07),
    (GEMMA2_9B, Setting(micro_batch=6, longest=LONGEST, checkpointing="false", packing=True), 73.14),
    # layers streamed (lora.stream_layers), 2026-12-02; the packed-offloaded term was fitted on the two
    # unstreamed packed rows above, not on these
    (GEMMA2_9B, Setting(micro_batch=2, longest=LONGEST, packing=True, stream_layers=True), 3.62),
    (GEMMA2_9B, Setting(micro_batch=8, longest=LONGEST, packing=True, stream_layers=True), 5.99),
    (GEMMA2_9B, Setting(micro_batch=8, longest=LONGEST, attention="default"), 10.78),
    (GEMMA2_9B, Setting(micro_batch=2, longest=LONGEST, attention="default", checkpointing="false"), 33.85),
    (GEMMA2_2B, Setting(micro_batch=4, longest=LONGEST), 3.22),
    (GEMMA2_2B, Setting(micro_batch=16, longest=LONGEST), 5.37),
    (GEMMA2_2B, Setting(micro_batch=8, longest=LONGEST, packing=True), 4.39),
    (GEMMA2_2B, Setting(micro_batch=2, longest=LONGEST, checkpointing="false"), 9.21),
])
def test_within_ten_percent_of_what_the_h200_measured(shape: dict, setting: Setting, measured_gib: float) -> None:
    assert forecast(Shape.of(shape), setting).total_gib == pytest.approx(measured_gib, rel=0.10)


def test_verdicts() -> None:
    f = Forecast(weights_gib=6, adapter_gib=0.5, activations_gib=2, attention_gib=0, overhead_gib=0.5, tokens=1)
    assert f.verdict(None) == "forecast peak 9.0 GiB"
    assert f.verdict(80) == "forecast peak 9.0 GiB of 80.0 GiB free"
    assert f.verdict(9.5).endswith(": tight")
    assert f.verdict(8).endswith("out of memory expected")


def test_profiles_on_an_80_gib_card() -> None:
    shape = Shape.of(GEMMA2_9B)
    fits, fast = profiles(shape, Setting(micro_batch=2, longest=LONGEST), free_gib=79.0)
    assert fits.setting.checkpointing == "unsloth" and fits.setting.micro_batch == 2
    assert fits.setting.stream_layers and "streamed" in fits.why  # least memory
    assert fast.setting.checkpointing == "false" and not fast.setting.stream_layers
    assert fast.forecast.total_gib <= 0.9 * 79.0
    assert fits.setting.packing and fast.setting.packing  # flex keeps packed samples apart: both pack
    assert "packed" in fits.why and "packed" in fast.why
    from dataclasses import replace

    doubled = replace(fast.setting, micro_batch=fast.setting.micro_batch * 2)
    assert forecast(shape, doubled).total_gib > 0.9 * 79.0


def test_without_flex_the_profiles_do_not_pack() -> None:
    fits, _fast = profiles(Shape.of(GEMMA2_9B), Setting(micro_batch=2, longest=LONGEST, attention="default"),
                           free_gib=79.0)
    assert not fits.setting.packing and "packed" not in fits.why


def test_a_card_too_small_for_no_checkpointing_gets_a_larger_checkpointed_batch() -> None:
    _, fast = profiles(Shape.of(GEMMA2_9B), Setting(micro_batch=2, longest=LONGEST), free_gib=16.0)
    assert fast.setting.checkpointing == "unsloth" and fast.setting.micro_batch > 2
