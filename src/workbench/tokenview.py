"""Render a tokenized sample as rich Text: special tokens visible and styled, the trained part told
apart from the masked part, and what truncation cuts. Used by `workbench preview` and the Data pane."""

from __future__ import annotations

from typing import Any

from rich.text import Text

STYLE_MASKED = "grey62"
STYLE_TRAINED = "bold green"
STYLE_SPECIAL = "bold black on yellow"
STYLE_SPECIAL_TRAINED = "bold black on green"
STYLE_CUT = "strike red"


def sample_text(sample: dict[str, Any], show_boundaries: bool = False, max_cut_chars: int = 400) -> Text:
    """`sample` is a TokenizedSample as a dict (what the engine sends)."""
    text = Text()
    for i, (piece, trained, special) in enumerate(zip(sample["pieces"], sample["trained"], sample["special"], strict=True)):
        if special:
            style = STYLE_SPECIAL_TRAINED if trained else STYLE_SPECIAL
        else:
            style = STYLE_TRAINED if trained else STYLE_MASKED
        if show_boundaries and i % 2 and not special:
            style += " underline"
        text.append(piece, style=style)
        if special and piece.startswith("<") and piece.endswith(">") and i + 1 < len(sample["pieces"]):
            nxt = sample["pieces"][i + 1]
            if nxt.startswith("\n"):
                continue
    cut = sample.get("cut_text") or ""
    if cut:
        shown = cut if len(cut) <= max_cut_chars else cut[:max_cut_chars] + f"… (+{len(cut) - max_cut_chars} chars)"
        text.append("\n✂ cut by truncation: ", style="bold red")
        text.append(shown, style=STYLE_CUT)
    return text


def sample_counts(sample: dict[str, Any], max_seq_length: int) -> str:
    n = sample["n_tokens"]
    kept = len(sample["input_ids"])
    trained = sum(sample["trained"])
    replies = int(sample.get("n_replies", 1))  # several for multi-turn chat rows: every assistant turn
    parts = [f"{n} tokens / max {max_seq_length}"]
    if replies > 1:
        parts += [f"prompts {sample['n_prompt_tokens']} (masked)",
                  f"{replies} replies {sample['n_response_tokens']} (trained: {trained})"]
    else:
        parts += [f"prompt {sample['n_prompt_tokens']} (masked)",
                  f"summary {sample['n_response_tokens']} (trained: {trained})"]
    if n > kept:
        parts.append(f"truncation cuts {n - kept} tokens ({sample['cut_trained_tokens']} of them trained)")
    if trained == 0:
        parts.append("NOTHING IS TRAINED in this sample")
    return " · ".join(parts)


def legend() -> Text:
    t = Text()
    t.append("masked prompt", style=STYLE_MASKED)
    t.append("  ")
    t.append("trained summary", style=STYLE_TRAINED)
    t.append("  ")
    t.append("<special>", style=STYLE_SPECIAL)
    t.append("  ")
    t.append("cut by truncation", style=STYLE_CUT)
    return t
