"""Pure aggregation math: weighted averages of arrays and metrics (NumPy only, no I/O).

These functions know nothing about messages or rounds; strategies call them with the
arrays and weights of the replies they accepted. Each is checked by a property test
against an obviously-correct reference (``np.average`` over stacked inputs).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from glade.keys import NUM_EXAMPLES
from glade.records import MetricRecord, MetricValue

__all__ = [
    "accumulator_dtype",
    "cast_back",
    "is_integer_dtype",
    "weighted_average",
    "weighted_mean_metrics",
]

NDArray = np.ndarray[Any, Any]

# Bytes per accumulation block: the accumulator block and a scratch block (2 x 256 KiB)
# stay in L2 while the replies stream through them. Measured best on x86 for float32
# (64 Ki elements) and float64 (32 Ki elements).
_BLOCK_BYTES = 256 * 1024
# Large arrays are summed by several threads, each over its own span of elements (NumPy lets
# go of the GIL): above this many elements per thread, on up to this many threads.
_PARALLEL_ELEMENTS = 4 * 1024 * 1024
_THREADS = max(1, min(4, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
# Replies taken from the input per pass: the accumulator is read and written once per
# group, and a lazy input (replies loaded one at a time) never has more than this alive.
_GROUP = 32


def _is_ml_dtype(dtype: np.dtype[Any]) -> bool:
    return dtype.kind == "V" and dtype.type.__module__.startswith("ml_dtypes")


def is_integer_dtype(dtype: np.dtype[Any]) -> bool:
    """True for bool and integer dtypes (their means are rounded back to integers)."""
    return dtype.kind in "biu" or (_is_ml_dtype(dtype) and "int" in dtype.name)


_is_integer = is_integer_dtype


def accumulator_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype :func:`weighted_average` accumulates ``dtype`` arrays in.

    - float64, longdouble, complex: their own dtype.
    - float32, float16, bfloat16, float8 (narrow floats): float32. Summing N replies in
      float32 has a relative error of at most about ``N * 6e-8`` (``sqrt(N) * 6e-8``
      typically): for realistic N, below the float32 resolution of the result, at half the
      memory traffic of a float64 accumulator.
    - bool and integers: float64 (the mean is rounded to the nearest integer, half to even;
      integers above 2**53 lose precision).
    """
    if _is_integer(dtype):
        return np.dtype(np.float64)
    if dtype.kind == "c" or (dtype.kind == "f" and dtype.itemsize >= 8):
        return dtype
    if dtype.kind == "f" or _is_ml_dtype(dtype):
        return np.dtype(np.float32)
    raise TypeError(f"cannot average arrays of dtype {dtype}")


def weighted_average(
    pairs: Iterable[tuple[Sequence[NDArray], float]],
    *,
    keep_accumulator: bool = False,
) -> list[NDArray]:
    """Weighted mean of several replies, each a list of arrays with one weight.

    ``pairs`` yields ``(arrays, weight)``; every reply must hold arrays of the same
    shapes and dtypes in the same order. Weights must be finite, ``>= 0``, and not all 0.
    Returns new arrays with the input shapes and dtypes (see :func:`accumulator_dtype`
    for the precision and the rounding of integers), or, with ``keep_accumulator``, in
    the accumulator dtype without rounding (for server optimizers that keep working on
    the mean; :func:`cast_back` finishes them).

    ``pairs`` is consumed as a stream, a group of replies at a time, into one running
    weighted mean per array: no stacked copy of the replies is made, and a lazy input
    needs at most one group of replies in memory. Within a group, the sum is
    cache-blocked: each block of elements of the accumulator stays in cache while every
    reply of the group is multiplied and added into it, so each input byte is read once.
    Replies are added in the order given; the same order gives bit-for-bit the same result.

    >>> a = [np.array([1.0, 2.0])]
    >>> b = [np.array([3.0, 6.0])]
    >>> weighted_average([(a, 1), (b, 3)])
    [array([2.5, 5. ])]
    """
    mean = _RunningMean()
    group: list[tuple[list[NDArray], float]] = []
    group_size = _GROUP
    for index, (arrays, weight) in enumerate(pairs):
        group.append(mean.checked(index, arrays, weight))
        if index == 0:
            group_size = _group_size(group[0][0])
        if len(group) == group_size:
            mean.add(group)
            group = []
    mean.add(group)
    return mean.result(keep_accumulator=keep_accumulator)


def _group_size(arrays: list[NDArray]) -> int:
    """Replies per group: 32 for large models; more for small ones, whose cost is per call
    (a group of small replies is still at most ~2 MiB of elements)."""
    elements = max(1, sum(x.size for x in arrays))
    return max(_GROUP, min(4096, (_BLOCK_BYTES * 8) // (elements * 4)))


class _RunningMean:
    """Weighted mean folded in group by group: ``mean = mean * W_old / W + sum(w_i x_i) / W``."""

    def __init__(self) -> None:
        self.specs: list[tuple[tuple[int, ...], np.dtype[Any]]] | None = None
        self.sums: list[NDArray | None] = []
        self.total = 0.0
        self.count = 0

    def checked(
        self, index: int, arrays: Sequence[NDArray], weight: float
    ) -> tuple[list[NDArray], float]:
        xs = [x if type(x) is np.ndarray else np.asarray(x) for x in arrays]
        w = float(weight)
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"reply {index}: weight must be finite and >= 0, got {weight}")
        specs = [(x.shape, x.dtype) for x in xs]
        if self.specs is None:
            self.specs, self.sums = specs, [None] * len(xs)
        elif specs != self.specs:
            raise ValueError(
                f"reply {index}: {_describe(specs)} differs from reply 0's {_describe(self.specs)}"
            )
        self.count += 1
        return xs, w

    def add(self, group: list[tuple[list[NDArray], float]]) -> None:
        group = [(xs, w) for xs, w in group if w > 0]  # zero weight: nothing to add
        if not group:
            return
        total = self.total + math.fsum(w for _, w in group)
        keep = self.total / total
        weights = np.array([w / total for _, w in group])
        for i, acc in enumerate(self.sums):
            self.sums[i] = _accumulate([xs[i] for xs, _ in group], weights, acc, keep)
        self.total = total

    def result(self, *, keep_accumulator: bool = False) -> list[NDArray]:
        if self.count == 0:
            raise ValueError("weighted_average needs at least one (arrays, weight) pair")
        if self.total <= 0:
            raise ValueError("weights must not all be zero")
        assert self.specs is not None
        return [
            (acc if keep_accumulator else cast_back(acc, dtype)).reshape(shape)
            for acc, (shape, dtype) in zip(self.sums, self.specs, strict=True)
            if acc is not None
        ]


def _describe(specs: list[tuple[tuple[int, ...], np.dtype[Any]]]) -> str:
    return "[" + ", ".join(f"{dtype}{list(shape)}" for shape, dtype in specs) + "]"


def _accumulate(xs: list[NDArray], weights: NDArray, acc: NDArray | None, keep: float) -> NDArray:
    """``acc * keep + sum(weights[i] * xs[i])`` over flat views, block by block."""
    acc_dtype = accumulator_dtype(xs[0].dtype)
    flats = [np.ravel(x) for x in xs]  # views of contiguous arrays (Array data always is)
    size = flats[0].size
    fresh = acc is None
    out = np.empty(size, dtype=acc_dtype) if acc is None else acc
    w = weights.astype(acc_dtype)
    scale = np.asarray(keep).astype(acc_dtype)
    block = max(1, _BLOCK_BYTES // acc_dtype.itemsize)
    if size * len(flats) <= block * _GROUP // 4:
        return _accumulate_small(flats, w, out, None if fresh else scale)
    uniform = bool(np.all(weights == weights[0]))
    spans = _spans(size, block)
    work = [(out, flats, w, scale, fresh, uniform, start, stop, block) for start, stop in spans]
    if len(work) == 1:
        _accumulate_span(*work[0])
    else:
        # Every element is computed by the same operations in the same order whichever
        # thread does it: the result does not depend on the split.
        list(_pool().map(lambda job: _accumulate_span(*job), work))
    return out


def _spans(size: int, block: int) -> list[tuple[int, int]]:
    """Split ``size`` elements into one span per thread (whole blocks each); one span for
    arrays below :data:`_PARALLEL_ELEMENTS` or on one core."""
    threads = min(_THREADS, max(1, size // _PARALLEL_ELEMENTS))
    if threads <= 1:
        return [(0, size)]
    step = -(-size // threads // block) * block
    return [(start, min(start + step, size)) for start in range(0, size, step)]


def flat_sum(x: NDArray, dtype: np.dtype[Any]) -> Any:
    """The sum of all elements of the contiguous ``x`` in ``dtype``, over spans summed on
    the aggregation threads for large arrays (NaN and inf propagate as in one sum; the
    order of the additions differs, so the rounding may)."""
    flat = np.ravel(x)

    def part(span: tuple[int, int]) -> Any:
        with np.errstate(over="ignore", invalid="ignore"):  # per thread: the caller checks
            return np.sum(flat[span[0] : span[1]], dtype=dtype)

    spans = _spans(flat.size, max(1, _BLOCK_BYTES // flat.itemsize))
    if len(spans) == 1:
        return part(spans[0])
    parts = np.array(list(_pool().map(part, spans)), dtype=dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.sum(parts, dtype=dtype)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_THREADS, thread_name_prefix="glade-aggregate")
        return _POOL


def _accumulate_span(
    out: NDArray,
    flats: list[NDArray],
    w: NDArray,
    scale: NDArray,
    fresh: bool,
    uniform: bool,
    begin: int,
    end: int,
    block: int,
) -> None:
    """The block loop of :func:`_accumulate` over elements ``[begin, end)``."""
    tmp = np.empty(min(end - begin, block), dtype=out.dtype)
    for start in range(begin, end, block):
        stop = min(start + block, end)
        a, t = out[start:stop], tmp[: stop - start]
        if not fresh:
            np.multiply(a, scale, out=a)
        if uniform:
            # Equal weights: sum first, scale once (one pass per reply instead of two).
            s = a if fresh else t
            np.copyto(s, flats[0][start:stop], casting="unsafe")
            for x in flats[1:]:
                np.add(s, x[start:stop], out=s, dtype=out.dtype)
            np.multiply(s, w[0], out=s)
            if not fresh:
                np.add(a, s, out=a)
            continue
        rest = 0
        if fresh:
            np.multiply(flats[0][start:stop], w[0], out=a, dtype=out.dtype)
            rest = 1
        for x, wi in zip(flats[rest:], w[rest:], strict=True):
            np.multiply(x[start:stop], wi, out=t, dtype=out.dtype)
            np.add(a, t, out=a)


def _accumulate_small(
    flats: list[NDArray], w: NDArray, out: NDArray, scale: NDArray | None
) -> NDArray:
    """Small arrays: one stacked multiply and one row-by-row sum per group, so the cost is
    a few NumPy calls per group instead of two per reply (per-call overhead dominates)."""
    stack = np.stack(flats, dtype=out.dtype, casting="unsafe")
    np.multiply(stack, w[:, None], out=stack)
    total = np.add.reduce(stack, axis=0)  # adds rows in order: deterministic
    if scale is None:
        np.copyto(out, total)
    else:
        np.multiply(out, scale, out=out)
        np.add(out, total, out=out)
    return out


def cast_back(acc: NDArray, dtype: np.dtype[Any]) -> NDArray:
    """Cast an accumulator to ``dtype``: integers and bool are rounded (half to even) and
    clipped to the dtype's range; floats are rounded to nearest. May reuse ``acc``."""
    if _is_integer(dtype):
        np.rint(acc, out=acc)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            np.clip(acc, info.min, info.max, out=acc)
    if acc.dtype == dtype:
        return acc
    return acc.astype(dtype)


# -- metrics ---------------------------------------------------------------------------
def weighted_mean_metrics(
    records: Sequence[Mapping[str, MetricValue]], *, weight_key: str = NUM_EXAMPLES
) -> MetricRecord:
    """Weighted mean of each metric over ``records``, weighted by ``record[weight_key]``.

    Every metric present in at least one record is averaged over the records that have
    it (lists elementwise, when all have the same length; otherwise it is left out).
    The weight itself is summed: ``weight_key`` in the result is the total weight.
    Keys keep their first-seen order.

    >>> weighted_mean_metrics([MetricRecord({"acc": 0.5, "num-examples": 10}),
    ...                        MetricRecord({"acc": 1.0, "num-examples": 30})])
    MetricRecord({'acc': 0.875, 'num-examples': 40})
    """
    raw = [_weight(r, weight_key, i) for i, r in enumerate(records)]
    weights = [float(w) for w in raw]
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    out = MetricRecord()
    for name in names:
        if name == weight_key:
            out[name] = sum(raw)
            continue
        pairs = [(r[name], w) for r, w in zip(records, weights, strict=True) if name in r]
        value = _mean_of(pairs)
        if value is not None:
            out[name] = value
    return out


def _weight(record: Mapping[str, MetricValue], key: str, index: int) -> int | float:
    value = record.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"metric record {index} has no numeric {key!r} to weight by")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"metric record {index}: weight {key!r}={value} must be finite, >= 0")
    return value


def _mean_of(pairs: list[tuple[MetricValue, float]]) -> MetricValue | None:
    """Weighted mean of scalars, or elementwise of equal-length lists; else ``None``."""
    total = math.fsum(w for _, w in pairs)
    if total <= 0:
        return None
    scalars = [(v, w) for v, w in pairs if isinstance(v, int | float)]
    if len(scalars) == len(pairs):
        return math.fsum(float(v) * w for v, w in scalars) / total
    lists = [(v, w) for v, w in pairs if isinstance(v, list)]
    if len(lists) != len(pairs) or len({len(v) for v, _ in lists}) != 1:
        return None
    width = len(lists[0][0])
    return [math.fsum(float(v[i]) * w for v, w in lists) / total for i in range(width)]
