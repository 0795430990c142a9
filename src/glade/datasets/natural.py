"""`NaturalIdPartitioner`: one partition per value of an id column (writer, user, hospital...)."""

from __future__ import annotations

from typing import Any

import numpy as np

from glade.datasets.adapters import ColumnKey
from glade.datasets.partitioner import Partitioner

__all__ = ["NaturalIdPartitioner"]


class NaturalIdPartitioner(Partitioner):
    """Group rows by the column ``id_key``: partition ``i`` holds the rows of the i-th id.

    Ids are taken in sorted order, so the mapping is stable and needs no seed. The number of
    partitions is the number of distinct ids, known once the data has been seen;
    :attr:`natural_ids` tells which id each partition stands for.

    >>> import numpy as np
    >>> p = NaturalIdPartitioner("writer")
    >>> data = {"x": np.arange(5), "writer": np.array(["b", "a", "b", "c", "a"])}
    >>> [p.tolist() for p in p.partition_indices(data)]
    [[1, 4], [0, 2], [3]]
    >>> p.natural_ids.tolist(), p.num_partitions
    (['a', 'b', 'c'], 3)
    """

    _uses_column = True
    _column_name = "ids"

    def __init__(self, id_key: ColumnKey, *, ids: Any = None) -> None:
        super().__init__(None, seed=None, key=id_key, values=ids)
        self._natural_ids: np.ndarray | None = None

    @property
    def natural_ids(self) -> np.ndarray:
        """The id of each partition (``natural_ids[i]`` for partition ``i``)."""
        if self._natural_ids is None:
            raise ValueError(
                "NaturalIdPartitioner knows its ids only after partition_indices(data)"
            )
        return self._natural_ids

    def _split(self, n: int, values: np.ndarray | None, rng: np.random.Generator) -> list[Any]:
        assert values is not None
        ids, codes, counts = np.unique(values, return_inverse=True, return_counts=True)
        self._natural_ids, self._num_partitions = ids, len(ids)
        order = np.argsort(codes.ravel(), kind="stable")
        return list(np.split(order, np.cumsum(counts)[:-1]))
