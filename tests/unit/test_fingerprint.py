"""The template fingerprint catches a changed template, a changed EOS and a changed vocabulary, and says
what differs; equal prompt formats give equal fingerprints."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from workbench.engine.tiny import build_tokenizer
from workbench.fingerprint import TemplateFingerprint, load, save
from workbench.templates import chat_template_jinja


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer(["राम कल बाज़ार जाएगा", "सीता सुबह 10 बजे"] * 20, vocab_size=300)


def test_the_same_tokenizer_gives_the_same_fingerprint(tokenizer: Any, tmp_path) -> None:
    first, second = TemplateFingerprint.of(tokenizer), TemplateFingerprint.of(copy.deepcopy(tokenizer))
    assert first == second and first.differences(second) == []
    save(first, tmp_path)
    assert load(tmp_path) == first


def test_a_changed_template_is_named(tokenizer: Any) -> None:
    gemma = TemplateFingerprint.of(tokenizer)
    instruction = TemplateFingerprint.of(tokenizer, chat_template_jinja("instruction", "सारांश लिखिए।"))
    found = gemma.differences(instruction, "the run", "the export")
    assert len(found) == 1 and found[0].startswith("the templates render the same conversation differently")
    with_system = "{% for m in messages %}<start_of_turn>{{ 'system' if loop.first else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    assert "the export's template adds a system turn" in gemma.differences(
        TemplateFingerprint.of(tokenizer, with_system), "the run", "the export")


def test_a_changed_eos_is_named(tokenizer: Any) -> None:
    mine = TemplateFingerprint.of(tokenizer)
    other = copy.deepcopy(tokenizer)
    other.eos_token = "<end_of_turn>"
    theirs = TemplateFingerprint.of(other)
    eos, eot = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert f"EOS id {eos} in the run vs {eot} in this one" in mine.differences(theirs)


def test_a_changed_vocabulary_is_named(tokenizer: Any) -> None:
    other = build_tokenizer(["a different corpus entirely", "with other words"] * 20, vocab_size=300)
    found = TemplateFingerprint.of(tokenizer).differences(TemplateFingerprint.of(other))
    assert any("vocabulary" in f for f in found)
