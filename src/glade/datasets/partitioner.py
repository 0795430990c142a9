"""`Partitioner`: the common base of every way of splitting one dataset across nodes.

A partitioner maps a dataset of ``n`` rows to ``num_partitions`` sorted arrays of row positions.
The split is computed once, from the partitioner's ``seed``, and cached: every later call returns
the same arrays, so each simulated node sees the same data in every round.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from glade.datasets.adapters import ColumnKey, column, num_rows, select_rows
from glade.errors import ConfigError

__all__ = ["Partitioner"]


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int, or a :class:`ConfigError` naming the parameter ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _digest(values: np.ndarray) -> str:
    """A short fingerprint of a column, to notice a partitioner reused on other data."""
    if values.dtype.kind in "biuf":
        raw = np.ascontiguousarray(values).tobytes()
    else:
        classes, codes = np.unique(values, return_inverse=True)
        raw = repr(classes.tolist()).encode() + codes.astype(np.int64).tobytes()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def as_1d(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D array, or a clear error for e.g. one-hot labels."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ConfigError(
            f"{name} must be 1-D (one value per row), got shape {arr.shape}; "
            f"for one-hot labels pass {name}=y.argmax(axis=1)"
        )
    return arr


class Partitioner(ABC):
    """Split the rows of a dataset into ``num_partitions`` disjoint sets of row positions.

    Subclasses implement :meth:`_split`. Partitioners that need a column (labels, natural ids)
    pass ``key``/``values`` to this constructor and read it from the data, from a 1-D array given
    to :meth:`partition_indices`, or from ``values`` given up front.

    >>> from glade.datasets import IidPartitioner
    >>> import numpy as np
    >>> parts = IidPartitioner(3, seed=0).partition_indices(10)
    >>> [len(p) for p in parts]
    [4, 3, 3]
    >>> IidPartitioner(2, seed=0).load_partition(np.arange(10) * 10, 1).shape
    (5,)
    """

    _uses_column = False
    _column_name = "labels"  # what the column is called in messages (labels / ids)

    def __init__(
        self,
        num_partitions: int | None,
        *,
        seed: int | None = 42,
        key: ColumnKey | None = None,
        values: Any = None,
    ) -> None:
        if num_partitions is not None:
            num_partitions = check_positive_int("num_partitions", num_partitions)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
            raise ConfigError(f"seed must be an int or None, got {seed!r}")
        self._num_partitions = num_partitions
        self._seed = seed
        self._key = key
        self._values = None if values is None else as_1d(values, self._column_name)
        self._cache: list[np.ndarray] | None = None
        self._fingerprint: tuple[int, str] | None = None

    @property
    def num_partitions(self) -> int:
        """How many partitions (nodes) the data is split into."""
        if self._num_partitions is None:
            raise ValueError(f"{type(self).__name__} knows num_partitions only after seeing data")
        return self._num_partitions

    @property
    def seed(self) -> int | None:
        """The seed of the split (``None``: a fresh random split, still cached once made)."""
        return self._seed

    def partition_indices(self, data: Any) -> list[np.ndarray]:
        """Sorted row positions of each partition, computed on the first call and cached.

        ``data`` is the dataset itself, its number of rows (for partitioners that need no
        column or were given the column up front), or, when the column was not given up front,
        a 1-D array with the column the partitioner reads (labels or ids).
        """
        n, values = self._resolve(data)
        fingerprint = (n, "" if values is None else _digest(values))
        if self._cache is None:
            if n < 1:
                raise ConfigError("the data has no rows to partition")
            if self._num_partitions is not None and n < self._num_partitions:
                raise ConfigError(
                    f"num_partitions ({self._num_partitions}) is larger than the number of rows "
                    f"({n}); use at most {n} partitions or more data"
                )
            rng = np.random.default_rng(self._seed)
            parts = [np.sort(np.asarray(p, dtype=np.int64)) for p in self._split(n, values, rng)]
            for p in parts:
                p.setflags(write=False)
            self._cache, self._fingerprint = parts, fingerprint
        elif fingerprint != self._fingerprint:
            raise ValueError(
                f"this {type(self).__name__} already partitioned other data "
                f"({self._fingerprint[0] if self._fingerprint else '?'} rows); "
                "create a new partitioner for each dataset"
            )
        return list(self._cache)

    def load_partition(self, data: Any, partition_id: int) -> Any:
        """The rows of ``data`` that belong to partition ``partition_id``."""
        parts = self.partition_indices(data)
        if isinstance(partition_id, bool) or not 0 <= partition_id < len(parts):
            raise ConfigError(f"partition_id must be in [0, {len(parts)}), got {partition_id!r}")
        return select_rows(data, parts[partition_id])

    def _resolve(self, data: Any) -> tuple[int, np.ndarray | None]:
        """(number of rows, column values or None) from what the caller passed."""
        if isinstance(data, int | np.integer) and not isinstance(data, bool):
            if self._uses_column and self._values is None:
                raise ConfigError(
                    f"{type(self).__name__} needs {self._column_name}: pass the data or "
                    f"the {self._column_name} array, not only the number of rows"
                )
            values = self._values if self._uses_column else None
            return self._check_length(int(data), values)
        if not self._uses_column:
            return num_rows(data), None
        if self._values is None and isinstance(data, np.ndarray) and data.ndim == 1:
            return len(data), data  # the column itself (labels or ids)
        n = num_rows(data)
        if self._values is not None:
            return self._check_length(n, self._values)
        assert self._key is not None
        return n, as_1d(column(data, self._key), self._column_name)

    def _check_length(self, n: int, values: np.ndarray | None) -> tuple[int, np.ndarray | None]:
        if values is not None and len(values) != n:
            raise ConfigError(
                f"{self._column_name} has {len(values)} entries but the data has {n} rows; "
                "pass one value per row"
            )
        return n, values

    @abstractmethod
    def _split(self, n: int, values: np.ndarray | None, rng: np.random.Generator) -> list[Any]:
        """Row positions of each partition (any order; the base sorts them)."""

    def __repr__(self) -> str:
        parts = "?" if self._num_partitions is None else self._num_partitions
        return f"{type(self).__name__}(num_partitions={parts}, seed={self._seed})"
