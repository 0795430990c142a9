"""The round loop's hooks for checkpoints: on_round_end, a continued history, first_round."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from glade import (
    ArrayRecord,
    ClientApp,
    ConfigError,
    Context,
    Message,
    MetricRecord,
    RecordDict,
    keys,
)
from glade.server import History
from glade.server.loop import RoundLoop
from glade.simulation import ClientAppSpec, NodeSpec, SimulationGrid
from glade.simulation.inline import InlineBackend
from glade.strategies import FedAvg, Krum

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> RecordDict:
    w = msg.content[keys.ARRAYS]["w"].numpy()
    metrics = MetricRecord({keys.NUM_EXAMPLES: 1})
    return RecordDict({keys.ARRAYS: ArrayRecord({"w": w + 1}), keys.METRICS: metrics})


def grid(num_nodes: int = 2) -> SimulationGrid:
    backend = InlineBackend()
    node_ids = list(range(1, num_nodes + 1))
    g = SimulationGrid(run_id=1, node_ids=node_ids, backend=backend)
    backend.start(
        client_app=ClientAppSpec(app=app),
        nodes=[NodeSpec(n, {}) for n in node_ids],
        run_id=1,
        run_config={},
        on_replies=g.deliver,
    )
    return g


def strategy() -> FedAvg:
    return FedAvg(fraction_evaluate=0.0, min_available_nodes=2)


def test_on_round_end_sees_every_finished_round() -> None:
    seen: list[tuple[int, float, list[int]]] = []

    def on_round_end(server_round: int, arrays: ArrayRecord, history: History) -> None:
        seen.append((server_round, float(arrays["w"].numpy()[0]), sorted(history.metrics["train"])))

    loop = RoundLoop(strategy(), grid(), on_round_end=on_round_end)
    loop.run(ArrayRecord({"w": np.zeros(2)}), num_rounds=3)
    assert seen == [(1, 1.0, [1]), (2, 2.0, [1, 2]), (3, 3.0, [1, 2, 3])]


def test_a_continued_run_starts_at_first_round_with_the_given_history() -> None:
    history = History()
    history.metrics = {"train": {1: {"num-examples": 2}}, "centralized": {0: {"x": 1.0}}}
    calls: list[int] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        calls.append(server_round)
        return {"x": float(arrays["w"].numpy()[0])}

    loop = RoundLoop(strategy(), grid(), history=history, evaluate_fn=evaluate_fn)
    out = loop.run(ArrayRecord({"w": np.full(2, 5.0)}), num_rounds=3, first_round=2)
    assert calls == [2, 3]  # no round-0 evaluation when continuing
    assert out["w"].numpy().tolist() == [7.0, 7.0]
    assert loop.history is history and sorted(history.metrics["train"]) == [1, 2, 3]
    assert history.metrics["centralized"][0] == {"x": 1.0}


@pytest.mark.parametrize("first_round", [0, 5, 1.0, True])
def test_first_round_is_validated(first_round: object) -> None:
    loop = RoundLoop(strategy(), grid())
    with pytest.raises(ConfigError, match="first_round"):
        loop.run(ArrayRecord({"w": np.zeros(1)}), num_rounds=3, first_round=first_round)  # type: ignore[arg-type]


def test_on_round_end_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_round_end"):
        RoundLoop(strategy(), grid(), on_round_end=3)  # type: ignore[arg-type]


def test_a_strategy_that_declines_to_aggregate_keeps_the_arrays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Krum(f=1) needs 5 replies; only 3 nodes reply (min_train_nodes lowered on purpose).
    krum = Krum(num_byzantine=1, min_train_nodes=5, fraction_evaluate=0.0, min_available_nodes=1)
    krum.min_train_nodes = 3
    with caplog.at_level(logging.WARNING):
        result = krum.start(grid(3), initial_arrays=ArrayRecord({"w": np.zeros(2)}), num_rounds=1)
    assert result.arrays["w"].numpy().tolist() == [0.0, 0.0]
    text = caplog.text
    assert "Krum(f=1, m=1) needs 5 valid replies, got 3" in text
    assert "no new arrays from 3 valid train replies" in text
