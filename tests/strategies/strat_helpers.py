"""Shared helpers of the strategy-library tests: replies without a grid, mixed-dtype records."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from glade import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict, keys
from glade.strategies import FedAvg

BF16 = np.dtype(ml_dtypes.bfloat16)
F64 = np.float64

# name -> (dtype, shape): one of each kind a model holds (an int64 batch-norm counter too).
SPECS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "f64": (np.float64, (3, 4)),
    "f32": (np.float32, (7,)),
    "f16": (np.float16, (2, 3)),
    "bf16": (BF16, (5,)),
    "count": (np.int64, (3,)),
}

# Tolerance of a result in each dtype against a float64 reference (a few ulps at ~1).
RTOL = {"f64": 1e-10, "f32": 2e-5, "f16": 4e-3, "bf16": 2e-2, "count": 0.0}


class NodesOnly:
    """Just enough of a Grid for configure_*: the strategy only lists node ids."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)


def random_record(rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
    out = {}
    for name, (dtype, shape) in SPECS.items():
        if np.dtype(dtype).kind in "iu":
            out[name] = rng.integers(0, 1000, size=shape).astype(dtype)
        else:
            out[name] = (scale * rng.standard_normal(shape)).astype(dtype)
    return out


def train_reply(node: int, arrays: dict[str, Any], metrics: dict[str, Any]) -> Message:
    sent = Message(
        RecordDict({keys.CONFIG: ConfigRecord({keys.SERVER_ROUND: 1})}),
        dst_node_id=node,
        message_type="train",
        group_id="1",
    )
    content = RecordDict({keys.ARRAYS: ArrayRecord(arrays), keys.METRICS: MetricRecord(metrics)})
    return Message.reply(sent, content)


def run_round(
    strategy: FedAvg,
    server_round: int,
    current: ArrayRecord,
    replies: list[tuple[dict[str, Any], dict[str, Any]]],
) -> ArrayRecord | None:
    """configure_train + check_reply + aggregate_train, as the round loop would (node i+1)."""
    nodes = list(range(1, len(replies) + 1))
    strategy.configure_train(server_round, current, ConfigRecord(), NodesOnly(nodes))
    messages = [train_reply(n, a, m) for n, (a, m) in zip(nodes, replies, strict=True)]
    for message in messages:
        problem = strategy.check_reply(server_round, message, stage="train", arrays=current)
        assert problem is None, problem
    arrays, _ = strategy.aggregate_train(server_round, messages[::-1])  # order must not matter
    return arrays


def as_f64(record: ArrayRecord | dict[str, Any]) -> dict[str, np.ndarray]:
    return {n: np.asarray(a).astype(F64) for n, a in record.items()}


def assert_close(got: ArrayRecord, want: dict[str, np.ndarray], scale: float = 1.0) -> None:
    """``got`` keeps each input dtype and matches the float64 reference within its ulps."""
    assert list(got) == list(SPECS)
    for name, (dtype, shape) in SPECS.items():
        array = got[name].numpy()
        assert array.dtype == np.dtype(dtype) and array.shape == shape, name
        if np.dtype(dtype).kind in "iu":
            np.testing.assert_array_equal(array, np.rint(want[name]), err_msg=name)
        else:
            np.testing.assert_allclose(
                array.astype(F64),
                want[name],
                rtol=RTOL[name],
                atol=RTOL[name] * scale,
                err_msg=name,
            )
