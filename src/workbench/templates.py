"""Prompt templates: the exact text a sample becomes, split into the part the model only reads (prompt)
and the part it learns to write (response).

Both templates render the `<bos>` themselves, so the text is tokenized with `add_special_tokens=False`
and every sample holds exactly one `<bos>`. The same functions render the chat prompt at inference, so
chat always uses the template the model was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass

BOS = "<bos>"
EOS = "<eos>"
START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"

# Gemma's own chat template (as shipped with the Gemma-2 tokenizers): no system role, strict
# user/model alternation, content trimmed. `render` below produces byte-identical text; a test checks it.
GEMMA_CHAT_JINJA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

CONVERSATION_HEADER = "### बातचीत:"
SUMMARY_HEADER = "### सारांश:"

# The instruction template as a chat template, saved beside adapters so other tools (vLLM, llama.cpp)
# prompt the tuned model the way it was trained: the first user message is the instruction followed by
# the conversation, separated by a blank line.
INSTRUCTION_JINJA = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{% set parts = message['content'].split('\n\n', 1) %}"
    "{{ parts[0] | trim }}{{ '\n\n" + CONVERSATION_HEADER + "\n' }}"
    "{% if parts | length > 1 %}{{ parts[1] | trim }}{% endif %}{{ '\n\n" + SUMMARY_HEADER + "\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] | trim }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)

TEMPLATE_NAMES = ("gemma_chat", "instruction")
TEMPLATE_TITLES = {
    "gemma_chat": "Gemma chat turns (<start_of_turn>user … model)",
    "instruction": "Instruction prompt of the first recipe (### बातचीत / ### सारांश, EOS appended)",
}


@dataclass(frozen=True)
class RenderedSample:
    """One training sample as text: `prompt` is masked from the loss, `response` is trained on."""

    prompt: str
    response: str

    @property
    def text(self) -> str:
        return self.prompt + self.response


def _gemma_trim(text: str) -> str:
    # Jinja's `trim` strips Python whitespace; keep the same rule so rendering matches the tokenizer's.
    return text.strip()


def render_prompt(template: str, instruction: str, conversation: str, bos: str = BOS) -> str:
    """The prompt part only: what the model reads before it writes the summary (training and chat)."""
    if template == "gemma_chat":
        user = _gemma_trim(f"{instruction}\n\n{conversation}" if instruction.strip() else conversation)
        return f"{bos}{START_OF_TURN}user\n{user}{END_OF_TURN}\n{START_OF_TURN}model\n"
    if template == "instruction":
        return (
            f"{bos}{instruction.strip()}\n\n{CONVERSATION_HEADER}\n{conversation.strip()}\n\n{SUMMARY_HEADER}\n"
        )
    raise ValueError(f"unknown template {template!r} (known: {', '.join(TEMPLATE_NAMES)})")


def render_response(template: str, summary: str, eos: str = EOS) -> str:
    """The trained part: the summary and the marker that ends it (so the model learns to stop)."""
    if template == "gemma_chat":
        return f"{_gemma_trim(summary)}{END_OF_TURN}\n"
    if template == "instruction":
        return f"{summary.strip()}{eos}"
    raise ValueError(f"unknown template {template!r} (known: {', '.join(TEMPLATE_NAMES)})")


def render(
    template: str, instruction: str, conversation: str, summary: str, bos: str = BOS, eos: str = EOS
) -> RenderedSample:
    return RenderedSample(
        render_prompt(template, instruction, conversation, bos), render_response(template, summary, eos)
    )


def stop_strings(template: str) -> tuple[str, ...]:
    """Text that ends a generated summary for this template."""
    return (END_OF_TURN, EOS) if template == "gemma_chat" else (EOS,)


def chat_template_jinja(template: str) -> str:
    return GEMMA_CHAT_JINJA if template == "gemma_chat" else INSTRUCTION_JINJA
