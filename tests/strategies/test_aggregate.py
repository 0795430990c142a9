"""The pure aggregation math against obviously-correct references."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any
from unittest import mock

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glade import MetricRecord
from glade.strategies import aggregate
from glade.strategies.aggregate import accumulator_dtype, weighted_average, weighted_mean_metrics

ml_dtypes = pytest.importorskip("ml_dtypes")


def reference(replies: list[list[np.ndarray[Any, Any]]], weights: list[float]) -> list[Any]:
    """np.average over the stacked replies, in float64 (the obviously-correct answer)."""
    return [
        np.average(np.stack([r[i].astype(np.float64) for r in replies]), axis=0, weights=weights)
        for i in range(len(replies[0]))
    ]


@st.composite
def replies_and_weights(draw: Any, dtype: Any) -> tuple[list[list[Any]], list[float]]:
    num_replies = draw(st.integers(1, 6))
    shapes = draw(
        st.lists(hnp.array_shapes(min_dims=0, max_dims=3, max_side=7), min_size=1, max_size=3)
    )
    if np.dtype(dtype).kind == "f":
        elements = st.floats(-1e3, 1e3, width=np.dtype(dtype).itemsize * 8)
    else:
        elements = st.integers(-1000, 1000)
    replies = [
        [draw(hnp.arrays(dtype, shape, elements=elements)) for shape in shapes]
        for _ in range(num_replies)
    ]
    weights = draw(
        st.lists(st.floats(0, 1e4), min_size=num_replies, max_size=num_replies).filter(
            lambda ws: sum(ws) > 1e-3
        )
    )
    return replies, weights


# A tiny block size makes every array span several blocks plus a ragged tail, and tiny
# groups make the running mean rescale between groups.
tiny_blocks = mock.patch.multiple(aggregate, _BLOCK_BYTES=24, _GROUP=2)


@settings(max_examples=40, deadline=None)
@given(replies_and_weights(np.float64), st.booleans())
def test_float64_matches_np_average(data: Any, small_blocks: bool) -> None:
    replies, weights = data
    if small_blocks:
        with tiny_blocks:
            out = weighted_average(zip(replies, weights, strict=True))
    else:
        out = weighted_average(zip(replies, weights, strict=True))
    for got, want, src in zip(out, reference(replies, weights), replies[0], strict=True):
        assert got.dtype == np.float64 and got.shape == src.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(replies_and_weights(np.float32))
def test_float32_matches_np_average(data: Any) -> None:
    replies, weights = data
    with tiny_blocks:
        out = weighted_average(zip(replies, weights, strict=True))
    for got, want in zip(out, reference(replies, weights), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(replies_and_weights(np.int32))
def test_integers_are_the_rounded_mean(data: Any) -> None:
    replies, weights = data
    out = weighted_average(zip(replies, weights, strict=True))
    for got, want in zip(out, reference(replies, weights), strict=True):
        assert got.dtype == np.int32
        assert np.all(np.abs(got - want) <= 0.5 + 1e-6)


@settings(max_examples=20, deadline=None)
@given(replies_and_weights(np.float32))
def test_equal_weights_take_the_uniform_path_correctly(data: Any) -> None:
    replies, _ = data
    weights = [2.0] * len(replies)
    with tiny_blocks:
        out = weighted_average(zip(replies, weights, strict=True))
    for got, want in zip(out, reference(replies, weights), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    ("dtype", "acc"),
    [
        (np.float64, np.float64),
        (np.float32, np.float32),
        (np.float16, np.float32),
        (ml_dtypes.bfloat16, np.float32),
        (np.int64, np.float64),
        (np.uint8, np.float64),
        (np.bool_, np.float64),
        (np.complex64, np.complex64),
    ],
)
def test_dtype_round_trip(dtype: Any, acc: Any) -> None:
    assert accumulator_dtype(np.dtype(dtype)) == np.dtype(acc)
    a = np.array([[1, 0], [3, 1]]).astype(dtype)
    b = np.array([[3, 0], [5, 1]]).astype(dtype)
    (out,) = weighted_average([([a], 1.0), ([b], 3.0)])
    assert out.dtype == np.dtype(dtype) and out.shape == (2, 2)
    wide = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    expected = (a.astype(wide) * 1.0 + b.astype(wide) * 3.0) / 4.0
    if np.dtype(dtype).kind in "biu":
        expected = np.rint(expected)  # round half to even: 2.5 -> 2, 4.5 -> 4
    np.testing.assert_allclose(out.astype(wide), expected)


def test_float16_sums_do_not_overflow() -> None:
    big = np.full(4, 60000, dtype=np.float16)  # the sum of 3 overflows float16, not the mean
    (out,) = weighted_average([([big], 1.0)] * 3)
    assert out.dtype == np.float16 and np.all(out == big)


def test_result_is_new_and_inputs_untouched_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    replies = [[rng.standard_normal(1000).astype(np.float32)] for _ in range(5)]
    before = [r[0].copy() for r in replies]
    weights = [1.0, 2.0, 3.0, 4.0, 5.0]
    first = weighted_average(zip(replies, weights, strict=True))
    second = weighted_average(zip(replies, weights, strict=True))
    assert first[0].tobytes() == second[0].tobytes()
    assert not any(np.shares_memory(first[0], r[0]) for r in replies)
    assert all(np.array_equal(r[0], b) for r, b in zip(replies, before, strict=True))


def test_input_is_consumed_as_a_stream_one_group_at_a_time() -> None:
    alive: list[weakref.ref[Any]] = []
    most_alive = 0

    def replies() -> Iterator[tuple[list[np.ndarray[Any, Any]], float]]:
        nonlocal most_alive
        for i in range(10):
            x = np.full(100, float(i))
            alive.append(weakref.ref(x))
            most_alive = max(most_alive, sum(r() is not None for r in alive))
            yield [x], 1.0 + i
            del x

    with mock.patch.object(aggregate, "_group_size", lambda arrays: 3):
        (out,) = weighted_average(replies())
    expected = sum(i * (1.0 + i) for i in range(10)) / sum(1.0 + i for i in range(10))
    np.testing.assert_allclose(out, np.full(100, expected), rtol=1e-12)
    assert most_alive <= 3


def test_zero_weight_replies_count_for_nothing_but_are_checked() -> None:
    (out,) = weighted_average([([np.ones(2)], 0.0), ([np.full(2, 4.0)], 2.0)])
    np.testing.assert_array_equal(out, [4.0, 4.0])
    with pytest.raises(ValueError, match="differs"):
        weighted_average([([np.ones(2)], 1.0), ([np.ones(3)], 0.0)])


def test_single_reply_is_returned_as_a_copy() -> None:
    x = np.arange(5, dtype=np.float64)
    (out,) = weighted_average([([x], 7.0)])
    assert np.array_equal(out, x) and not np.shares_memory(out, x)


@pytest.mark.parametrize(
    ("pairs", "match"),
    [
        ([], "at least one"),
        ([([np.zeros(2)], 1.0), ([np.zeros(2)], -1.0)], "reply 1: weight"),
        ([([np.zeros(2)], 0.0), ([np.zeros(2)], 0.0)], "not all be zero"),
        ([([np.zeros(2)], float("nan"))], "reply 0: weight"),
        ([([np.zeros(2)], 1.0), ([np.zeros(3)], 1.0)], r"float64\[3\]\] differs"),
        ([([np.zeros(2)], 1.0), ([np.zeros(2, np.float32)], 1.0)], "float32.* differs"),
        ([([np.zeros(2)], 1.0), ([np.zeros(2), np.zeros(1)], 1.0)], "differs"),
    ],
)
def test_bad_input_is_a_value_error(pairs: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        weighted_average(pairs)


# -- metrics ----------------------------------------------------------------------------
def test_metric_weighted_mean_by_hand() -> None:
    records = [
        MetricRecord({"loss": 1.0, "acc": 0.5, "num-examples": 10, "per-class": [1.0, 0.0]}),
        MetricRecord({"loss": 3.0, "num-examples": 30, "per-class": [0.0, 1.0]}),
    ]
    out = weighted_mean_metrics(records)
    assert out["loss"] == pytest.approx((1.0 * 10 + 3.0 * 30) / 40)
    assert out["acc"] == pytest.approx(0.5)  # only the record that has it
    assert out["per-class"] == pytest.approx([0.25, 0.75])
    assert out["num-examples"] == 40
    assert list(out) == ["loss", "acc", "num-examples", "per-class"]


def test_metric_lists_of_different_lengths_are_left_out() -> None:
    records = [
        MetricRecord({"hist": [1, 2], "num-examples": 1}),
        MetricRecord({"hist": [1], "num-examples": 1}),
    ]
    assert "hist" not in weighted_mean_metrics(records)


def test_metric_custom_weight_key_and_missing_weight() -> None:
    records = [MetricRecord({"loss": 2.0, "w": 1}), MetricRecord({"loss": 4.0, "w": 3})]
    assert weighted_mean_metrics(records, weight_key="w")["loss"] == pytest.approx(3.5)
    with pytest.raises(ValueError, match="num-examples"):
        weighted_mean_metrics(records)


@pytest.mark.parametrize("uniform", [True, False])
def test_threaded_spans_give_bit_for_bit_the_single_thread_result(uniform: bool) -> None:
    """Large arrays are summed by several threads over spans of elements; tiny spans here
    make many of them, with a ragged tail, over 3 groups of replies (the running rescale)."""
    rng = np.random.default_rng(7)
    replies = [[rng.standard_normal(10_007).astype(np.float32)] for _ in range(5)]
    weights = [1.0] * 5 if uniform else [1.0, 3.5, 0.25, 2.0, 7.0]
    pairs = list(zip(replies, weights, strict=True))
    with mock.patch.multiple(aggregate, _BLOCK_BYTES=256, _GROUP=2, _PARALLEL_ELEMENTS=10**9):
        single = weighted_average(pairs)[0]
    with mock.patch.multiple(
        aggregate, _BLOCK_BYTES=256, _GROUP=2, _PARALLEL_ELEMENTS=1000, _THREADS=4
    ):
        assert len(aggregate._spans(10_007, 64)) == 4
        threaded = weighted_average(pairs)[0]
    assert threaded.tobytes() == single.tobytes()
    np.testing.assert_allclose(threaded, reference(replies, weights)[0], rtol=1e-5, atol=1e-6)


def test_the_finite_check_of_a_large_array_sums_spans_on_threads_and_misses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from glade.strategies import aggregate
    from glade.strategies.replies import all_finite

    monkeypatch.setattr(aggregate, "_THREADS", 4)
    monkeypatch.setattr(aggregate, "_PARALLEL_ELEMENTS", 1000)
    spans_summed: list[int] = []
    real_sum = np.sum

    def counting_sum(a, *args, **kwargs):  # type: ignore[no-untyped-def]
        spans_summed.append(np.size(a))
        return real_sum(a, *args, **kwargs)

    monkeypatch.setattr(aggregate.np, "sum", counting_sum)
    x = np.full(300_000, 1.5, dtype=np.float32)  # several blocks of 64 Ki elements
    assert all_finite(x)
    # several spans, then the sum of their sums
    assert len(spans_summed) >= 3 and sum(spans_summed[:-1]) == x.size
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[-1] = bad  # in the last span
        assert not all_finite(y)
    huge = np.full(300_000, 3e38, dtype=np.float32)  # the sum overflows, the values do not
    assert all_finite(huge)
    huge[7] = np.inf
    assert not all_finite(huge)
