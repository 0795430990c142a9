"""The Hugging Face template: its corpus and tokenizer work offline (fast), and ``glade new``
+ ``glade run`` in its own environment lifts accuracy from chance past the threshold (slow)."""

from __future__ import annotations

import numpy as np
import pytest

ROUNDS = 5
ACCURACY = 0.85  # centralized accuracy on held-out reviews after ROUNDS rounds (chance: 0.5)


def test_corpus_is_reproducible_and_needs_word_order(import_template):
    corpus = import_template("huggingface", "corpus")
    texts, labels = corpus.generate(500, seed=3)
    again, _ = corpus.generate(500, seed=3)
    assert texts == again and len(set(texts)) > 300
    assert 0.4 < labels.mean() < 0.6
    vocabulary = set(corpus.words())
    assert all(set(text.split()) <= vocabulary for text in texts)
    negated = np.array(["not" in text.split() for text in texts])
    positive_words = np.array([bool(set(t.split()) & set(corpus.POSITIVE)) for t in texts])
    assert np.array_equal(labels == 1, positive_words != negated)  # "not" flips the label
    assert 0.2 < negated.mean() < 0.5


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_glade_run_learns_from_chance_past_85_percent_in_5_rounds(template_run):
    run = template_run("huggingface")
    centralized = run.metrics("centralized")
    assert sorted(centralized) == list(range(ROUNDS + 1))
    assert centralized[0]["accuracy"] < 0.65
    assert centralized[ROUNDS]["accuracy"] >= ACCURACY, centralized
    print(f"huggingface: accuracy {centralized[ROUNDS]['accuracy']:.3f} in {run.seconds:.0f} s")
