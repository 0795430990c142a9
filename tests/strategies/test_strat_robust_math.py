"""The pure robust math (glade.strategies.robust) against obviously-correct references."""

from __future__ import annotations

from typing import Any
from unittest import mock

import hypothesis.extra.numpy as hnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glade.strategies import robust
from glade.strategies.robust import (
    bulyan_select,
    coordinate_median,
    krum_select,
    pairwise_sq_distances,
    robust_dtype,
    trimmed_mean,
)

# A tiny block makes every array span several blocks plus a ragged tail.
tiny_blocks = mock.patch.multiple(robust, _BLOCK_BYTES=48, _GRAM_BLOCK_BYTES=64)


@st.composite
def replies(draw: Any, dtype: Any, min_replies: int = 1) -> list[list[np.ndarray]]:
    n = draw(st.integers(min_replies, 9))
    shapes = draw(
        st.lists(hnp.array_shapes(min_dims=0, max_dims=2, max_side=9), min_size=1, max_size=3)
    )
    if np.dtype(dtype).kind == "f":
        # Few distinct values: ties are common.
        elements = st.sampled_from([-3.5, -1.0, 0.0, 0.25, 1.0, 2.0, 1e3]) | st.floats(-100, 100)
    else:
        elements = st.integers(-50, 50)
    return [
        [draw(hnp.arrays(dtype, shape, elements=elements)) for shape in shapes] for _ in range(n)
    ]


def stack64(rs: list[list[np.ndarray]], i: int) -> np.ndarray:
    return np.stack([r[i].astype(np.float64) for r in rs])


@settings(max_examples=30, deadline=None)
@given(replies(np.float64), st.booleans())
def test_median_matches_np_median(rs: list[list[np.ndarray]], small: bool) -> None:
    with tiny_blocks if small else mock.patch.object(robust, "_BLOCK_BYTES", robust._BLOCK_BYTES):
        out = coordinate_median(rs)
    for i, got in enumerate(out):
        assert got.dtype == np.float64 and got.shape == rs[0][i].shape
        np.testing.assert_array_equal(got, np.median(stack64(rs, i), axis=0))


@settings(max_examples=30, deadline=None)
@given(replies(np.float32, min_replies=1), st.data())
def test_trimmed_mean_matches_sorting(rs: list[list[np.ndarray]], data: Any) -> None:
    n = len(rs)
    trim = data.draw(st.integers(0, (n - 1) // 2))
    with tiny_blocks:
        out = trimmed_mean(rs, trim=trim)
    for i, got in enumerate(out):
        want = np.sort(stack64(rs, i), axis=0)[trim : n - trim].mean(axis=0)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(replies(np.int32))
def test_integer_median_is_rounded_half_to_even(rs: list[list[np.ndarray]]) -> None:
    for i, got in enumerate(coordinate_median(rs)):
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, np.rint(np.median(stack64(rs, i), axis=0)))


@pytest.mark.parametrize(
    ("dtype", "work"),
    [
        (np.float64, np.float64),
        (np.float32, np.float32),
        (np.float16, np.float32),
        (ml_dtypes.bfloat16, np.float32),
        (np.int64, np.float64),
        (np.uint8, np.float64),
    ],
)
def test_dtypes_are_kept_and_computed_as_documented(dtype: Any, work: Any) -> None:
    assert robust_dtype(np.dtype(dtype)) == np.dtype(work)
    rs = [[np.array([v, 2 * v]).astype(dtype)] for v in (1, 3, 8, 4)]
    (median,) = coordinate_median(rs)
    (trimmed,) = trimmed_mean(rs, trim=1)
    assert median.dtype == np.dtype(dtype) and trimmed.dtype == np.dtype(dtype)
    # median of 1,3,4,8 = 3.5 (ints: 4, half to even); x2: 7
    want = [4, 7] if np.dtype(dtype).kind in "iu" else [3.5, 7.0]
    np.testing.assert_array_equal(median.astype(np.float64), want)
    np.testing.assert_array_equal(trimmed.astype(np.float64), want)


def test_complex_arrays_are_refused() -> None:
    with pytest.raises(TypeError, match="real numbers"):
        coordinate_median([[np.zeros(2, np.complex64)]])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: coordinate_median([]), "at least one"),
        (lambda: trimmed_mean([[np.zeros(2)]] * 4, trim=2), "cannot trim 2"),
        (lambda: trimmed_mean([[np.zeros(2)]], trim=-1), "trim must be"),
        (lambda: coordinate_median([[np.zeros(2)], [np.zeros(3)]]), "reply 1"),
        (lambda: bulyan_select(np.zeros((6, 6)), num_byzantine=1), "at least 7"),
        (lambda: krum_select(np.zeros((3, 3)), num_byzantine=0, num_selected=4), "num_selected"),
    ],
)
def test_bad_input_is_a_value_error(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@settings(max_examples=25, deadline=None)
@given(replies(np.float32, min_replies=2), st.booleans())
def test_distances_match_direct_sums(rs: list[list[np.ndarray]], small: bool) -> None:
    with tiny_blocks if small else mock.patch.object(robust, "_GRAM_BLOCK_BYTES", 1 << 20):
        got = pairwise_sq_distances(rs)
    points = [np.concatenate([np.ravel(a).astype(np.float64) for a in r] + [[0.0]]) for r in rs]
    want = np.array([[np.sum((p - q) ** 2) for q in points] for p in points])
    assert np.array_equal(got, got.T) and np.all(np.diag(got) == 0)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-6 * (1 + want.max()))


def test_distances_of_small_integers_are_exact_so_ties_are_exact() -> None:
    rng = np.random.default_rng(0)
    rs = [[rng.integers(-5, 5, size=50).astype(np.float32)] for _ in range(6)]
    rs.append([rs[2][0].copy()])  # a duplicate: distance exactly 0
    got = pairwise_sq_distances(rs)
    want = np.array([[np.sum((a[0] - b[0]).astype(np.float64) ** 2) for b in rs] for a in rs])
    np.testing.assert_array_equal(got, want)
    assert got[2, 6] == 0


def test_krum_prefers_the_dense_cluster_and_breaks_ties_by_index() -> None:
    # Points on a line: 0, 0, 1 (cluster), 10, 50 (outliers). f = 1, n - f - 2 = 2 neighbours.
    points = np.array([0.0, 0.0, 1.0, 10.0, 50.0])
    sq = (points[:, None] - points[None, :]) ** 2
    assert krum_select(sq, num_byzantine=1) == [0]  # 0 and 1 tie (score 1): lower index
    assert krum_select(sq, num_byzantine=1, num_selected=3) == [0, 1, 2]


def test_bulyan_selects_one_at_a_time() -> None:
    points = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 100.0, -100.0])
    sq = (points[:, None] - points[None, :]) ** 2
    assert bulyan_select(sq, num_byzantine=1) == [0, 1, 2, 3, 4]
