"""Hypothesis strategies for Glade messages, and a type-strict equality check for tests."""

from __future__ import annotations

import math
from typing import Any

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

from glade import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)

INT64 = st.integers(-(2**63), 2**63 - 1)
IDS = st.integers(0, 2**63 - 1)
FLOATS = st.floats(allow_nan=False)
TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
KEYS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)

DTYPES = [
    np.dtype(name)
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "longdouble",
        "complex64",
        "complex128",
        "clongdouble",
    )
] + [np.dtype(ml_dtypes.bfloat16), np.dtype(ml_dtypes.float8_e4m3fn)]


@st.composite
def arrays(draw: st.DrawFn) -> Array:
    """Arrays of every numeric dtype, 0-d to 3-d, empty included, with arbitrary bytes."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    nbytes = math.prod(shape) * dtype.itemsize
    raw = draw(st.binary(min_size=nbytes, max_size=nbytes))
    if dtype.kind == "b":
        raw = bytes(b & 1 for b in raw)
    return Array(np.frombuffer(raw, dtype=dtype).reshape(shape))


metric_values = st.one_of(
    INT64, FLOATS, st.lists(INT64, max_size=4), st.lists(FLOATS, min_size=1, max_size=4)
)
config_scalars = [st.booleans(), INT64, FLOATS, TEXT, st.binary(max_size=8)]
config_values = st.one_of(*config_scalars, *(st.lists(s, max_size=4) for s in config_scalars))

records = st.one_of(
    st.dictionaries(KEYS, arrays(), max_size=3).map(ArrayRecord),
    st.dictionaries(KEYS, metric_values, max_size=4).map(MetricRecord),
    st.dictionaries(KEYS, config_values, max_size=4).map(ConfigRecord),
)
record_dicts = st.dictionaries(KEYS, records, max_size=4).map(RecordDict)

metadata = st.builds(
    Metadata,
    run_id=IDS,
    message_id=TEXT,
    src_node_id=IDS,
    dst_node_id=IDS,
    reply_to_message_id=TEXT,
    group_id=TEXT,
    message_type=st.from_regex(r"[a-z][a-z0-9_\-]{0,8}(\.[a-z0-9_\-]{1,6})?", fullmatch=True),
    ttl=st.floats(min_value=0.0, exclude_min=True, allow_nan=False),
    created_at=FLOATS,
)
errors = st.builds(Error, code=INT64, reason=TEXT)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    md = draw(metadata)
    if draw(st.booleans()):
        return Message(draw(record_dicts), metadata=md)
    return Message(error=draw(errors), metadata=md)


user_configs = st.dictionaries(KEYS, st.one_of(st.booleans(), INT64, FLOATS, TEXT), max_size=4)
contexts = st.builds(
    Context,
    run_id=IDS,
    node_id=IDS,
    node_config=user_configs,
    run_config=user_configs,
    state=record_dicts,
)


def strict(value: Any) -> Any:
    """A comparable form that keeps key order and exact types (``True`` is not ``1``)."""
    if isinstance(value, RecordDict | ArrayRecord | MetricRecord | ConfigRecord | dict):
        return (type(value).__name__, [(k, strict(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [strict(v) for v in value])
    if isinstance(value, Array):
        return ("Array", value.dtype, value.shape, value.tobytes())
    return (type(value).__name__, value)


def assert_same_message(got: Message, want: Message) -> None:
    assert got.metadata == want.metadata
    assert got.error == want.error
    assert strict(got.content) == strict(want.content)


def assert_same_context(got: Context, want: Context) -> None:
    assert (got.run_id, got.node_id) == (want.run_id, want.node_id)
    assert strict(got.node_config) == strict(want.node_config)
    assert strict(got.run_config) == strict(want.run_config)
    assert strict(got.state) == strict(want.state)
