"""End to end: FedAvg trains a NumPy linear regression over simulated nodes."""

from __future__ import annotations

import numpy as np

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
from glade.server import Grid
from glade.simulation import run_simulation
from glade.strategies import FedAvg, Result

TRUE_W = np.array([2.0, -1.0, 0.5])
TRUE_B = 0.3


def partition(partition_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Node-local data: a different size and input distribution on every node."""
    rng = np.random.default_rng(partition_id)
    x = rng.normal(loc=partition_id * 0.2, size=(20 + 10 * partition_id, 3))
    y = x @ TRUE_W + TRUE_B + 0.01 * rng.standard_normal(len(x))
    return x, y


def mse(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((x @ w + b - y) ** 2))


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> RecordDict:
    x, y = partition(int(context.node_config["partition-id"]))
    arrays = msg.content[keys.ARRAYS]
    config = msg.content[keys.CONFIG]
    w, b = arrays["w"].numpy(copy=True), arrays["b"].numpy(copy=True)
    for _ in range(int(config["local-steps"])):
        error = x @ w + b - y
        w -= float(config["lr"]) * 2 * x.T @ error / len(y)
        b -= float(config["lr"]) * 2 * error.mean(keepdims=True)
    return RecordDict(
        {
            keys.ARRAYS: ArrayRecord({"w": w, "b": b}),
            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: len(y), "loss": mse(x, y, w, b)}),
        }
    )


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> RecordDict:
    x, y = partition(int(context.node_config["partition-id"]))
    arrays = msg.content[keys.ARRAYS]
    loss = mse(x, y, arrays["w"].numpy(), arrays["b"].numpy())
    return RecordDict({keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: len(y), "loss": loss})})


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> Result:
    strategy = FedAvg(
        fraction_train=0.6,
        min_train_nodes=2,
        min_evaluate_nodes=2,
        min_available_nodes=5,
        seed=11,
    )
    return strategy.start(
        grid,
        initial_arrays=ArrayRecord({"w": np.zeros(3), "b": np.zeros(1)}),
        num_rounds=25,
        train_config={"lr": 0.05, "local-steps": 5},
        evaluate_fn=lambda server_round, arrays: {
            "distance": float(np.linalg.norm(arrays["w"].numpy() - TRUE_W))
        },
    )


def simulate(seed: int) -> Result:
    sim = run_simulation(
        server_app,
        client_app,
        num_supernodes=5,
        backend="inline",
        seed=seed,
        raise_on_error=True,
    )
    assert sim.status == "completed"
    assert isinstance(sim.return_value, Result)
    assert sim.history.metrics == sim.return_value.history.metrics
    return sim.return_value


def test_linear_regression_converges() -> None:
    result = simulate(seed=1)
    np.testing.assert_allclose(result.arrays["w"].numpy(), TRUE_W, atol=0.02)
    np.testing.assert_allclose(result.arrays["b"].numpy(), [TRUE_B], atol=0.02)
    evaluate = result.history.metrics["evaluate"]
    assert evaluate[25]["loss"] < 0.01 * evaluate[1]["loss"]
    distance = result.history.metrics["centralized"]
    assert distance[0]["distance"] > 2 and distance[25]["distance"] < 0.02
    assert result.history.replies["train"][1] == 3  # 60% of 5 nodes
    assert all(n == 0 for n in result.history.failures["train"].values())


def test_same_seed_same_arrays_bit_for_bit() -> None:
    first, second = simulate(seed=4), simulate(seed=4)
    assert first.arrays == second.arrays
    assert first.history.metrics == second.history.metrics
    assert simulate(seed=5).arrays != first.arrays  # sampling and node ids follow the seed
