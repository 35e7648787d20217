"""Prompt templates: the exact text a conversation becomes, cut into segments the model only reads
(masked) and segments it learns to write (trained: every assistant turn).

A sample is a list of messages (system, user, assistant). A two-column row is one exchange, and the run's
instruction is its system turn; a chat-format row brings its own turns, and the instruction stands in
for a system turn only where the row has none (`with_instruction`).

Both templates render the `<bos>` themselves, so the text is tokenized with `add_special_tokens=False`
and every sample holds exactly one `<bos>`. The same functions render the chat prompt at inference, and
`chat_template_jinja` writes the same rendering as a Jinja chat template for other tools: chat always
uses the template the model was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BOS = "<bos>"
EOS = "<eos>"
START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"

ROLES = ("system", "user", "assistant")

# Gemma's own chat template (as shipped with the Gemma-2 tokenizers): no system role, strict
# user/model alternation, content trimmed. The tiny model's tokenizer carries it, like the real one.
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

TEMPLATE_NAMES = ("gemma_chat", "instruction")
TEMPLATE_TITLES = {
    "gemma_chat": "Gemma chat turns (<start_of_turn>user … model)",
    "instruction": "Instruction prompt of the first recipe (### बातचीत / ### सारांश, EOS appended)",
}


@dataclass(frozen=True)
class Message:
    """One turn of a conversation; `role` is one of ROLES (readers map other spellings onto them)."""

    role: str
    content: str


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool
    """True for what the model learns to write (an assistant turn and the marker that ends it)."""


@dataclass(frozen=True)
class RenderedSample:
    """One sample as text, in order: masked and trained segments (adjacent ones of a kind are merged)."""

    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def prompt(self) -> str:
        """The text before the first trained segment (what the model reads before its first reply)."""
        return self.text[: self.trained_spans[0][0]] if self.trained_spans else self.text

    @property
    def response(self) -> str:
        """The text from the first trained segment on (for one exchange: exactly the trained part)."""
        return self.text[len(self.prompt) :]

    @property
    def trained_spans(self) -> list[tuple[int, int]]:
        """Character ranges [start, end) of the trained segments."""
        spans: list[tuple[int, int]] = []
        at = 0
        for segment in self.segments:
            if segment.trained:
                spans.append((at, at + len(segment.text)))
            at += len(segment.text)
        return spans


class _Segments:
    """Collects segments, merging neighbours of the same kind (so spans are maximal)."""

    def __init__(self) -> None:
        self.items: list[Segment] = []

    def add(self, text: str, trained: bool) -> None:
        if self.items and self.items[-1].trained == trained:
            self.items[-1] = Segment(self.items[-1].text + text, trained)
        elif text:
            self.items.append(Segment(text, trained))

    def sample(self) -> RenderedSample:
        return RenderedSample(tuple(self.items))


def _unknown(template: str) -> ValueError:
    return ValueError(f"unknown template {template!r} (known: {', '.join(TEMPLATE_NAMES)})")


def with_instruction(instruction: str, turns: Sequence[Message]) -> list[Message]:
    """The run's instruction is the system turn of a conversation that has none (a blank one adds none)."""
    if (turns and turns[0].role == "system") or not instruction.strip():
        return list(turns)
    return [Message("system", instruction), *turns]


def split_system(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """The system text ("" when there is none) and the user / assistant turns, checked for order:
    an optional first system turn, then user and assistant alternating, starting with user."""
    system = messages[0].content if messages and messages[0].role == "system" else ""
    turns = list(messages[1:] if messages and messages[0].role == "system" else messages)
    if not turns:
        raise ValueError("a conversation needs at least one user turn")
    for i, message in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if message.role != expected:
            raise ValueError(
                f"turn {i + 1} is {message.role!r} where {expected!r} was expected: after an optional first "
                "system turn, roles alternate user / assistant, starting with user"
            )
    return system, turns


def _gemma_trim(text: str) -> str:
    # Jinja's `trim` strips Python whitespace; keep the same rule so rendering matches the Jinja template.
    return text.strip()


def _render_gemma(system: str, turns: list[Message], bos: str) -> RenderedSample:
    # Gemma has no system role: the system text opens the first user turn, then a blank line.
    out = _Segments()
    out.add(bos, False)
    for i, message in enumerate(turns):
        content = f"{system}\n\n{message.content}" if i == 0 and system.strip() else message.content
        if message.role == "user":
            out.add(f"{START_OF_TURN}user\n{_gemma_trim(content)}{END_OF_TURN}\n{START_OF_TURN}model\n", False)
        else:  # the reply and its end marker are trained, so the model learns to stop
            out.add(f"{_gemma_trim(content)}{END_OF_TURN}\n", True)
    return out.sample()


def _render_instruction(system: str, turns: list[Message], bos: str, eos: str) -> RenderedSample:
    if len(turns) > 2:
        raise ValueError(
            "the instruction template takes one user turn and its reply; use the gemma_chat template for "
            "multi-turn conversations"
        )
    out = _Segments()
    conversation = turns[0].content.strip()
    out.add(f"{bos}{system.strip()}\n\n{CONVERSATION_HEADER}\n{conversation}\n\n{SUMMARY_HEADER}\n", False)
    if len(turns) == 2:
        out.add(f"{turns[1].content.strip()}{eos}", True)
    return out.sample()


def render_messages(
    template: str, messages: Sequence[Message], bos: str = BOS, eos: str = EOS
) -> RenderedSample:
    """Render a conversation. A trailing user turn ends with the generation prompt (what chat sends)."""
    if template not in TEMPLATE_NAMES:
        raise _unknown(template)
    system, turns = split_system(messages)
    if template == "gemma_chat":
        return _render_gemma(system, turns, bos)
    return _render_instruction(system, turns, bos, eos)


def render_prompt(template: str, instruction: str, conversation: str, bos: str = BOS) -> str:
    """The prompt part only: what the model reads before it writes the summary (training and chat)."""
    return render_messages(template, with_instruction(instruction, [Message("user", conversation)]), bos).text


def render_response(template: str, summary: str, eos: str = EOS) -> str:
    """The trained part: the summary and the marker that ends it (so the model learns to stop)."""
    if template == "gemma_chat":
        return f"{_gemma_trim(summary)}{END_OF_TURN}\n"
    if template == "instruction":
        return f"{summary.strip()}{eos}"
    raise _unknown(template)


def render(
    template: str, instruction: str, conversation: str, summary: str, bos: str = BOS, eos: str = EOS
) -> RenderedSample:
    """One two-column sample: the instruction as system turn, the conversation, the summary as reply."""
    exchange = [Message("user", conversation), Message("assistant", summary)]
    return render_messages(template, with_instruction(instruction, exchange), bos, eos)



# ------------------------------------------------------------------------------------- Jinja export

def jinja_string(value: str) -> str:
    """`value` as a Jinja string literal that evaluates to exactly `value`.

    Jinja reads a literal by normalizing its raw line ends and then decoding Python escapes, so a raw
    backslash, quote, carriage return or newline would change the text: those and the other control
    characters are escaped; the rest (Devanagari included) stays readable."""
    out = []
    for ch in value:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def _system_and_turns_jinja(default_system: str) -> str:
    # The conversation's own system turn wins; otherwise the run's instruction, baked in, stands in for
    # one, as in training (`with_instruction`). Callers send the conversation alone.
    return (
        "{% if messages and messages[0]['role'] == 'system' %}"
        "{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
        "{% else %}{% set system = " + jinja_string(default_system) + " %}{% set turns = messages %}{% endif %}"
    )


def _gemma_jinja(instruction: str) -> str:
    return (
        "{{ bos_token }}" + _system_and_turns_jinja(instruction) + "{% for message in turns %}"
        "{% if message['role'] not in ('user', 'assistant') or (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('After an optional first system message, roles must alternate user/assistant/user/...') }}"
        "{% endif %}"
        "{% if loop.first and system | trim %}{% set content = system + '\\n\\n' + message['content'] %}"
        "{% else %}{% set content = message['content'] %}{% endif %}"
        "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = 'user' %}{% endif %}"
        "{{ '<start_of_turn>' + role + '\\n' + content | trim + '<end_of_turn>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
    )


def _instruction_jinja(instruction: str) -> str:
    conversation = jinja_string(f"\n\n{CONVERSATION_HEADER}\n")
    summary = jinja_string(f"\n\n{SUMMARY_HEADER}\n")
    return (
        "{{ bos_token }}" + _system_and_turns_jinja(instruction) + "{% for message in turns %}"
        "{% if loop.index0 == 0 and message['role'] == 'user' %}"
        "{{ system | trim + " + conversation + " + message['content'] | trim + " + summary + " }}"
        "{% elif loop.index0 == 1 and message['role'] == 'assistant' %}{{ message['content'] | trim + eos_token }}"
        "{% else %}{{ raise_exception('The instruction template takes one user message and its reply "
        "(after an optional system message); use the gemma_chat template for multi-turn conversations') }}"
        "{% endif %}{% endfor %}"
    )


def chat_template_jinja(template: str, instruction: str) -> str:
    """The run's rendering as a Jinja chat template (saved beside adapters, for vLLM, llama.cpp, or
    transformers' apply_chat_template): it renders byte for byte what `render_messages` trains on, with
    the run's instruction as the default system turn, so the user message is the conversation alone."""
    if template == "gemma_chat":
        return _gemma_jinja(instruction)
    if template == "instruction":
        return _instruction_jinja(instruction)
    raise _unknown(template)
