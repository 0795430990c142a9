"""Federated XGBoost: tree merging checked against XGBoost's own predictions, and runs.

Reference for bagging: the merged model's margin must be the weighted mean of the nodes'
margins (``sum_trees``: the global margin plus the sum of the nodes' increments), which
XGBoost computes independently from each node's own booster.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from glade import (
    ArrayRecord,
    ClientApp,
    Context,
    Message,
    MetricRecord,
    RecordDict,
    ServerApp,
    keys,
)
from glade.errors import RecordError
from glade.server import Grid
from glade.simulation import run_simulation
from glade.strategies import FedXgbBagging, FedXgbCyclic, Result
from glade.strategies.xgbtrees import (
    TreeModel,
    bag_models,
    booster_from_arrays,
    booster_to_arrays,
    empty_model,
    model_bytes,
    model_record,
)

xgb = pytest.importorskip("xgboost")

PARAMS = {
    "objective": "binary:logistic",
    "max_depth": 2,
    "eta": 0.3,
    "base_score": 0.5,
    "nthread": 1,
}


def data(seed: int, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    shift = 0.5 * (seed % 3)
    y = (x[:, 0] + 0.5 * x[:, 1] + shift * x[:, 2] > 0).astype(np.float64)
    return x, y


def grow(seed: int, rounds: int, base: Any = None, params: dict[str, Any] | None = None) -> Any:
    x, y = data(seed)
    dtrain = xgb.DMatrix(x, label=y)
    return xgb.train(params or PARAMS, dtrain, num_boost_round=rounds, xgb_model=base)


def raw(booster: Any) -> bytes:
    return model_bytes(booster_to_arrays(booster))


def margin(model: bytes | Any, x: np.ndarray) -> np.ndarray:
    booster = booster_from_arrays(model_record(model)) if isinstance(model, bytes) else model
    return booster.predict(xgb.DMatrix(x), output_margin=True).astype(np.float64)


X_TEST = data(99, n=50)[0]


@pytest.mark.parametrize("from_scratch", [True, False])
def test_bagging_is_the_weighted_mean_of_node_margins(from_scratch: bool) -> None:
    base = None if from_scratch else grow(0, 2)
    nodes = [grow(seed, 3, base=base) for seed in (1, 2, 3)]
    weights = [10.0, 30.0, 60.0]
    merged = bag_models(
        b"" if base is None else raw(base),
        [(raw(b), w) for b, w in zip(nodes, weights, strict=True)],
    )
    want = sum(w * margin(b, X_TEST) for b, w in zip(nodes, weights, strict=True)) / sum(weights)
    np.testing.assert_allclose(margin(merged, X_TEST), want, rtol=1e-5, atol=1e-5)
    before = 0 if base is None else base.num_boosted_rounds()
    assert booster_from_arrays(model_record(merged)).num_boosted_rounds() == before + 3 * 3


def test_sum_trees_adds_every_node_increment() -> None:
    base = grow(0, 2)
    nodes = [grow(seed, 2, base=base) for seed in (1, 2)]
    merged = bag_models(raw(base), [(raw(b), 1.0) for b in nodes], sum_trees=True)
    g = margin(base, X_TEST)
    want = g + sum(margin(b, X_TEST) - g for b in nodes)
    np.testing.assert_allclose(margin(merged, X_TEST), want, rtol=1e-5, atol=1e-5)


def test_multiclass_models_merge_by_iteration() -> None:
    params = {**PARAMS, "objective": "multi:softprob", "num_class": 3, "base_score": 0.5}
    rng = np.random.default_rng(0)
    models = []
    for _ in range(2):
        x = rng.normal(size=(90, 4))
        y = np.argmax(x[:, :3], axis=1)
        models.append(xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=2))
    merged = bag_models(b"", [(raw(m), 1.0) for m in models])
    tree_model = TreeModel.parse(merged)
    assert tree_model.num_iterations == 4 and len(tree_model.trees) == 12
    assert tree_model.tree_info == [0, 1, 2] * 4
    want = sum(margin(m, X_TEST) for m in models) / 2
    np.testing.assert_allclose(margin(merged, X_TEST), want, rtol=1e-5, atol=1e-5)


def test_models_that_do_not_extend_the_global_one_are_refused() -> None:
    base = grow(0, 2)
    other_base_score = grow(1, 3, params={**PARAMS, "base_score": 0.3})
    with pytest.raises(RecordError, match="reply 0: its first trees"):
        bag_models(raw(base), [(raw(grow(1, 3)), 1.0)])  # trained from scratch
    with pytest.raises(RecordError, match="base_score"):
        bag_models(raw(base), [(raw(other_base_score), 1.0)])
    with pytest.raises(RecordError, match="not XGBoost JSON"):
        bag_models(b"", [(b"{nope", 1.0)])
    with pytest.raises(RecordError, match="one array 'model'"):
        model_bytes(ArrayRecord({"w": np.zeros(2)}))
    assert booster_from_arrays(empty_model()) is None


def test_merging_edits_only_the_tree_lists() -> None:
    base = grow(0, 1)
    merged = json.loads(bag_models(raw(base), [(raw(grow(1, 2, base=base)), 1.0)]))
    model = merged["learner"]["gradient_booster"]["model"]
    assert [t["id"] for t in model["trees"]] == [0, 1, 2]
    assert model["gbtree_model_param"]["num_trees"] == "3"
    assert model["iteration_indptr"] == [0, 1, 2, 3]
    original = json.loads(raw(base))["learner"]
    assert merged["learner"]["learner_model_param"] == original["learner_model_param"]


# -- runs ------------------------------------------------------------------------------------
LOCAL_ROUNDS = 2
client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> RecordDict:
    x, y = data(int(context.node_config["partition-id"]))
    booster = booster_from_arrays(msg.content[keys.ARRAYS], PARAMS)
    dtrain = xgb.DMatrix(x, label=y)
    booster = xgb.train(PARAMS, dtrain, num_boost_round=LOCAL_ROUNDS, xgb_model=booster)
    metrics = MetricRecord({keys.NUM_EXAMPLES: len(y)})
    return RecordDict({keys.ARRAYS: booster_to_arrays(booster), keys.METRICS: metrics})


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> RecordDict:
    x, y = data(int(context.node_config["partition-id"]) + 50)
    booster = booster_from_arrays(msg.content[keys.ARRAYS], PARAMS)
    accuracy = float(np.mean((booster.predict(xgb.DMatrix(x)) > 0.5) == y))
    metrics = MetricRecord({keys.NUM_EXAMPLES: len(y), "accuracy": accuracy})
    return RecordDict({keys.METRICS: metrics})


def simulate(strategy: Any, rounds: int, nodes: int) -> Result:
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> Result:
        return strategy.start(grid, initial_arrays=empty_model(), num_rounds=rounds)

    sim = run_simulation(
        server_app, client_app, num_supernodes=nodes, backend="inline", seed=5, raise_on_error=True
    )
    assert isinstance(sim.return_value, Result)
    return sim.return_value


def test_bagging_run_grows_every_nodes_trees_and_learns() -> None:
    result = simulate(FedXgbBagging(min_available_nodes=3, min_evaluate_nodes=3), rounds=3, nodes=3)
    booster = booster_from_arrays(result.arrays)
    assert booster.num_boosted_rounds() == 3 * 3 * LOCAL_ROUNDS
    evaluate = result.history.metrics["evaluate"]
    assert evaluate[3]["accuracy"] > 0.85
    assert all(n == 0 for n in result.history.failures["train"].values())


def test_cyclic_run_trains_one_node_per_round_in_turn() -> None:
    strategy = FedXgbCyclic(min_available_nodes=2, min_evaluate_nodes=2, fraction_evaluate=1.0)
    assert strategy.sample_nodes([30, 10, 20], stage="train", server_round=1) == [10]
    assert strategy.sample_nodes([30, 10, 20], stage="train", server_round=5) == [20]
    result = simulate(strategy, rounds=4, nodes=2)
    assert booster_from_arrays(result.arrays).num_boosted_rounds() == 4 * LOCAL_ROUNDS
    assert set(result.history.replies["train"].values()) == {1}
    assert result.history.metrics["evaluate"][4]["accuracy"] > 0.8
    with pytest.raises(TypeError, match="fraction_train"):
        FedXgbCyclic(fraction_train=0.5)
