"""FedAvg as policy: sampling, instructions, reply checks and aggregation (no grid I/O)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from glade import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    Error,
    ErrorCode,
    Message,
    MetricRecord,
    RecordDict,
    keys,
)
from glade.strategies import FedAvg, Strategy


class NodesOnly:
    """Just enough of a Grid for configure_*: the strategy only lists node ids."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)


GLOBAL = ArrayRecord({"w": np.zeros((2, 2), np.float32), "b": np.zeros(2, np.float32)})


def instruction(node: int, message_type: str = "train") -> Message:
    content = RecordDict({keys.ARRAYS: GLOBAL, keys.CONFIG: ConfigRecord({"server-round": 1})})
    return Message(content, dst_node_id=node, message_type=message_type, group_id="1")


def train_reply(node: int, arrays: dict[str, Any] | None, metrics: dict[str, Any]) -> Message:
    content = RecordDict({keys.METRICS: MetricRecord(metrics)})
    if arrays is not None:
        content[keys.ARRAYS] = ArrayRecord(arrays)
    return Message.reply(instruction(node), content)


def good_arrays(value: float) -> dict[str, Any]:
    return {"w": np.full((2, 2), value, np.float32), "b": np.full(2, -value, np.float32)}


def strategy(**kwargs: Any) -> FedAvg:
    options: dict[str, Any] = {
        "min_train_nodes": 1,
        "min_evaluate_nodes": 1,
        "min_available_nodes": 1,
    }
    return FedAvg(**(options | kwargs))


# -- construction ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"fraction_train": 0.0},
        {"fraction_train": 1.5},
        {"fraction_evaluate": -0.1},
        {"min_train_nodes": -1},
        {"min_available_nodes": 0},
        {"min_evaluate_nodes": 1.5},
        {"weighted_by_key": ""},
    ],
)
def test_bad_options_are_config_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        FedAvg(**kwargs)


def test_non_callable_aggregation_fn_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="train_metrics_aggr_fn"):
        FedAvg(train_metrics_aggr_fn=42)


def test_strategy_is_abstract() -> None:
    with pytest.raises(TypeError):
        Strategy()


# -- sampling ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fraction", "least", "available", "expected"),
    [(1.0, 2, 10, 10), (0.5, 2, 10, 5), (0.1, 3, 10, 3), (0.3, 0, 2, 1), (0.5, 8, 5, 5)],
)
def test_sample_size_is_fraction_with_a_minimum(
    fraction: float, least: int, available: int, expected: int
) -> None:
    s = strategy(fraction_train=fraction, min_train_nodes=least, seed=1)
    nodes = s.sample_nodes(range(100, 100 + available), stage="train", server_round=1)
    assert len(nodes) == expected
    assert nodes == sorted(set(nodes)) and set(nodes) <= set(range(100, 100 + available))


def test_seeded_sampling_is_reproducible_and_order_independent() -> None:
    ids = list(range(1, 51))
    a = strategy(fraction_train=0.2, seed=123)
    b = strategy(fraction_train=0.2, seed=123)
    rounds_a = [a.sample_nodes(ids, stage="train", server_round=r) for r in range(1, 6)]
    rounds_b = [b.sample_nodes(ids[::-1], stage="train", server_round=r) for r in range(1, 6)]
    assert rounds_a == rounds_b
    assert len({tuple(r) for r in rounds_a}) > 1  # different rounds, different samples
    other = strategy(fraction_train=0.2, seed=124)
    assert [other.sample_nodes(ids, stage="train", server_round=r) for r in range(1, 6)] != (
        rounds_a
    )


def test_evaluate_fraction_zero_turns_evaluation_off() -> None:
    s = strategy(fraction_evaluate=0.0)
    assert s.required_nodes("evaluate") == 0
    assert s.configure_evaluate(1, GLOBAL, ConfigRecord(), NodesOnly([1, 2])) == []


def test_required_nodes_covers_the_minimums() -> None:
    s = FedAvg(min_train_nodes=5, min_evaluate_nodes=3, min_available_nodes=4)
    assert s.required_nodes("train") == 5
    assert s.required_nodes("evaluate") == 4


# -- instructions ------------------------------------------------------------------------
def test_configure_train_builds_one_instruction_per_sampled_node() -> None:
    config = ConfigRecord({"lr": 0.1})
    s = strategy()
    messages = s.configure_train(3, GLOBAL, config, NodesOnly([7, 5, 9]))
    assert sorted(m.metadata.dst_node_id for m in messages) == [5, 7, 9]
    for m in messages:
        assert m.message_type == "train" and m.metadata.group_id == "3"
        assert m.content is not None
        assert m.content[keys.ARRAYS] == GLOBAL
        assert dict(m.content[keys.CONFIG]) == {"lr": 0.1, keys.SERVER_ROUND: 3}
    # Each node gets its own records; the caller's records are untouched.
    assert messages[0].content is not messages[1].content
    assert messages[0].content[keys.ARRAYS] is not GLOBAL
    assert dict(config) == {"lr": 0.1}
    assert s.current_arrays is GLOBAL


def test_configure_evaluate_uses_the_evaluate_type() -> None:
    messages = strategy().configure_evaluate(2, GLOBAL, ConfigRecord(), NodesOnly([1, 2]))
    assert {m.message_type for m in messages} == {"evaluate"}
    assert {m.metadata.group_id for m in messages} == {"2"}


# -- aggregation -------------------------------------------------------------------------
def test_aggregate_train_is_the_hand_computed_weighted_mean() -> None:
    replies = [
        train_reply(2, good_arrays(3.0), {"num-examples": 30, "loss": 1.0}),
        train_reply(1, good_arrays(1.0), {"num-examples": 10, "loss": 2.0}),
    ]
    arrays, metrics = strategy().aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    # (1 * 10 + 3 * 30) / 40 = 2.5
    np.testing.assert_array_equal(arrays["w"].numpy(), np.full((2, 2), 2.5, np.float32))
    np.testing.assert_array_equal(arrays["b"].numpy(), np.full(2, -2.5, np.float32))
    assert arrays["w"].dtype == "float32"
    assert metrics["loss"] == pytest.approx((2.0 * 10 + 1.0 * 30) / 40)
    assert metrics["num-examples"] == 40


def test_aggregate_train_ignores_reply_order() -> None:
    rng = np.random.default_rng(0)
    replies = [
        train_reply(
            n,
            {
                "w": rng.standard_normal((2, 2)).astype(np.float32),
                "b": rng.standard_normal(2).astype(np.float32),
            },
            {"num-examples": int(rng.integers(1, 100))},
        )
        for n in range(1, 8)
    ]
    a, _ = strategy().aggregate_train(1, replies)
    b, _ = strategy().aggregate_train(1, replies[::-1])
    assert a == b  # bit for bit: aggregation order is by node id


def test_aggregate_with_no_replies_keeps_nothing() -> None:
    assert strategy().aggregate_train(1, []) == (None, None)
    assert strategy().aggregate_evaluate(1, []) is None


def test_custom_weight_key_and_metric_functions() -> None:
    seen: list[list[MetricRecord]] = []

    def total_loss(records: list[MetricRecord]) -> MetricRecord:
        seen.append(records)
        return MetricRecord({"total": sum(float(r["loss"]) for r in records)})

    s = strategy(
        weighted_by_key="steps",
        train_metrics_aggr_fn=total_loss,
        evaluate_metrics_aggr_fn=total_loss,
    )
    replies = [
        train_reply(1, good_arrays(0.0), {"steps": 1, "loss": 1.0}),
        train_reply(2, good_arrays(4.0), {"steps": 3, "loss": 2.0}),
    ]
    arrays, metrics = s.aggregate_train(1, replies)
    assert arrays is not None
    np.testing.assert_array_equal(arrays["w"].numpy(), np.full((2, 2), 3.0, np.float32))
    assert metrics == MetricRecord({"total": 3.0})
    assert s.aggregate_evaluate(1, replies) == MetricRecord({"total": 3.0})
    assert [r.metadata.src_node_id for r in replies] == [1, 2] and len(seen) == 2


def test_aggregate_evaluate_weighted_mean() -> None:
    replies = [
        Message.reply(
            instruction(n, "evaluate"),
            RecordDict({keys.METRICS: MetricRecord({"num-examples": n, "acc": acc})}),
        )
        for n, acc in ((1, 0.0), (3, 1.0))
    ]
    metrics = strategy().aggregate_evaluate(1, replies)
    assert metrics is not None and metrics["acc"] == pytest.approx(0.75)


# -- reply checks ------------------------------------------------------------------------
BAD_TRAIN_REPLIES = {
    "error reply": lambda: Message.error_reply(
        instruction(1), Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason="boom\ntrace")
    ),
    "no metrics": lambda: Message.reply(
        instruction(1), RecordDict({keys.ARRAYS: ArrayRecord(good_arrays(1.0))})
    ),
    "missing num-examples": lambda: train_reply(1, good_arrays(1.0), {"loss": 1.0}),
    "zero num-examples": lambda: train_reply(1, good_arrays(1.0), {"num-examples": 0}),
    "list num-examples": lambda: train_reply(1, good_arrays(1.0), {"num-examples": [1, 2]}),
    "no arrays": lambda: train_reply(1, None, {"num-examples": 1}),
    "missing array": lambda: train_reply(
        1, {"w": np.zeros((2, 2), np.float32)}, {"num-examples": 1}
    ),
    "extra array": lambda: train_reply(
        1, good_arrays(1.0) | {"x": np.zeros(1, np.float32)}, {"num-examples": 1}
    ),
    "wrong shape": lambda: train_reply(
        1, good_arrays(1.0) | {"b": np.zeros(3, np.float32)}, {"num-examples": 1}
    ),
    "wrong dtype": lambda: train_reply(
        1, good_arrays(1.0) | {"b": np.zeros(2, np.float64)}, {"num-examples": 1}
    ),
    "nan": lambda: train_reply(1, good_arrays(float("nan")), {"num-examples": 1}),
    "inf": lambda: train_reply(
        1, good_arrays(1.0) | {"b": np.array([1, np.inf], np.float32)}, {"num-examples": 1}
    ),
}

REASON_WORDS = {
    "error reply": "CLIENT_APP_RAISED_EXCEPTION: boom",
    "no metrics": "MetricRecord",
    "missing num-examples": "num-examples",
    "zero num-examples": "> 0",
    "list num-examples": "number",
    "no arrays": "ArrayRecord",
    "missing array": "missing ['b']",
    "extra array": "extra ['x']",
    "wrong shape": "float32[3]",
    "wrong dtype": "float64[2]",
    "nan": "NaN",
    "inf": "NaN or infinite",
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN_REPLIES))
def test_check_reply_rejects_with_a_reason(case: str) -> None:
    reason = strategy().check_reply(1, BAD_TRAIN_REPLIES[case](), stage="train", arrays=GLOBAL)
    assert reason is not None and REASON_WORDS[case] in reason


def test_check_reply_accepts_good_replies() -> None:
    s = strategy()
    good = train_reply(1, good_arrays(1.0), {"num-examples": 5})
    assert s.check_reply(1, good, stage="train", arrays=GLOBAL) is None
    evaluate = Message.reply(
        instruction(1, "evaluate"), RecordDict({keys.METRICS: MetricRecord({"num-examples": 2})})
    )
    assert s.check_reply(1, evaluate, stage="evaluate", arrays=GLOBAL) is None


def test_check_reply_finds_nan_when_the_quick_sum_overflows() -> None:
    huge = np.full((2, 2), 3e38, np.float32)  # finite, but its float32 sum is inf
    ok = train_reply(1, good_arrays(1.0) | {"w": huge}, {"num-examples": 1})
    assert strategy().check_reply(1, ok, stage="train", arrays=GLOBAL) is None
    huge_nan = huge.copy()
    huge_nan[1, 1] = np.nan
    bad = train_reply(1, good_arrays(1.0) | {"w": huge_nan}, {"num-examples": 1})
    assert "NaN" in (strategy().check_reply(1, bad, stage="train", arrays=GLOBAL) or "")


def test_repr_names_the_options() -> None:
    assert "fraction_train=0.5" in repr(FedAvg(fraction_train=0.5, seed=3))
