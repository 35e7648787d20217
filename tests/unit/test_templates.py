"""workbench.templates: exact rendering of both prompt templates, and agreement with the Jinja templates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workbench.templates import (
    BOS,
    END_OF_TURN,
    EOS,
    GEMMA_CHAT_JINJA,
    INSTRUCTION_JINJA,
    TEMPLATE_NAMES,
    RenderedSample,
    chat_template_jinja,
    render,
    render_prompt,
    render_response,
    stop_strings,
)

INSTRUCTION = "नीचे दी गई बातचीत का हिंदी में संक्षिप्त सारांश लिखिए।"
CONVERSATION = "माँ: आज शाम को मौसी आ रही हैं।\nरिया: ठीक है माँ, मैं 5 बजे तक कर दूँगी।"
SUMMARY = "रिया शाम 5 बजे तक घर साफ़ करेगी।"


def test_instruction_template_exact_text() -> None:
    r = render("instruction", INSTRUCTION, CONVERSATION, SUMMARY)
    assert r.prompt == f"<bos>{INSTRUCTION}\n\n### बातचीत:\n{CONVERSATION}\n\n### सारांश:\n"
    assert r.response == f"{SUMMARY}<eos>"
    assert r.text == (
        "<bos>नीचे दी गई बातचीत का हिंदी में संक्षिप्त सारांश लिखिए।\n\n"
        "### बातचीत:\n"
        "माँ: आज शाम को मौसी आ रही हैं।\nरिया: ठीक है माँ, मैं 5 बजे तक कर दूँगी।\n\n"
        "### सारांश:\n"
        "रिया शाम 5 बजे तक घर साफ़ करेगी।<eos>"
    )


def test_gemma_chat_template_exact_text() -> None:
    r = render("gemma_chat", INSTRUCTION, CONVERSATION, SUMMARY)
    assert r.prompt == (
        f"<bos><start_of_turn>user\n{INSTRUCTION}\n\n{CONVERSATION}<end_of_turn>\n<start_of_turn>model\n"
    )
    assert r.response == f"{SUMMARY}<end_of_turn>\n"
    assert r.text == r.prompt + r.response


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_one_bos_at_the_start_and_prompt_plus_response_is_text(template: str) -> None:
    r = render(template, INSTRUCTION, CONVERSATION, SUMMARY)
    assert isinstance(r, RenderedSample)
    assert r.text.startswith(BOS)
    assert r.text.count(BOS) == 1
    assert r.text == r.prompt + r.response
    assert r.prompt == render_prompt(template, INSTRUCTION, CONVERSATION)
    assert r.response == render_response(template, SUMMARY)


def test_whitespace_is_stripped() -> None:
    r = render("instruction", "  निर्देश \n", "\n\n  अ: नमस्ते \n", "\t सारांश  \n")
    assert r.prompt == "<bos>निर्देश\n\n### बातचीत:\nअ: नमस्ते\n\n### सारांश:\n"
    assert r.response == "सारांश<eos>"
    g = render("gemma_chat", "  निर्देश \n", "\n\n  अ: नमस्ते \n", "\t सारांश  \n")
    assert g.prompt == "<bos><start_of_turn>user\nनिर्देश \n\n\n\n\n  अ: नमस्ते<end_of_turn>\n<start_of_turn>model\n"
    assert g.response == "सारांश<end_of_turn>\n"


def test_gemma_chat_without_instruction_is_the_conversation_alone() -> None:
    assert render_prompt("gemma_chat", "   ", " बातचीत ") == (
        "<bos><start_of_turn>user\nबातचीत<end_of_turn>\n<start_of_turn>model\n"
    )


def test_custom_bos_and_eos() -> None:
    r = render("instruction", "i", "c", "s", bos="[B]", eos="[E]")
    assert r.text == "[B]i\n\n### बातचीत:\nc\n\n### सारांश:\ns[E]"
    g = render("gemma_chat", "i", "c", "s", bos="[B]", eos="[E]")
    assert g.text.startswith("[B]<start_of_turn>")
    assert "[E]" not in g.text


@settings(max_examples=100, deadline=None)
@given(
    template=st.sampled_from(TEMPLATE_NAMES),
    instruction=st.text(max_size=30),
    conversation=st.text(max_size=60),
    summary=st.text(max_size=30),
)
def test_render_prompt_is_the_prompt_part_of_render(template: str, instruction: str, conversation: str, summary: str) -> None:
    r = render(template, instruction, conversation, summary)
    assert render_prompt(template, instruction, conversation) == r.prompt
    assert r.text == r.prompt + r.response
    assert r.text.startswith(BOS)
    assert r.response.endswith(END_OF_TURN + "\n" if template == "gemma_chat" else EOS)


@pytest.mark.parametrize("fn", [lambda: render("chatml", "i", "c", "s"), lambda: render_prompt("", "i", "c"),
                                lambda: render_response("Gemma_Chat", "s")])
def test_unknown_template_raises_value_error(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown template"):
        fn()


def test_stop_strings_and_jinja_choice() -> None:
    assert stop_strings("gemma_chat") == ("<end_of_turn>", "<eos>")
    assert stop_strings("instruction") == ("<eos>",)
    assert chat_template_jinja("gemma_chat") == GEMMA_CHAT_JINJA
    assert chat_template_jinja("instruction") == INSTRUCTION_JINJA


# ------------------------------------------------------------------------------------------- Jinja

def _raise(message: str) -> None:
    raise TemplateError(message)


# the environment transformers' apply_chat_template uses
_ENV = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
_ENV.globals["raise_exception"] = _raise
_GEMMA = _ENV.from_string(GEMMA_CHAT_JINJA)
_INSTRUCTION = _ENV.from_string(INSTRUCTION_JINJA)


def _gemma_jinja(instruction: str, conversation: str, summary: str | None, add_generation_prompt: bool = False) -> str:
    messages = [{"role": "user", "content": instruction + "\n\n" + conversation}]
    if summary is not None:
        messages.append({"role": "assistant", "content": summary})
    return _GEMMA.render(messages=messages, bos_token="<bos>", add_generation_prompt=add_generation_prompt)


def _instruction_jinja(instruction: str, conversation: str, summary: str) -> str:
    messages = [
        {"role": "user", "content": instruction + "\n\n" + conversation},
        {"role": "assistant", "content": summary},
    ]
    return _INSTRUCTION.render(messages=messages, bos_token="<bos>", eos_token="<eos>")


def test_gemma_jinja_matches_render_on_the_recipe() -> None:
    expected = render("gemma_chat", INSTRUCTION, CONVERSATION, SUMMARY)
    assert _gemma_jinja(INSTRUCTION, CONVERSATION, SUMMARY) == expected.text
    assert _gemma_jinja(INSTRUCTION, CONVERSATION, None, add_generation_prompt=True) == expected.prompt


def test_gemma_jinja_matches_render_with_edge_whitespace() -> None:
    instruction, conversation, summary = "  \n निर्देश\t", "\n अ: हाँ \r\n\n", " \u3000सारांश \n\n"
    assert _gemma_jinja(instruction, conversation, summary) == render(
        "gemma_chat", instruction, conversation, summary
    ).text


def test_gemma_jinja_rejects_system_role() -> None:
    with pytest.raises(TemplateError):
        _GEMMA.render(messages=[{"role": "system", "content": "x"}], bos_token="<bos>")


whitespace = st.sampled_from([" ", "\n", "\t", "\r\n", "\u3000", "\u00a0", "\u2028", ""])
padded = st.builds(lambda a, s, b: a + s + b, st.lists(whitespace, max_size=3).map("".join),
                   st.text(max_size=40), st.lists(whitespace, max_size=3).map("".join))


@settings(max_examples=300, deadline=None)
@given(instruction=padded.filter(lambda s: bool(s.strip())), conversation=padded, summary=padded)
def test_gemma_jinja_matches_render_byte_for_byte(instruction: str, conversation: str, summary: str) -> None:
    assert _gemma_jinja(instruction, conversation, summary) == render(
        "gemma_chat", instruction, conversation, summary
    ).text


@settings(max_examples=200, deadline=None)
@given(
    instruction=padded.filter(lambda s: "\n\n" not in s),
    conversation=padded,
    summary=padded,
)
def test_instruction_jinja_matches_render_for_one_paragraph_instructions(
    instruction: str, conversation: str, summary: str
) -> None:
    assert _instruction_jinja(instruction, conversation, summary) == render(
        "instruction", instruction, conversation, summary
    ).text


@pytest.mark.xfail(
    reason="BUG: INSTRUCTION_JINJA splits the user message at its first blank line, so an instruction that "
    "itself holds a blank line renders differently from templates.render (the text trained on)",
    strict=True,
)
def test_instruction_jinja_matches_render_for_multi_paragraph_instruction() -> None:
    instruction = "बातचीत पढ़िए।\n\nफिर एक वाक्य में सारांश लिखिए।"
    assert _instruction_jinja(instruction, CONVERSATION, SUMMARY) == render(
        "instruction", instruction, CONVERSATION, SUMMARY
    ).text
