"""The TensorFlow (Keras 3) template: ``glade new`` + ``glade run`` in its own environment
reaches the stated accuracy (slow; TensorFlow is not in the project's environment)."""

from __future__ import annotations

import pytest

ROUNDS = 5
ACCURACY = 0.85  # centralized accuracy on the held-out digits after ROUNDS rounds


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_glade_run_reaches_85_percent_in_5_rounds(template_run):
    run = template_run("tensorflow")
    centralized = run.metrics("centralized")
    assert sorted(centralized) == list(range(ROUNDS + 1))
    assert centralized[0]["accuracy"] < 0.3
    assert centralized[ROUNDS]["accuracy"] >= ACCURACY, centralized
    assert sorted(run.metrics("evaluate")) == list(range(1, ROUNDS + 1))
    print(f"tensorflow: accuracy {centralized[ROUNDS]['accuracy']:.3f} in {run.seconds:.0f} s")
