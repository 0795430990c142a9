"""Reading and checking replies: typed access to their records and why one is unusable.

The ``*_problem`` functions return ``None`` for a usable value, otherwise a short reason
that the round loop logs (``"leaving out the reply of node 7: <reason>"``).
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np

from glade.errors import RecordError
from glade.keys import METRICS
from glade.message import ErrorCode, Message
from glade.records import ArrayRecord, ConfigRecord, MetricRecord
from glade.strategies.aggregate import accumulator_dtype, flat_sum

__all__ = [
    "all_finite",
    "arrays_of",
    "arrays_problem",
    "error_problem",
    "reply_record",
    "reply_weight",
    "src_node",
    "weight_problem",
]

R = TypeVar("R", ArrayRecord, MetricRecord, ConfigRecord)


def src_node(reply: Message) -> int:
    """The node a reply comes from (the sort key that makes aggregation deterministic)."""
    return reply.metadata.src_node_id


def reply_record(reply: Message, key: str, kind: type[R]) -> R:
    """``reply.content[key]``, checked to be a ``kind`` (else :class:`RecordError`)."""
    if reply.content is None:
        raise RecordError(f"the reply of node {src_node(reply)} carries an error, not content")
    record = reply.content.get(key)
    if not isinstance(record, kind):
        raise RecordError(
            f"the reply of node {src_node(reply)} has no {kind.__name__} {key!r} "
            f"(content keys: {sorted(reply.content)})"
        )
    return record


def reply_weight(reply: Message, key: str) -> float:
    """The aggregation weight ``reply.content["metrics"][key]`` (else :class:`RecordError`)."""
    metrics = reply_record(reply, METRICS, MetricRecord)
    problem = weight_problem(metrics, key)
    if problem is not None:
        raise RecordError(f"the reply of node {src_node(reply)}: {problem}")
    value = metrics[key]
    assert isinstance(value, int | float)
    return float(value)


def error_problem(reply: Message) -> str | None:
    """Why an error reply is unusable (its code and the first line of its reason)."""
    if reply.error is None:
        return None
    try:
        code = ErrorCode(reply.error.code).name
    except ValueError:
        code = str(reply.error.code)
    first_line = reply.error.reason.strip().splitlines()[:1]
    return f"error reply {code}" + (f": {first_line[0]}" if first_line else "")


def weight_problem(metrics: MetricRecord, key: str) -> str | None:
    """Why ``metrics[key]`` cannot weigh the reply (missing, not a number, not > 0)."""
    if key not in metrics:
        return f"its metrics have no {key!r} (keys: {sorted(metrics)})"
    value = metrics[key]
    if not isinstance(value, int | float):
        return f"{key!r} must be a number, got a {type(value).__name__}"
    if not (math.isfinite(value) and value > 0):
        return f"{key!r} must be > 0, got {value}"
    return None


def arrays_of(
    weighted: list[tuple[ArrayRecord, float]],
) -> tuple[list[str], list[list[np.ndarray[Any, Any]]]]:
    """The array names and, per reply, its arrays as NumPy views (weights dropped)."""
    names = list(weighted[0][0])
    return names, [[record[name].numpy() for name in names] for record, _ in weighted]


def arrays_problem(expected: ArrayRecord, got: ArrayRecord) -> str | None:
    """Why ``got`` cannot be averaged with ``expected``: names, shapes, dtypes, NaN/inf."""
    if set(got) != set(expected):
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        return f"array names differ from the global arrays (missing {missing}, extra {extra})"
    for name, ref in expected.items():
        array = got[name]
        if array.shape != ref.shape or array.dtype != ref.dtype:
            return (
                f"array {name!r} is {array.dtype}{list(array.shape)}, the global array is "
                f"{ref.dtype}{list(ref.shape)}"
            )
    for name, array in got.items():
        if not all_finite(array.numpy()):
            return f"array {name!r} holds NaN or infinite values"
    return None


def all_finite(x: np.ndarray[Any, Any]) -> bool:
    """True when ``x`` has no NaN/inf (one fast sum, on several threads for large arrays;
    an exact scan only if that overflows)."""
    if x.dtype.kind in "biu":
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        # A finite sum implies finite elements (NaN and inf propagate through a sum).
        if np.isfinite(flat_sum(x, accumulator_dtype(x.dtype))):
            return True
        return bool(np.isfinite(x).all())
