"""The LLM template: its corpus works offline (fast), and ``glade new`` + ``glade run`` in its
own environment exchanges only LoRA adapters while the validation loss falls every round (slow)."""

from __future__ import annotations

import itertools

import pytest

ROUNDS = 5
PERPLEXITY_DROP = 0.25  # final perplexity at most this fraction of the initial one


def test_corpus_is_reproducible_and_covered_by_the_vocabulary(import_template):
    corpus = import_template("llm", "corpus")
    texts = corpus.generate(300, seed=1)
    assert texts == corpus.generate(300, seed=1) and texts != corpus.generate(300, seed=2)
    vocabulary = set(corpus.words())
    assert all(set(text.split()) <= vocabulary for text in texts)
    assert all(text.endswith(" .") for text in texts)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_glade_run_lowers_validation_loss_every_round(template_run):
    run = template_run("llm")
    centralized = run.metrics("centralized")
    assert sorted(centralized) == list(range(ROUNDS + 1))  # round 0: untrained adapters
    losses = [centralized[r]["loss"] for r in range(ROUNDS + 1)]
    assert all(b < a for a, b in itertools.pairwise(losses)), losses
    first, last = centralized[0]["perplexity"], centralized[ROUNDS]["perplexity"]
    assert last <= PERPLEXITY_DROP * first, (first, last)
    assert sorted(run.metrics("evaluate")) == list(range(1, ROUNDS + 1))
    print(f"llm: perplexity {first:.1f} -> {last:.2f} in {run.seconds:.0f} s")
