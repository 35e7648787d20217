"""What a model must be prompted with: its chat template, its special tokens and their ids, and its
vocabulary, in one fingerprint recorded with the run and with every export.

An export that behaves differently from the model the user tried (unsloth #3899, #976, #1832,
LLaMA-Factory #3563) almost always differs here: another template, a missing end-of-turn token, another
tokenizer. Chat, eval and export compare a tokenizer's fingerprint with the run's, and a mismatch says
exactly what differs ("EOS id 1 vs 107", "the templates render the same conversation differently: …").

No torch, no transformers: the tokenizer is passed in (anything with get_vocab, the special-token
attributes and apply_chat_template, i.e. a Hugging Face tokenizer).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SPECIAL_ROLES = ("bos", "eos", "pad", "unk")
TURN_TOKENS = ("<start_of_turn>", "<end_of_turn>")
FILE = "fingerprint.json"

# A fixed conversation rendered by the template: two templates that render it the same prompt the model
# the same way, whatever their Jinja text says.
PROBE = [
    {"role": "user", "content": "राम: कल बाज़ार चलें?\nसीता: हाँ, सुबह 10 बजे।"},
    {"role": "assistant", "content": "राम और सीता कल सुबह 10 बजे बाज़ार जाएँगे।"},
]


@dataclass(frozen=True)
class TemplateFingerprint:
    special_ids: dict[str, int | None]
    """bos / eos / pad / unk and the turn tokens, with their ids (None: the tokenizer has none)."""
    vocab_size: int
    vocab_sha256: str
    chat_template_sha256: str
    rendered_probe: str
    """PROBE as the chat template renders it ("" when there is no template or it refuses the probe)."""
    digest: str = field(default="")

    @classmethod
    def of(cls, tokenizer: Any, chat_template: str | None = None) -> TemplateFingerprint:
        """A tokenizer's fingerprint, with its own chat template or `chat_template` (the run's training
        template: what the model was trained to read)."""
        vocab = tokenizer.get_vocab()
        ids: dict[str, int | None] = {role: getattr(tokenizer, f"{role}_token_id", None) for role in SPECIAL_ROLES}
        for token in TURN_TOKENS:
            found = vocab.get(token)
            ids[token] = int(found) if found is not None else None
        template = chat_template if chat_template is not None else getattr(tokenizer, "chat_template", None) or ""
        return cls.from_parts(ids, vocab, template, tokenizer)

    @classmethod
    def from_parts(cls, special_ids: dict[str, int | None], vocab: dict[str, int], template: str,
                   renderer: Any) -> TemplateFingerprint:
        """A fingerprint from its parts, as another format stores them (a GGUF file's metadata); `renderer`
        (a tokenizer) only renders the template's probe."""
        return cls.build(special_ids, len(vocab), _sha(json.dumps(sorted(vocab.items()), ensure_ascii=False)),
                         _sha(template), _render_probe(renderer, template))

    @classmethod
    def build(cls, special_ids: dict[str, int | None], vocab_size: int, vocab_sha256: str, chat_template_sha256: str,
              rendered_probe: str) -> TemplateFingerprint:
        body = {"special_ids": special_ids, "vocab_size": vocab_size, "vocab_sha256": vocab_sha256,
                "rendered_probe": rendered_probe}
        # The digest covers what the model sees, not the template's spelling (two Jinja texts that render
        # the probe alike are the same prompt format).
        return cls(special_ids, vocab_size, vocab_sha256, chat_template_sha256, rendered_probe,
                   _sha(json.dumps(body, sort_keys=True, ensure_ascii=False)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemplateFingerprint:
        return cls.build(data["special_ids"], data["vocab_size"], data["vocab_sha256"], data["chat_template_sha256"],
                         data["rendered_probe"])

    def differences(self, other: TemplateFingerprint, mine: str = "the run", theirs: str = "this one") -> list[str]:
        """What differs, said for a user: empty when the two prompt the model alike."""
        found = []
        for name, mine_id in self.special_ids.items():
            their_id = other.special_ids.get(name)
            if mine_id != their_id:
                label = name.upper() if name in SPECIAL_ROLES else name
                found.append(f"{label} id {_id(mine_id)} in {mine} vs {_id(their_id)} in {theirs}")
        if self.vocab_size != other.vocab_size:
            found.append(f"the vocabulary has {self.vocab_size} tokens in {mine} vs {other.vocab_size} in {theirs}")
        elif self.vocab_sha256 != other.vocab_sha256:
            found.append(f"the vocabulary differs (same size, other tokens) between {mine} and {theirs}")
        if self.rendered_probe != other.rendered_probe:
            found.append(_describe_render(self.rendered_probe, other.rendered_probe, mine, theirs))
        return found


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _id(value: int | None) -> str:
    return "none" if value is None else str(value)


def _render_probe(tokenizer: Any, template: str) -> str:
    if not template:
        return ""
    try:
        rendered = tokenizer.apply_chat_template(PROBE, tokenize=False, chat_template=template)
    except Exception:  # a template that refuses the probe (e.g. strict role rules): it renders nothing here
        return ""
    return str(rendered)


def _describe_render(mine: str, theirs: str, mine_name: str, their_name: str) -> str:
    if not theirs:
        return f"{their_name} has no chat template (or it cannot render a user/assistant exchange)"
    if not mine:
        return f"{mine_name} has no chat template, {their_name} has one"
    if "system" in theirs and "system" not in mine:
        return f"{their_name}'s template adds a system turn"
    at = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), min(len(mine), len(theirs)))
    return (f"the templates render the same conversation differently from character {at}: {mine_name} "
            f"{mine[at:at + 40]!r}, {their_name} {theirs[at:at + 40]!r}")


def save(fingerprint: TemplateFingerprint, folder: Path) -> None:
    tmp = folder / f".{FILE}.tmp"
    tmp.write_text(json.dumps(fingerprint.to_dict(), ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(folder / FILE)


def load(folder: Path) -> TemplateFingerprint | None:
    """The fingerprint recorded in a folder (a run, an export), or None (runs made before it existed)."""
    try:
        return TemplateFingerprint.from_dict(json.loads((folder / FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError):
        return None
