"""A few held-out rows summarized with the model as it is now, and scored: the generation eval during
training (every eval.generate_steps) and the quick eval a user asks for while a run is paused.

The caller puts the model in inference mode and back (`inference_mode.paused_for_inference`, or a paused run's
`PauseControl.probe`): this module only generates and scores.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass
from typing import Any

from workbench.config import EvalSection, RunConfig
from workbench.engine.model import Loaded


@dataclass
class HeldOutPrompts:
    """The rows the generation eval summarizes, tokenized once."""

    prompts: list[list[int]]
    references: list[str]
    inputs: list[str]


@dataclass
class QuickScores:
    rouge_l: float
    """Mean per-row ROUGE-L F1, in percent."""
    chrf: float
    """Corpus chrF++."""
    texts: list[str]


def held_out_prompts(tokenizer: Any, config: RunConfig, count: int) -> HeldOutPrompts:
    """The first `count` held-out rows of the config's eval split, as prompts the model is trained on.
    Raises UserError / DataError when the config has no held-out rows."""
    from workbench.engine.evaluate import build_prompt
    from workbench.evaluation import heldout_rows

    rows = heldout_rows(config).examples[:count]
    prompts = [build_prompt(tokenizer, config, x.conversation, config.eval.max_new_tokens).ids for x in rows]
    return HeldOutPrompts(prompts, [x.summary for x in rows], [x.conversation for x in rows])


def summarize_and_score(loaded: Loaded, rows: HeldOutPrompts, decoding: EvalSection,
                        stop: threading.Event | None = None) -> QuickScores:
    from workbench import scores as sc
    from workbench.engine.evaluate import generate_batch

    answers = generate_batch(loaded, rows.prompts, max_new_tokens=decoding.max_new_tokens,
                             do_sample=decoding.do_sample, temperature=decoding.temperature, top_p=decoding.top_p,
                             use_adapter=True, stop=stop or threading.Event())
    scorer = sc.Scorer()
    texts = [a.text for a in answers]
    pairs = zip(texts, rows.references, strict=True)
    rouge_l = 100 * statistics.fmean(scorer.rouge(t, r)["rougeL"].f1 for t, r in pairs) if texts else 0.0
    return QuickScores(rouge_l=rouge_l, chrf=scorer.corpus_chrf(texts, rows.references), texts=texts)
