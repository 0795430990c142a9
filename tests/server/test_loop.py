"""The round loop driving FedAvg through a simulated grid (inline backend, no processes)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from glade import (
    ArrayRecord,
    ClientApp,
    ConfigError,
    Context,
    Message,
    MetricRecord,
    NotEnoughNodesError,
    RecordDict,
    RunEvent,
    keys,
)
from glade.server.loop import wait_for_nodes
from glade.simulation import ClientAppSpec, NodeSpec, SimulationGrid
from glade.simulation.inline import InlineBackend
from glade.strategies import FedAvg, Result

INITIAL = {"w": np.zeros(3, np.float32)}


class DroppingBackend(InlineBackend):
    """Inline execution, except that messages to ``silent`` nodes are never answered."""

    def __init__(self, silent: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.silent = silent
        self.submitted: list[Message] = []

    def submit(self, messages: Sequence[Message]) -> None:
        self.submitted.extend(messages)
        super().submit([m for m in messages if m.metadata.dst_node_id not in self.silent])


def make_grid(
    app: ClientApp,
    num_nodes: int,
    *,
    silent: frozenset[int] = frozenset(),
    on_event: Callable[[RunEvent], None] | None = None,
    backend: DroppingBackend | None = None,
) -> SimulationGrid:
    backend = backend or DroppingBackend(silent)
    node_ids = list(range(1, num_nodes + 1))
    grid = SimulationGrid(run_id=1, node_ids=node_ids, backend=backend, on_event=on_event)
    backend.start(
        client_app=ClientAppSpec(app=app),
        nodes=[NodeSpec(n, {"partition-id": n - 1}) for n in node_ids],
        run_id=1,
        run_config={},
        on_replies=grid.deliver,
    )
    return grid


def shifting_app(behaviour: dict[int, str] | None = None) -> ClientApp:
    """Train: node n returns global + n with n examples, or misbehaves as told."""
    behaviour = behaviour or {}
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> RecordDict:
        node = context.node_id
        assert msg.content is not None
        w = msg.content[keys.ARRAYS]["w"].numpy()
        arrays: dict[str, Any] = {"w": w + np.float32(node)}
        metrics: dict[str, Any] = {keys.NUM_EXAMPLES: node, "lr": msg.content["config"]["lr"]}
        kind = behaviour.get(node, "ok")
        if kind == "raise":
            raise RuntimeError("data loader failed")
        if kind == "shape":
            arrays["w"] = np.zeros(4, np.float32)
        if kind == "dtype":
            arrays["w"] = arrays["w"].astype(np.float64)
        if kind == "nan":
            arrays["w"] = np.full(3, np.nan, np.float32)
        if kind == "no-num-examples":
            del metrics[keys.NUM_EXAMPLES]
        return RecordDict({keys.ARRAYS: ArrayRecord(arrays), keys.METRICS: MetricRecord(metrics)})

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> RecordDict:
        assert msg.content is not None
        w = msg.content[keys.ARRAYS]["w"].numpy()
        return RecordDict({keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 1, "w0": float(w[0])})})

    return app


def fedavg(**kwargs: Any) -> FedAvg:
    options: dict[str, Any] = {
        "min_train_nodes": 1,
        "min_evaluate_nodes": 1,
        "min_available_nodes": 1,
    }
    return FedAvg(**(options | kwargs))


def test_invalid_and_missing_replies_are_left_out_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    behaviour = {3: "raise", 4: "shape", 5: "dtype", 6: "nan", 7: "no-num-examples"}
    grid = make_grid(shifting_app(behaviour), 8, silent=frozenset({8}))
    with caplog.at_level(logging.WARNING, logger="glade.server.loop"):
        result = fedavg(fraction_evaluate=0.0).start(
            grid,
            initial_arrays=ArrayRecord(INITIAL),
            num_rounds=1,
            timeout=0.2,
            train_config={"lr": 0.5},
        )
    # Only nodes 1 and 2 count: (1 * 1 + 2 * 2) / 3
    np.testing.assert_allclose(result.arrays["w"].numpy(), np.full(3, 5 / 3), rtol=1e-6)
    assert result.history.failures["train"][1] == 6
    assert result.history.replies["train"][1] == 2
    assert result.history.metrics["train"][1] == {"num-examples": 3, "lr": 0.5}
    messages = "\n".join(r.getMessage() for r in caplog.records)
    for node, word in [
        (3, "data loader failed"),
        (4, "float32[4]"),
        (5, "float64"),
        (6, "NaN"),
        (7, "num-examples"),
    ]:
        assert f"reply of node {node}: " in messages and word in messages
    assert "no reply from 1 of 8 nodes" in messages and "(8)" in messages


def test_no_valid_reply_keeps_the_previous_arrays() -> None:
    grid = make_grid(shifting_app({1: "nan", 2: "raise"}), 2)
    initial = ArrayRecord({"w": np.arange(3, dtype=np.float32)})
    result = fedavg(fraction_evaluate=0.0).start(
        grid, initial_arrays=initial, num_rounds=2, train_config={"lr": 0.1}
    )
    assert result.arrays == initial and result.arrays is not initial
    assert result.history.failures["train"] == {1: 2, 2: 2}
    assert result.history.metrics["train"] == {1: {}, 2: {}}


def test_rounds_events_and_centralized_evaluation() -> None:
    events: list[RunEvent] = []
    calls: list[tuple[int, float]] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        calls.append((server_round, float(arrays["w"].numpy()[0])))
        return {"w0": float(arrays["w"].numpy()[0])}

    grid = make_grid(shifting_app(), 2, on_event=events.append)
    initial = ArrayRecord(INITIAL)
    result = fedavg().start(
        grid,
        initial_arrays=initial,
        num_rounds=3,
        train_config={"lr": 0.1},
        evaluate_fn=evaluate_fn,
    )
    step = (1 * 1 + 2 * 2) / 3  # each round adds the weighted mean of the node shifts
    assert [r for r, _ in calls] == [0, 1, 2, 3]
    assert [w for _, w in calls] == pytest.approx([0.0, step, 2 * step, 3 * step])
    assert result.history.metrics["centralized"][3]["w0"] == pytest.approx(3 * step)
    # Evaluate sees the arrays after that round's training.
    assert result.history.metrics["evaluate"][2]["w0"] == pytest.approx(2 * step)
    kinds = [(e.kind, e.stage, e.server_round) for e in events]
    assert kinds[:6] == [
        ("stage-finished", "centralized", 0),
        ("round-started", "", 1),
        ("stage-finished", "train", 1),
        ("stage-finished", "evaluate", 1),
        ("stage-finished", "centralized", 1),
        ("round-finished", "", 1),
    ]
    assert len(events) == 1 + 5 * 3 and all(e.num_rounds == 3 for e in events)
    assert grid.history.metrics == result.history.metrics
    assert initial == ArrayRecord(INITIAL)  # the caller's record is untouched
    assert isinstance(result, Result)
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["arrays"] == {"w": {"dtype": "float32", "shape": [3], "nbytes": 12}}
    assert summary["history"]["metrics"]["train"]["1"]["num-examples"] == 3


def test_instructions_carry_round_and_config() -> None:
    backend = DroppingBackend()
    fedavg(fraction_evaluate=0.0).start(
        make_grid(shifting_app(), 3, backend=backend),
        initial_arrays=ArrayRecord(INITIAL),
        num_rounds=2,
        train_config={"lr": 0.25},
    )
    sent = backend.submitted
    configs = [(m.metadata.group_id, dict(m.content["config"])) for m in sent]
    assert (
        configs
        == [("1", {"lr": 0.25, "server-round": 1})] * 3
        + [("2", {"lr": 0.25, "server-round": 2})] * 3
    )


def test_sampling_a_fraction_of_nodes() -> None:
    grid = make_grid(shifting_app(), 10)
    result = fedavg(fraction_train=0.3, fraction_evaluate=0.5, seed=5).start(
        grid, initial_arrays=ArrayRecord(INITIAL), num_rounds=2, train_config={"lr": 0.1}
    )
    assert result.history.replies["train"] == {1: 3, 2: 3}
    assert result.history.replies["evaluate"] == {1: 5, 2: 5}


def test_config_must_not_set_the_server_round() -> None:
    grid = make_grid(shifting_app(), 1)
    with pytest.raises(ConfigError, match="server-round"):
        fedavg().start(grid, initial_arrays=ArrayRecord(INITIAL), train_config={"server-round": 9})


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"num_rounds": -1}, ConfigError),
        ({"timeout": 0}, ConfigError),
        ({"initial_arrays": {"w": np.zeros(2)}}, TypeError),
        ({"evaluate_fn": 3}, TypeError),
    ],
)
def test_bad_start_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    grid = make_grid(shifting_app(), 1)
    options: dict[str, Any] = {"initial_arrays": ArrayRecord(INITIAL)} | kwargs
    with pytest.raises(error):
        fedavg().start(grid, **options)


def test_not_enough_nodes_after_a_short_wait() -> None:
    grid = make_grid(shifting_app(), 2)
    started = time.monotonic()
    with pytest.raises(NotEnoughNodesError, match=r"at least 3 nodes, but only 2"):
        FedAvg(min_available_nodes=3).start(
            grid, initial_arrays=ArrayRecord(INITIAL), node_wait_timeout=0.2
        )
    assert 0.2 <= time.monotonic() - started < 2.0


def test_waits_until_enough_nodes_are_connected() -> None:
    class Growing:
        def __init__(self) -> None:
            self.calls = 0

        def get_node_ids(self) -> list[int]:
            self.calls += 1
            return [1, 2, 3][: min(3, self.calls)]

    grid = Growing()
    assert wait_for_nodes(grid, 3, timeout=5.0) == [1, 2, 3]
    assert grid.calls == 3


def test_a_stage_is_configured_with_the_node_list_its_wait_fetched() -> None:
    grid = make_grid(shifting_app(), 3)
    calls: list[list[int]] = []
    real = grid.get_node_ids

    def counted() -> list[int]:
        calls.append(real())
        return calls[-1]

    grid.get_node_ids = counted  # type: ignore[method-assign]
    result = fedavg(fraction_evaluate=0.0).start(
        grid, initial_arrays=ArrayRecord(INITIAL), num_rounds=2, train_config={"lr": 0.1}
    )
    assert result.history.replies["train"] == {1: 3, 2: 3}
    # per round: the wait for nodes, then the push's check; the strategy's sampling reused
    # the wait's list instead of asking a third time
    assert len(calls) == 2 * 2


def test_each_reply_is_checked_as_it_arrives_before_the_next_is_awaited() -> None:
    grid = make_grid(shifting_app(), 3)
    events: list[str] = []
    real_pull = grid.pull_messages

    def one_at_a_time(message_ids: Any, *, timeout: float = 0.0) -> list[Message]:
        replies = real_pull(message_ids, timeout=timeout)
        grid.deliver(replies[1:])  # the others "arrive" for the next pull
        events.append(f"pull {len(replies[:1])}")
        return replies[:1]

    grid.pull_messages = one_at_a_time  # type: ignore[method-assign]

    class Recording(FedAvg):
        def check_reply(self, server_round: int, reply: Message, **kwargs: Any) -> str | None:
            events.append(f"check {reply.metadata.src_node_id}")
            return super().check_reply(server_round, reply, **kwargs)

    result = Recording(fraction_evaluate=0.0, min_available_nodes=3).start(
        grid, initial_arrays=ArrayRecord(INITIAL), num_rounds=1, train_config={"lr": 0.1}
    )
    assert result.history.replies["train"] == {1: 3}
    checks = [i for i, e in enumerate(events) if e.startswith("check")]
    pulls = [i for i, e in enumerate(events) if e == "pull 1"]
    assert len(checks) == 3 and len(pulls) == 3
    assert checks[0] < pulls[1] and checks[1] < pulls[2]  # checked before the next wait
