"""The XGBoost template: its task grows trees the server can bag (fast, where xgboost is
installed), and ``glade new`` + ``glade run`` with ``FedXgbBagging`` in its own environment
reaches the stated accuracy and AUC (slow)."""

from __future__ import annotations

import itertools

import pytest

ROUNDS = 5
ACCURACY = 0.85  # node-weighted accuracy on the nodes' test splits after ROUNDS rounds
AUC = 0.95


def test_task_boosts_on_top_of_the_global_model(import_template):
    pytest.importorskip("xgboost")
    from glade.strategies.xgbtrees import TreeModel, booster_to_arrays, model_bytes

    task = import_template("xgboost")
    train, test = task.load_data({"partition-id": 0, "num-partitions": 3})
    params = task.xgb_params(eta=0.3, max_depth=3)
    assert task.evaluate(None, test)["accuracy"] < 0.8  # no trees: the base score
    first = task.train(None, train, params=params, boost_rounds=2)
    more = task.train(first, train, params=params, boost_rounds=2)
    assert more.num_boosted_rounds() == 4
    grown = TreeModel.parse(model_bytes(booster_to_arrays(more)))
    assert grown.extends(TreeModel.parse(model_bytes(booster_to_arrays(first)))) is None
    metrics = task.evaluate(more, test)
    assert metrics["accuracy"] >= 0.85 and metrics["auc"] >= 0.9


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_glade_run_reaches_stated_accuracy_and_auc_in_5_rounds(template_run):
    run = template_run("xgboost")
    evaluate = run.metrics("evaluate")
    assert sorted(evaluate) == list(range(1, ROUNDS + 1))
    assert evaluate[ROUNDS]["accuracy"] >= ACCURACY, evaluate
    assert evaluate[ROUNDS]["auc"] >= AUC, evaluate
    losses = [evaluate[r]["loss"] for r in range(1, ROUNDS + 1)]
    assert all(b < a for a, b in itertools.pairwise(losses)), losses  # more trees, lower loss
    print(f"xgboost: accuracy {evaluate[ROUNDS]['accuracy']:.3f} in {run.seconds:.0f} s")
