"""Scores of hand-made Hindi pairs, with the counts written out, and the default ROUGE tokenizer shown
to miss them (the reason this module exists)."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from workbench import scores as sc

REFERENCE = "राम और सीता कल बाज़ार जाएँगे।"
OUTPUT = "राम कल बाज़ार जाएगा।"


def test_tokens_split_on_the_danda_and_keep_vowel_signs() -> None:
    assert sc.tokenize(REFERENCE) == ["राम", "और", "सीता", "कल", "बाज़ार", "जाएँगे"]
    assert sc.tokenize("मैच 2024 में। फिर॥ Delhi\u200bमें") == ["मैच", "2024", "में", "फिर", "delhi", "में"]
    # a nukta written precomposed (U+095B) or as ज + ़ is the same word
    assert sc.tokenize("\u095b") == sc.tokenize("\u091c\u093c")


def test_rouge_of_a_hand_made_pair() -> None:
    rouge = sc.Scorer().rouge(OUTPUT, REFERENCE)
    # output words: राम कल बाज़ार जाएगा (4); reference words: राम और सीता कल बाज़ार जाएँगे (6)
    # unigrams in common: राम, कल, बाज़ार (3): P = 3/4, R = 3/6, F1 = 2PR/(P+R) = 0.6
    assert rouge["rouge1"] == sc.Rouge(pytest.approx(0.75), pytest.approx(0.5), pytest.approx(0.6))
    # bigrams: output (राम कल) (कल बाज़ार) (बाज़ार जाएगा); reference has 5; in common (कल बाज़ार): P 1/3, R 1/5, F1 0.25
    assert rouge["rouge2"] == sc.Rouge(pytest.approx(1 / 3), pytest.approx(0.2), pytest.approx(0.25))
    # longest common subsequence: राम कल बाज़ार (3), as ROUGE-1 here
    assert rouge["rougeL"].f1 == pytest.approx(0.6)


def test_the_default_rouge_tokenizer_sees_no_hindi() -> None:
    default = rouge_scorer.RougeScorer(["rouge1"])
    assert default.score(REFERENCE, OUTPUT)["rouge1"].fmeasure == 0.0
    # and a pair that differs in its only Hindi word is "perfect" by its digits
    assert default.score("भारत 2024 में", "पाकिस्तान 2024 में")["rouge1"].fmeasure == 1.0
    assert sc.Scorer().rouge("पाकिस्तान 2024 में", "भारत 2024 में")["rouge1"].f1 == pytest.approx(2 / 3)


def test_the_hindi_stemmer_matches_inflections() -> None:
    assert sc.hindi_stem("लड़कों") == sc.hindi_stem("लड़के") == "लड़क"
    assert sc.hindi_stem("कल") == "कल"  # too short to strip
    plain, stemmed = sc.Scorer(), sc.Scorer(stem=True)
    assert plain.rouge("लड़कों ने", "लड़के")["rouge1"].recall == 0.0
    assert stemmed.rouge("लड़कों ने", "लड़के")["rouge1"].recall == 1.0


def test_chrf_is_sacrebleus_chrf_plus_plus() -> None:
    from sacrebleu.metrics import CHRF

    scorer = sc.Scorer()
    assert scorer.chrf(OUTPUT, REFERENCE) == pytest.approx(CHRF(word_order=2).sentence_score(OUTPUT, [REFERENCE]).score)
    assert scorer.chrf(REFERENCE, REFERENCE) == pytest.approx(100.0)


def test_the_checks_that_averages_hide() -> None:
    assert sc.devanagari_share("hello राम") == pytest.approx(2 / 7)  # र म are letters, ा is a vowel sign
    assert sc.has_repetition_loop(sc.tokenize("कल कल कल"))
    assert sc.has_repetition_loop(sc.tokenize("ठीक है ठीक है ठीक है"))
    assert not sc.has_repetition_loop(sc.tokenize("राम और सीता कल"))
    source = "राम: कल सुबह हम सब बाज़ार चलेंगे और सब्ज़ी लाएँगे"
    assert sc.copies_input(sc.tokenize("कल सुबह हम सब बाज़ार चलेंगे"), sc.tokenize(source))
    assert not sc.copies_input(sc.tokenize(OUTPUT), sc.tokenize(source))
    row = sc.Scorer().row("", REFERENCE, source, unended=True)
    assert row.empty and row.unended and row.flags == ["empty", "unended"]
    assert sc.Scorer().row("the answer in English", REFERENCE).flags == ["script"]
    assert sc.Scorer().row(OUTPUT, REFERENCE).length_ratio == pytest.approx(4 / 6)


def test_paired_bootstrap() -> None:
    same = sc.paired_bootstrap([50.0, 60.0, 70.0], [50.0, 60.0, 70.0], "rouge1")
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0) and not same.significant
    better = sc.paired_bootstrap([11.0, 12.0, 13.0, 14.0], [10.0, 11.0, 12.0, 13.0], "chrf")
    assert (better.mean, better.low, better.high) == (1.0, 1.0, 1.0) and better.significant
    mixed = sc.paired_bootstrap([10.0, 0.0, 10.0, 0.0], [0.0, 10.0, 0.0, 10.0], "rougeL", seed=1)
    assert mixed.mean == 0.0 and mixed.low < 0 < mixed.high and not mixed.significant
    with pytest.raises(ValueError, match="3 tuned rows but 2 base rows"):
        sc.paired_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0], "rouge1")
