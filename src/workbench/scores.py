"""Scores for Hindi summaries: ROUGE that sees Devanagari, chrF++, and the checks that catch what
averages hide (wrong script, loops, copies, answers that never ended), with bootstrap intervals for a
base-vs-tuned difference.

Why not a plain `rouge_score` call: its default tokenizer keeps only [a-z0-9], so every Devanagari pair
scores 0, or is decided by its digits alone ("भारत 2024 में" vs "पाकिस्तान 2024 में": ROUGE-1 = 1.0).
XL-Sum, the reference Hindi summarization benchmark, tokenizes on whitespace and Unicode punctuation (the
danda । and ॥ included) and keeps vowel signs and viramas; `tokenize` does the same (Latin lowercased,
digits kept), and `rouge_score`'s scorer counts the n-grams. chrF++ (sacrebleu) works on characters and
needs no tokenizer. Nothing here imports torch: `workbench score` and the Eval pane use it as it is.
"""

from __future__ import annotations

import random
import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEVANAGARI = (0x0900, 0x097F)
ZERO_WIDTH_SPACE = "\u200b"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

# A light Hindi stemmer's suffixes (after Ramanathan & Rao, 2003, as used for XL-Sum's optional stemming),
# longest first: inflections of nouns, adjectives and verbs.
HINDI_SUFFIXES = tuple(sorted({
    "ाएंगी", "ाएंगे", "ाएँगी", "ाएँगे", "ाऊंगी", "ाऊंगा", "ाऊँगी", "ाऊँगा", "ाइयाँ", "ाइयों", "ाइयां",
    "ाएगी", "ाएगा", "ाओगी", "ाओगे", "एंगी", "ेंगी", "एंगे", "ेंगे", "एँगी", "ेँगी", "एँगे", "ेँगे", "ूंगी", "ूंगा", "ूँगी", "ूँगा", "ातीं", "नाओं", "नाएं", "ताओं",
    "ताएं", "ियाँ", "ियों", "ियां",
    "ाकर", "ाइए", "ाईं", "ाया", "ेगी", "ेगा", "ोगी", "ोगे", "ाने", "ाना", "ाते", "ाती", "ाता", "तीं", "ाओं", "ाएं",
    "ुओं", "ुएं", "ुआं",
    "कर", "ाओ", "िए", "ाई", "ाए", "ने", "नी", "ना", "ते", "ीं", "ती", "ता", "ाँ", "ां", "ों", "ें",
    "ो", "े", "ू", "ु", "ी", "ि", "ा",
}, key=len, reverse=True))


# -- tokens ---------------------------------------------------------------------------------------------

def _is_word_char(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "LMN"  # letters, marks (vowel signs, virama, nukta), digits


def tokenize(text: str) -> list[str]:
    """Words as XL-Sum counts them: split on whitespace and Unicode punctuation and symbols (। and ॥ too),
    vowel signs and viramas kept inside their words, Latin lowercased, other zero-width characters dropped."""
    text = unicodedata.normalize("NFC", text).replace(ZERO_WIDTH_SPACE, " ")
    tokens: list[str] = []
    current: list[str] = []
    for char in text:
        if _is_word_char(char):
            current.append(char.lower() if char.isascii() else char)
        elif unicodedata.category(char) == "Cf":
            continue  # ZWJ / ZWNJ change how a word is drawn, not which word it is
        elif current:
            tokens.append("".join(current))
            current = []
    if current:
        tokens.append("".join(current))
    return tokens


def hindi_stem(token: str) -> str:
    """The token with its longest Hindi inflection suffix removed, when a stem of two or more letters stays."""
    for suffix in HINDI_SUFFIXES:
        if token.endswith(suffix) and len(token) - len(suffix) >= 2:
            return token[: -len(suffix)]
    return token


class DevanagariTokenizer:
    """`rouge_score`'s tokenizer interface (`tokenize(text)`) over `tokenize`, optionally stemmed."""

    def __init__(self, stem: bool = False) -> None:
        self.stem = stem

    def tokenize(self, text: str) -> list[str]:
        tokens = tokenize(text)
        return [hindi_stem(t) for t in tokens] if self.stem else tokens


# -- per row ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rouge:
    precision: float
    recall: float
    f1: float


@dataclass
class RowScores:
    """Every score of one output against its reference (and, for the copy check, its input)."""

    rouge: dict[str, Rouge]
    chrf: float
    """chrF++ of this row (sacrebleu's sentence score, 0-100)."""
    length_ratio: float | None
    """Output words / reference words; None without a reference."""
    devanagari_share: float
    """Share of the output's letters that are Devanagari (catches Latin or Hinglish answers)."""
    empty: bool
    repetition: bool
    """A loop: the same n-gram repeated back to back."""
    copies_input: bool
    """Most of the output's word 4-grams are copied from the conversation."""
    unended: bool
    """The generation hit max_new_tokens before the model ended its answer."""

    @property
    def flags(self) -> list[str]:
        named = (("empty", self.empty), ("loop", self.repetition), ("copy", self.copies_input),
                 ("unended", self.unended), ("script", not self.empty and self.devanagari_share < 0.5))
        return [name for name, raised in named if raised]


def devanagari_share(text: str) -> float:
    letters = [c for c in text if unicodedata.category(c)[0] == "L"]
    if not letters:
        return 0.0
    inside = sum(1 for c in letters if DEVANAGARI[0] <= ord(c) <= DEVANAGARI[1])
    return inside / len(letters)


def has_repetition_loop(tokens: Sequence[str], max_n: int = 4, min_repeats: int = 3) -> bool:
    """The same n-gram (n <= max_n) `min_repeats` times back to back: "कल कल कल", "ठीक है ठीक है ठीक है"."""
    for n in range(1, max_n + 1):
        for start in range(len(tokens) - n * min_repeats + 1):
            gram = tokens[start : start + n]
            if all(tokens[start + k * n : start + (k + 1) * n] == gram for k in range(1, min_repeats)):
                return True
    return False


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def copies_input(output: Sequence[str], source: Sequence[str], n: int = 4, share: float = 0.8) -> bool:
    """Whether at least `share` of the output's word n-grams occur in the source (and there are 3 or more)."""
    grams = _ngrams(output, n)
    if len(grams) < 3:
        return False
    seen = set(_ngrams(source, n))
    return sum(1 for g in grams if g in seen) / len(grams) >= share


class Scorer:
    """ROUGE-1/2/L with the Devanagari tokenizer and chrF++; one instance scores many rows."""

    def __init__(self, stem: bool = False) -> None:
        from rouge_score import rouge_scorer
        from sacrebleu.metrics import CHRF

        self.stem = stem
        self.tokenizer = DevanagariTokenizer(stem)
        self._rouge = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=self.tokenizer)
        self._chrf = CHRF(word_order=2)

    def rouge(self, output: str, reference: str) -> dict[str, Rouge]:
        scores = self._rouge.score(reference, output)  # rouge_score's order: target, then prediction
        return {name: Rouge(s.precision, s.recall, s.fmeasure) for name, s in scores.items()}

    def chrf(self, output: str, reference: str) -> float:
        return float(self._chrf.sentence_score(output, [reference]).score)

    def corpus_chrf(self, outputs: Sequence[str], references: Sequence[str]) -> float:
        return float(self._chrf.corpus_score(list(outputs), [list(references)]).score)

    def row(self, output: str, reference: str, source: str = "", unended: bool = False) -> RowScores:
        out_tokens = tokenize(output)
        ref_tokens = tokenize(reference)
        return RowScores(
            rouge=self.rouge(output, reference),
            chrf=self.chrf(output, reference),
            length_ratio=len(out_tokens) / len(ref_tokens) if ref_tokens else None,
            devanagari_share=devanagari_share(output),
            empty=not output.strip(),
            repetition=has_repetition_loop(out_tokens),
            copies_input=copies_input(out_tokens, tokenize(source)) if source else False,
            unended=unended,
        )


# -- a model's scores over rows ------------------------------------------------------------------------------

@dataclass
class Summary:
    """One model's scores over the scored rows (means of the per-row scores, chrF++ also corpus-level)."""

    rows: int
    rouge_f1: dict[str, float]
    rouge_precision: dict[str, float]
    rouge_recall: dict[str, float]
    chrf_corpus: float
    chrf_mean: float
    length_ratio: float | None
    devanagari_share: float
    flagged: dict[str, int] = field(default_factory=dict)
    """How many rows raised each flag (empty, loop, copy, unended, script)."""


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.fmean(values) if values else 0.0


def summarize(scorer: Scorer, rows: Sequence[RowScores], outputs: Sequence[str], references: Sequence[str]) -> Summary:
    ratios = [r.length_ratio for r in rows if r.length_ratio is not None]
    flagged = Counter(flag for r in rows for flag in r.flags)
    return Summary(
        rows=len(rows),
        rouge_f1={name: _mean(r.rouge[name].f1 for r in rows) for name in ROUGE_TYPES},
        rouge_precision={name: _mean(r.rouge[name].precision for r in rows) for name in ROUGE_TYPES},
        rouge_recall={name: _mean(r.rouge[name].recall for r in rows) for name in ROUGE_TYPES},
        chrf_corpus=scorer.corpus_chrf(outputs, references) if rows else 0.0,
        chrf_mean=_mean(r.chrf for r in rows),
        length_ratio=_mean(ratios) if ratios else None,
        devanagari_share=_mean(r.devanagari_share for r in rows),
        flagged=dict(flagged),
    )


# -- the difference between two models, with its uncertainty -----------------------------------------------

@dataclass(frozen=True)
class Difference:
    """Mean of (tuned - base) over the same rows, with a paired bootstrap 95% interval."""

    metric: str
    mean: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0: on these rows the gain (or loss) is not noise."""
        return self.low > 0 or self.high < 0


def row_metric(scores: RowScores, metric: str) -> float:
    """A per-row value by name: rouge1 / rouge2 / rougeL (F1, 0-100) or chrf (0-100)."""
    if metric == "chrf":
        return scores.chrf
    return 100.0 * scores.rouge[metric].f1


def paired_bootstrap(tuned: Sequence[float], base: Sequence[float], metric: str, resamples: int = 2000,
                     seed: int = 0) -> Difference:
    """The mean paired difference and its percentile 95% interval, resampling rows with replacement."""
    if len(tuned) != len(base):
        raise ValueError(f"{metric}: {len(tuned)} tuned rows but {len(base)} base rows")
    gaps = [t - b for t, b in zip(tuned, base, strict=True)]
    if not gaps:
        return Difference(metric, 0.0, 0.0, 0.0)
    rng = random.Random(seed)
    n = len(gaps)
    means = sorted(sum(gaps[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return Difference(metric, sum(gaps) / n, means[int(0.025 * (resamples - 1))], means[int(0.975 * (resamples - 1))])


def differences(tuned: Sequence[RowScores], base: Sequence[RowScores], seed: int = 0) -> list[Difference]:
    return [paired_bootstrap([row_metric(r, m) for r in tuned], [row_metric(r, m) for r in base], m, seed=seed)
            for m in (*ROUGE_TYPES, "chrf")]


def as_dict(value: Any) -> Any:
    """A dataclass tree as plain JSON data (eval.json, `workbench score`)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        data = asdict(value)
        if isinstance(value, RowScores):
            data["flags"] = value.flags
        return data
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    return value

