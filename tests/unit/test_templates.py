"""workbench.templates: exact rendering of both prompt templates (two-column and chat turns), and
agreement with the Jinja chat templates saved beside adapters."""

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
    TEMPLATE_NAMES,
    Message,
    RenderedSample,
    Segment,
    chat_template_jinja,
    jinja_string,
    render,
    render_messages,
    render_prompt,
    render_response,
    with_instruction,
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


# ------------------------------------------------------------------------------------- chat turns

SYSTEM = "तुम एक सहायक हो।\n\nछोटे जवाब दो।"
TURNS = [
    Message("user", "नमस्ते! आज मौसम कैसा है?"),
    Message("assistant", "आज धूप है।"),
    Message("user", " और कल? "),
    Message("assistant", "कल बारिश होगी।\n"),
]


def test_gemma_multi_turn_segments() -> None:
    r = render_messages("gemma_chat", [Message("system", SYSTEM), *TURNS])
    assert r.segments == (
        Segment(f"<bos><start_of_turn>user\n{SYSTEM}\n\nनमस्ते! आज मौसम कैसा है?<end_of_turn>\n"
                "<start_of_turn>model\n", False),
        Segment("आज धूप है।<end_of_turn>\n", True),
        Segment("<start_of_turn>user\nऔर कल?<end_of_turn>\n<start_of_turn>model\n", False),
        Segment("कल बारिश होगी।<end_of_turn>\n", True),
    )
    spans = r.trained_spans
    assert [r.text[a:b] for a, b in spans] == ["आज धूप है।<end_of_turn>\n", "कल बारिश होगी।<end_of_turn>\n"]
    assert r.prompt == r.segments[0].text and r.text == r.prompt + r.response


def test_a_trailing_user_turn_ends_with_the_generation_prompt() -> None:
    r = render_messages("gemma_chat", TURNS[:3])
    assert r.text.endswith("<start_of_turn>user\nऔर कल?<end_of_turn>\n<start_of_turn>model\n")
    assert not r.segments[-1].trained


def test_system_turn_wins_over_the_instruction() -> None:
    own = [Message("system", "अपना निर्देश"), *TURNS[:2]]
    assert with_instruction("रन का निर्देश", own) == own
    assert with_instruction("रन का निर्देश", TURNS[:2]) == [Message("system", "रन का निर्देश"), *TURNS[:2]]
    assert with_instruction("  \n", TURNS[:2]) == TURNS[:2]
    r = render_messages("instruction", own)
    assert r.prompt.startswith("<bos>अपना निर्देश\n\n### बातचीत:\n")


def test_two_columns_and_one_chat_exchange_render_the_same() -> None:
    for template in TEMPLATE_NAMES:
        chat = render_messages(template, [Message("system", INSTRUCTION), Message("user", CONVERSATION),
                                          Message("assistant", SUMMARY)])
        assert chat == render(template, INSTRUCTION, CONVERSATION, SUMMARY)


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [Message("system", "s")],
        [Message("assistant", "a")],
        [Message("user", "u"), Message("user", "u")],
        [Message("user", "u"), Message("system", "s")],
        [Message("user", "u"), Message("assistant", "a"), Message("assistant", "a")],
    ],
)
@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_bad_turn_order_raises_value_error(template: str, messages: list[Message]) -> None:
    with pytest.raises(ValueError):
        render_messages(template, messages)


def test_instruction_template_refuses_multi_turn() -> None:
    with pytest.raises(ValueError, match="gemma_chat"):
        render_messages("instruction", TURNS)


# ------------------------------------------------------------------------------------------- Jinja

def _raise(message: str) -> None:
    raise TemplateError(message)


# the environment transformers' apply_chat_template uses
_ENV = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
_ENV.globals["raise_exception"] = _raise
_GEMMA_OWN = _ENV.from_string(GEMMA_CHAT_JINJA)


def _jinja(template: str, instruction: str, messages: list[Message], add_generation_prompt: bool = False) -> str:
    compiled = _ENV.from_string(chat_template_jinja(template, instruction))
    return compiled.render(messages=[{"role": m.role, "content": m.content} for m in messages],
                           bos_token="<bos>", eos_token="<eos>", add_generation_prompt=add_generation_prompt)


def _exchange(conversation: str, summary: str | None) -> list[Message]:
    return [Message("user", conversation)] + ([Message("assistant", summary)] if summary is not None else [])


def test_jinja_matches_render_on_the_recipe() -> None:
    for template in TEMPLATE_NAMES:
        expected = render(template, INSTRUCTION, CONVERSATION, SUMMARY)
        assert _jinja(template, INSTRUCTION, _exchange(CONVERSATION, SUMMARY)) == expected.text
        prompt = _jinja(template, INSTRUCTION, _exchange(CONVERSATION, None), add_generation_prompt=True)
        assert prompt == expected.prompt == render_prompt(template, INSTRUCTION, CONVERSATION)


def test_gemma_jinja_matches_render_with_edge_whitespace() -> None:
    instruction, conversation, summary = "  \n निर्देश\t", "\n अ: हाँ \r\n\n", " \u3000सारांश \n\n"
    assert _jinja("gemma_chat", instruction, _exchange(conversation, summary)) == render(
        "gemma_chat", instruction, conversation, summary
    ).text


def test_gemmas_own_template_matches_render_with_the_instruction_in_the_user_message() -> None:
    # The base model's template (the tiny tokenizer carries it) agrees when a caller merges by hand.
    expected = render("gemma_chat", INSTRUCTION, CONVERSATION, SUMMARY)
    messages = [{"role": "user", "content": INSTRUCTION + "\n\n" + CONVERSATION}, {"role": "assistant", "content": SUMMARY}]
    assert _GEMMA_OWN.render(messages=messages, bos_token="<bos>") == expected.text


def test_gemmas_own_template_rejects_system_role() -> None:
    with pytest.raises(TemplateError):
        _GEMMA_OWN.render(messages=[{"role": "system", "content": "x"}], bos_token="<bos>")


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_jinja_rejects_what_render_rejects(template: str) -> None:
    for messages in ([Message("assistant", "a")], [Message("user", "u"), Message("user", "u")],
                     [Message("user", "u"), Message("system", "s")]):
        with pytest.raises(TemplateError):
            _jinja(template, INSTRUCTION, messages)
    if template == "instruction":
        with pytest.raises(TemplateError, match="gemma_chat"):
            _jinja(template, INSTRUCTION, TURNS)


def test_jinja_renders_multi_turn_chat_like_training() -> None:
    for messages in (TURNS, [Message("system", SYSTEM), *TURNS], TURNS[:3]):
        for instruction in ("", INSTRUCTION):
            expected = render_messages("gemma_chat", with_instruction(instruction, messages)).text
            assert _jinja("gemma_chat", instruction, messages, add_generation_prompt=messages[-1].role == "user") == expected


def test_instruction_jinja_matches_render_for_multi_paragraph_instruction() -> None:
    # Was a strict xfail: the old template split the user message at its first blank line, so an
    # instruction holding a blank line rendered differently from the text trained on.
    instruction = "बातचीत पढ़िए।\n\nफिर एक वाक्य में सारांश लिखिए।"
    assert _jinja("instruction", instruction, _exchange(CONVERSATION, SUMMARY)) == render(
        "instruction", instruction, CONVERSATION, SUMMARY
    ).text


# Fragments that break naive quoting: Jinja delimiters, quotes, escapes, line ends, blank lines.
NASTY = ["\n\n", "\n", "\r\n", "\r", "'", '"', "{{", "}}", "{%", "%}", "{#", "#}", "\\", "\\n", "\\'",
         "\\u0041", "\x00", "\t", "\u2028", "\u3000", " ", "' ~ '", "{{ bos_token }}", "{% endfor %}",
         "###", "### सारांश:", "<end_of_turn>", "<bos>", "é", "😀", "ঌ"]
nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=8).map("".join)
whitespace = st.sampled_from([" ", "\n", "\t", "\r\n", "\u3000", "\u00a0", "\u2028", ""])
padded = st.builds(lambda a, s, b: a + s + b, st.lists(whitespace, max_size=3).map("".join),
                   st.text(max_size=40), st.lists(whitespace, max_size=3).map("".join))


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.text(), nasty_text))
def test_jinja_string_evaluates_to_the_value(value: str) -> None:
    assert _ENV.from_string("{{ " + jinja_string(value) + " }}").render() == value
    assert "\n" not in jinja_string(value) and "\r" not in jinja_string(value)


@settings(max_examples=250, deadline=None)
@given(
    template=st.sampled_from(TEMPLATE_NAMES),
    instruction=st.one_of(nasty_text, padded),
    conversation=st.one_of(padded, nasty_text),
    summary=st.one_of(padded, nasty_text),
)
def test_saved_jinja_renders_what_is_trained_for_any_instruction(
    template: str, instruction: str, conversation: str, summary: str
) -> None:
    trained = render(template, instruction, conversation, summary)
    assert _jinja(template, instruction, _exchange(conversation, summary)) == trained.text
    prompt = _jinja(template, instruction, _exchange(conversation, None), add_generation_prompt=True)
    assert prompt == trained.prompt == render_prompt(template, instruction, conversation)


@settings(max_examples=100, deadline=None)
@given(
    template=st.sampled_from(TEMPLATE_NAMES),
    instruction=nasty_text,
    system=nasty_text,
    conversation=padded,
    summary=padded,
)
def test_a_system_message_takes_the_instructions_place_in_jinja_too(
    template: str, instruction: str, system: str, conversation: str, summary: str
) -> None:
    messages = [Message("system", system), *_exchange(conversation, summary)]
    expected = render_messages(template, with_instruction(instruction, messages)).text
    assert _jinja(template, instruction, messages) == expected


@settings(max_examples=100, deadline=None)
@given(
    instruction=nasty_text,
    contents=st.lists(st.one_of(padded, nasty_text), min_size=1, max_size=7),
)
def test_gemma_jinja_renders_multi_turn_like_training(instruction: str, contents: list[str]) -> None:
    messages = [Message("user" if i % 2 == 0 else "assistant", c) for i, c in enumerate(contents)]
    expected = render_messages("gemma_chat", with_instruction(instruction, messages)).text
    assert _jinja("gemma_chat", instruction, messages, add_generation_prompt=messages[-1].role == "user") == expected


def test_chat_template_jinja_unknown_template() -> None:
    with pytest.raises(ValueError, match="unknown template"):
        chat_template_jinja("chatml", "i")
