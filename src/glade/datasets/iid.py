"""Label-blind partitioners: `IidPartitioner` (equal shares), `SizePartitioner` (quantity skew)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from glade.datasets.partitioner import Partitioner, check_positive_int
from glade.errors import ConfigError

__all__ = ["IidPartitioner", "SizePartitioner"]


class IidPartitioner(Partitioner):
    """Shuffle the rows and deal them into partitions whose sizes differ by at most one.

    >>> import numpy as np
    >>> parts = IidPartitioner(4, seed=1).partition_indices(10)
    >>> sorted(len(p) for p in parts)
    [2, 2, 3, 3]
    """

    def __init__(self, num_partitions: int, *, seed: int | None = 42) -> None:
        super().__init__(num_partitions, seed=seed)

    def _split(self, n: int, values: np.ndarray | None, rng: np.random.Generator) -> list[Any]:
        return list(np.array_split(rng.permutation(n), self.num_partitions))


def apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer sizes proportional to ``weights`` summing to ``total`` (largest remainder)."""
    exact = weights / weights.sum() * total
    sizes: np.ndarray = np.floor(exact).astype(np.int64)
    short = total - int(sizes.sum())
    order = np.argsort(-(exact - sizes), kind="stable")
    sizes[order[:short]] += 1
    return sizes


class SizePartitioner(Partitioner):
    """Quantity skew: partitions of given ``sizes``, or of shares proportional to ``weights``.

    With ``sizes`` (row counts) rows beyond ``sum(sizes)`` are left out; with ``weights`` every
    row is used and partition ``i`` gets about ``weights[i] / sum(weights)`` of them. Rows are
    shuffled first, so labels stay IID; only the amounts differ.

    >>> parts = SizePartitioner(sizes=[1, 2, 5], seed=0).partition_indices(10)
    >>> [len(p) for p in parts]
    [1, 2, 5]
    >>> [len(p) for p in SizePartitioner.linear(3).partition_indices(60)]
    [10, 20, 30]
    """

    def __init__(
        self,
        *,
        sizes: Sequence[int] | None = None,
        weights: Sequence[float] | None = None,
        seed: int | None = 42,
    ) -> None:
        if (sizes is None) == (weights is None):
            raise ConfigError("SizePartitioner needs exactly one of sizes=[...] or weights=[...]")
        self._sizes: np.ndarray | None = None
        self._weights: np.ndarray | None = None
        if sizes is not None:
            for i, size in enumerate(sizes):
                check_positive_int(f"sizes[{i}]", size)
            self._sizes = np.asarray(sizes, dtype=np.int64)
            count = len(self._sizes)
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w <= 0):
                raise ConfigError(f"weights must be finite positive numbers, got {weights!r}")
            self._weights, count = w, len(w)
        if count == 0:
            raise ConfigError("sizes/weights must name at least one partition")
        super().__init__(count, seed=seed)

    @classmethod
    def linear(cls, num_partitions: int, *, seed: int | None = 42) -> SizePartitioner:
        """Partition ``i`` gets a share proportional to ``i + 1``."""
        k = check_positive_int("num_partitions", num_partitions)
        return cls(weights=list(range(1, k + 1)), seed=seed)

    @classmethod
    def exponential(
        cls, num_partitions: int, *, base: float = 2.0, seed: int | None = 42
    ) -> SizePartitioner:
        """Partition ``i`` gets a share proportional to ``base ** i`` (a few large nodes)."""
        k = check_positive_int("num_partitions", num_partitions)
        if not base > 0:
            raise ConfigError(f"base must be positive, got {base!r}")
        return cls(weights=[float(base) ** i for i in range(k)], seed=seed)

    def _split(self, n: int, values: np.ndarray | None, rng: np.random.Generator) -> list[Any]:
        if self._sizes is not None:
            sizes = self._sizes
            if sizes.sum() > n:
                raise ConfigError(
                    f"sizes ask for {int(sizes.sum())} rows but the data has only {n}; "
                    "use smaller sizes or weights=[...] to share all rows"
                )
        else:
            assert self._weights is not None
            sizes = apportion(self._weights, n)
            if sizes.min() == 0:
                raise ConfigError(
                    f"weights leave partition {int(sizes.argmin())} with no rows out of {n}; "
                    "use less extreme weights, fewer partitions or more data"
                )
        cuts = np.cumsum(sizes)
        return list(np.split(rng.permutation(n)[: cuts[-1]], cuts[:-1]))
