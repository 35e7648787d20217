"""An Ollama Modelfile for a GGUF export: the prompt the run was trained on, as Ollama's Go template, and
the tokens that end an answer, so `ollama create` gives a model that is prompted as it was trained.

Written from the run's template (`templates.render_prompt`, the same function training uses), not by hand:
a change to a template changes its Modelfile with it. No ML import.
"""

from __future__ import annotations

from workbench.config import RunConfig
from workbench.templates import END_OF_TURN, render_prompt

PLACEHOLDER = "\u2063PROMPT\u2063"
"""Stands for the user's text while the template renders (invisible separators: not in any real text)."""


def _go_string(text: str) -> str:
    """A Modelfile value in triple quotes (Ollama's multi-line form), with its own quotes kept apart."""
    return '"""' + text.replace('"""', '" " "') + '"""'


def modelfile(gguf_name: str, config: RunConfig, eos_token: str) -> str:
    d = config.data
    # No BOS in the template: llama.cpp adds it itself (the file's add_bos_token), exactly once.
    prompt = render_prompt(d.template, d.instruction, PLACEHOLDER, bos="")
    template = prompt.replace(PLACEHOLDER, "{{ .Prompt }}") + "{{ .Response }}"
    stops = [eos_token] + ([END_OF_TURN] if d.template == "gemma_chat" and eos_token != END_OF_TURN else [])
    lines = [
        f"# Made by workbench for {gguf_name}: the prompt format of run config template {d.template!r}.",
        f"FROM ./{gguf_name}",
        f"TEMPLATE {_go_string(template)}",
        *[f'PARAMETER stop "{stop}"' for stop in stops],
        "PARAMETER temperature 0",
        f"PARAMETER num_ctx {config.model.max_seq_length}",
    ]
    return "\n".join(lines) + "\n"
