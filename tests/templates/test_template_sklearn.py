"""The scikit-learn template: its warm-started task learns and keeps every class (fast), and
``glade new`` + ``glade run`` in its own environment reaches the stated accuracy (slow)."""

from __future__ import annotations

import numpy as np
import pytest

ROUNDS = 5
ACCURACY = 0.85  # node-weighted accuracy on the nodes' test splits after ROUNDS rounds


def test_task_warm_starts_and_keeps_every_class(import_template):
    pytest.importorskip("sklearn")
    task = import_template("sklearn")
    (x, y), (x_test, y_test) = task.load_data({"partition-id": 0, "num-partitions": 3})
    assert np.allclose(x.mean(axis=0), 0, atol=1e-6)  # standardised with the node's own stats
    params = task.init_params()
    loss0, _ = task.evaluate(params, (x_test, y_test))
    assert loss0 == pytest.approx(np.log(3))  # zero coefficients: uniform predictions
    one, loss1 = task.train(params, (x, y), c=1.0, iterations=1)
    two, loss2 = task.train(one, (x, y), c=1.0, iterations=1)
    assert loss2 < loss1 < loss0  # the second fit continues from the first (warm start)
    assert np.array_equal(params["coef"], np.zeros((3, 13)))  # the input is left as it was
    only_two_classes = y != 2
    skewed, _ = task.train(params, (x[only_two_classes], y[only_two_classes]), c=1.0, iterations=5)
    assert skewed["coef"].shape == (3, 13) and skewed["intercept"].shape == (3,)
    _, accuracy = task.evaluate(two, (x_test, y_test))
    assert accuracy >= 0.7


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_glade_run_reaches_85_percent_in_5_rounds(template_run):
    run = template_run("sklearn")
    evaluate = run.metrics("evaluate")
    assert sorted(evaluate) == list(range(1, ROUNDS + 1))
    assert evaluate[ROUNDS]["accuracy"] >= ACCURACY, evaluate
    assert evaluate[ROUNDS]["loss"] < evaluate[1]["loss"]  # still learning after round 1
    print(f"sklearn: accuracy {evaluate[ROUNDS]['accuracy']:.3f} in {run.seconds:.0f} s")
