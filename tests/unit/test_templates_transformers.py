"""The saved chat template through transformers' own `apply_chat_template`, on a real fast tokenizer
(the tiny model's, built without a model in a second or so): it renders, and tokenizes, exactly what
is trained on, for any instruction, also after a save and reload like the one beside an adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.templates import (
    TEMPLATE_NAMES,
    Message,
    chat_template_jinja,
    render,
    render_messages,
    render_prompt,
    with_instruction,
)

pytest.importorskip("transformers")

INSTRUCTION = "बातचीत पढ़िए।\n\nफिर 'एक' वाक्य में {{ सारांश }} लिखिए: {% raw %} \\n"
CONVERSATION = "माँ: आज शाम को मौसी आ रही हैं।\nरिया: ठीक है माँ।"
SUMMARY = "मौसी आज शाम आएँगी।"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from workbench.engine.tiny import build_tokenizer

    return build_tokenizer([CONVERSATION, SUMMARY, INSTRUCTION, "### बातचीत:", "### सारांश:"] * 5)


def _apply(tok: Any, template: str, instruction: str, messages: list[Message], **kwargs: Any) -> Any:
    return tok.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages],
        chat_template=chat_template_jinja(template, instruction),
        **kwargs,
    )


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_apply_chat_template_renders_and_tokenizes_what_is_trained(tokenizer: Any, template: str) -> None:
    trained = render(template, INSTRUCTION, CONVERSATION, SUMMARY)
    exchange = [Message("user", CONVERSATION), Message("assistant", SUMMARY)]
    assert _apply(tokenizer, template, INSTRUCTION, exchange, tokenize=False) == trained.text
    prompt = _apply(tokenizer, template, INSTRUCTION, exchange[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == trained.prompt == render_prompt(template, INSTRUCTION, CONVERSATION)
    ids = _apply(tokenizer, template, INSTRUCTION, exchange, tokenize=True, return_dict=True)["input_ids"]
    assert list(ids) == tokenizer(trained.text, add_special_tokens=False)["input_ids"]


def test_apply_chat_template_multi_turn_with_system(tokenizer: Any) -> None:
    messages = [Message("system", "छोटे जवाब दो।"), Message("user", "नमस्ते"), Message("assistant", "नमस्ते!"),
                Message("user", "कैसे हो?"), Message("assistant", "ठीक हूँ।")]
    expected = render_messages("gemma_chat", messages).text
    assert _apply(tokenizer, "gemma_chat", INSTRUCTION, messages, tokenize=False) == expected


def test_saved_and_reloaded_template_still_matches(tokenizer: Any, tmp_path: Path) -> None:
    # What engine/export.py does: the tokenizer saves its own template, then chat_template.jinja is
    # written over it; a tool that loads the folder must get the run's template.
    from transformers import AutoTokenizer

    for template in TEMPLATE_NAMES:
        folder = tmp_path / template
        tokenizer.save_pretrained(str(folder))
        (folder / "chat_template.jinja").write_text(chat_template_jinja(template, INSTRUCTION), encoding="utf-8")
        loaded = AutoTokenizer.from_pretrained(str(folder))
        messages = [{"role": "user", "content": CONVERSATION}]
        text = loaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert text == render_prompt(template, INSTRUCTION, CONVERSATION)


nasty = st.lists(
    st.one_of(st.sampled_from(["\n\n", "'", '"', "{{", "}}", "{%", "%}", "\\", "\\n", "\r\n", "\t", " "]),
              st.text(max_size=6)),
    max_size=6,
).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(template=st.sampled_from(TEMPLATE_NAMES), instruction=nasty, conversation=nasty, summary=nasty)
def test_apply_chat_template_matches_for_any_instruction(
    tokenizer: Any, template: str, instruction: str, conversation: str, summary: str
) -> None:
    messages = [Message("user", conversation), Message("assistant", summary)]
    expected = render_messages(template, with_instruction(instruction, messages)).text
    assert _apply(tokenizer, template, instruction, messages, tokenize=False) == expected
