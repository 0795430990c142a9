"""Robust aggregation math: coordinate-wise median, trimmed mean, Krum and Bulyan.

Pure NumPy, no messages or rounds: each function takes ``replies``, a sequence of
replies that each hold the same list of arrays (same shapes and dtypes, same order),
and treats every reply alike (no weights: a Byzantine node could lie about its weight).

Precision (see :func:`robust_dtype`): float64 and integer arrays are computed in
float64, float32 and narrower floats (float16, bfloat16) in float32; results are cast
back to the input dtype, integers rounded half to even. Distances for Krum/Bulyan are
always computed in float64.

The coordinate-wise functions work on a block of elements at a time: the block of every
reply is copied into one small ``(n, block)`` buffer that stays in cache while it is
partitioned, so no stacked copy of all replies is ever made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from glade.strategies.aggregate import accumulator_dtype, cast_back

__all__ = [
    "bulyan",
    "bulyan_select",
    "coordinate_median",
    "krum_scores",
    "krum_select",
    "pairwise_sq_distances",
    "robust_dtype",
    "trimmed_mean",
]

NDArray = np.ndarray[Any, Any]
Replies = Sequence[Sequence[NDArray]]

# Bytes of the (n, block) buffer of the coordinate-wise functions: measured best for
# n = 100 float32 replies on x86 (small enough for L2, large enough to amortise the
# per-block Python overhead).
_BLOCK_BYTES = 1024 * 1024
# Bytes of the float64 (n, block) buffer whose Gram matrix a BLAS call adds up.
_GRAM_BLOCK_BYTES = 8 * 1024 * 1024


def robust_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype the median / trimmed mean of ``dtype`` arrays is computed in."""
    if dtype.kind == "c":
        raise TypeError(f"robust aggregation needs real numbers, got dtype {dtype}")
    return accumulator_dtype(dtype)


def coordinate_median(replies: Replies) -> list[NDArray]:
    """Coordinate-wise median (of the two middle values' mean for an even count).

    >>> coordinate_median([[np.array([1.0, 5.0])], [np.array([2.0, 0.0])],
    ...                    [np.array([9.0, 1.0])]])
    [array([2., 1.])]
    """
    return _columnwise(replies, _median_rows)


def trimmed_mean(replies: Replies, *, trim: int) -> list[NDArray]:
    """Coordinate-wise mean after dropping the ``trim`` largest and ``trim`` smallest values.

    ``2 * trim`` must be less than the number of replies.

    >>> trimmed_mean([[np.array([1.0])], [np.array([2.0])], [np.array([100.0])]], trim=1)
    [array([2.])]
    """
    if not isinstance(trim, int) or trim < 0:
        raise ValueError(f"trim must be an integer >= 0, got {trim!r}")
    if 2 * trim >= len(replies):
        raise ValueError(f"cannot trim {trim} values from each end of {len(replies)} replies")
    return _columnwise(replies, lambda rows: _trimmed_rows(rows, trim))


def pairwise_sq_distances(replies: Replies) -> NDArray:
    """``(n, n)`` float64 squared Euclidean distances between the replies (all arrays).

    Computed as a Gram matrix of the replies centred on reply 0 (BLAS, float64, block by
    block): ``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b``. Exact for small integer-valued data;
    otherwise within float64 rounding of the direct sum.
    """
    _check(replies)
    n = len(replies)
    gram = np.zeros((n, n))
    for i in range(len(replies[0])):
        flats = [np.ravel(r[i]) for r in replies]
        size = flats[0].size
        block = max(1, _GRAM_BLOCK_BYTES // (8 * n))
        buf = np.empty((n, min(block, size)), dtype=np.float64)
        for start in range(0, size, block):
            stop = min(start + block, size)
            rows = buf[:, : stop - start]
            origin = flats[0][start:stop]
            for j, x in enumerate(flats):
                np.subtract(x[start:stop], origin, out=rows[j], dtype=np.float64)
            gram += np.dot(rows, rows.T)  # dot spots a @ a.T: one SYRK call
    norms = np.diag(gram).copy()
    sq = norms[:, None] + norms[None, :] - 2 * gram
    np.maximum(sq, 0, out=sq)
    np.fill_diagonal(sq, 0)
    return np.minimum(sq, sq.T)  # exactly symmetric


def krum_scores(sq_distances: NDArray, *, num_byzantine: int) -> NDArray:
    """Krum score of each reply: the sum of its ``n - f - 2`` smallest squared distances
    to the other replies (at least one), ``f = num_byzantine``."""
    n = len(sq_distances)
    closest = max(1, n - num_byzantine - 2)
    if n < 2:
        return np.zeros(n)
    others = sq_distances + np.diag(np.full(n, np.inf))
    nearest = np.partition(others, closest - 1, axis=1)[:, :closest]
    scores: NDArray = np.sort(nearest, axis=1).sum(axis=1)
    return scores


def krum_select(sq_distances: NDArray, *, num_byzantine: int, num_selected: int = 1) -> list[int]:
    """Indices (ascending) of the ``num_selected`` replies with the lowest Krum scores.

    Equal scores are broken by index (the lower index wins). Multi-Krum averages them.
    """
    n = len(sq_distances)
    if not 1 <= num_selected <= n:
        raise ValueError(f"num_selected must be in [1, {n}], got {num_selected}")
    scores = krum_scores(sq_distances, num_byzantine=num_byzantine)
    order = np.argsort(scores, kind="stable")
    return sorted(int(i) for i in order[:num_selected])


def bulyan_select(sq_distances: NDArray, *, num_byzantine: int) -> list[int]:
    """Bulyan's first stage: ``n - 2f`` replies chosen one at a time by Krum among the
    replies not chosen yet (indices ascending). Needs ``n >= 4f + 3``."""
    n = len(sq_distances)
    if n < 4 * num_byzantine + 3:
        raise ValueError(
            f"Bulyan with num_byzantine={num_byzantine} needs at least "
            f"{4 * num_byzantine + 3} replies, got {n}"
        )
    remaining = list(range(n))
    chosen: list[int] = []
    while len(chosen) < n - 2 * num_byzantine:
        sub = sq_distances[np.ix_(remaining, remaining)]
        best = int(np.argmin(krum_scores(sub, num_byzantine=num_byzantine)))
        chosen.append(remaining.pop(best))
    return sorted(chosen)


def bulyan(replies: Replies, *, num_byzantine: int) -> list[NDArray]:
    """Bulyan (El Mhamdi et al., 2018): Krum-select ``theta = n - 2f`` replies, then take
    the coordinate-wise mean of the ``theta - 2f`` values nearest the median in rank
    (the trimmed mean dropping ``f`` values from each end)."""
    chosen = bulyan_select(pairwise_sq_distances(replies), num_byzantine=num_byzantine)
    return trimmed_mean([replies[i] for i in chosen], trim=num_byzantine)


# -- internals ---------------------------------------------------------------------------
def _check(replies: Replies) -> None:
    if not replies:
        raise ValueError("robust aggregation needs at least one reply")
    specs = [(np.shape(x), np.asarray(x).dtype) for x in replies[0]]
    for index, reply in enumerate(replies):
        got = [(np.shape(x), np.asarray(x).dtype) for x in reply]
        if got != specs:
            raise ValueError(f"reply {index}: arrays {got} differ from reply 0's {specs}")


def _columnwise(replies: Replies, reduce: Callable[[NDArray], NDArray]) -> list[NDArray]:
    """``reduce`` over ``(n, block)`` stacks of every array's elements, block by block."""
    _check(replies)
    n = len(replies)
    out: list[NDArray] = []
    for i, first in enumerate(replies[0]):
        dtype = np.asarray(first).dtype
        work = robust_dtype(dtype)
        flats = [np.ravel(r[i]) for r in replies]
        size = flats[0].size
        result = np.empty(size, dtype=work)
        block = max(1, _BLOCK_BYTES // (n * work.itemsize))
        buf = np.empty((n, min(block, size)), dtype=work)
        for start in range(0, size, block):
            stop = min(start + block, size)
            rows = buf[:, : stop - start]
            for j, x in enumerate(flats):
                np.copyto(rows[j], x[start:stop], casting="unsafe")
            result[start:stop] = reduce(rows)
        out.append(cast_back(result, dtype).reshape(np.shape(first)))
    return out


def _median_rows(rows: NDArray) -> NDArray:
    n = len(rows)
    half = n // 2
    if n % 2:
        rows.partition(half, axis=0)
        middle: NDArray = rows[half]
        return middle
    rows.partition([half - 1, half], axis=0)
    mid: NDArray = (rows[half - 1] + rows[half]) * rows.dtype.type(0.5)
    return mid


def _trimmed_rows(rows: NDArray, trim: int) -> NDArray:
    n = len(rows)
    if trim:
        rows.partition(sorted({trim, n - trim - 1}), axis=0)
    kept = rows[trim : n - trim]
    total: NDArray = np.add.reduce(kept, axis=0)
    total /= rows.dtype.type(n - 2 * trim)
    return total
