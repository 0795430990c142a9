"""Describe a partitioning: label counts per node and how far nodes are from the global mix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from glade.datasets.partitioner import Partitioner, as_1d

__all__ = ["label_counts", "label_skew"]

Partitions = Partitioner | Sequence[Any]
"""A partitioner (it is asked for its indices over the labels) or a list of index arrays."""


def _indices(partitions: Partitions, labels: np.ndarray) -> list[np.ndarray]:
    if isinstance(partitions, Partitioner):
        return partitions.partition_indices(labels)
    return [np.asarray(p, dtype=np.int64) for p in partitions]


def label_counts(partitions: Partitions, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, counts)``: ``counts[i, c]`` rows of class ``classes[c]`` in partition ``i``.

    >>> import numpy as np
    >>> classes, counts = label_counts([[0, 1], [2]], np.array(["a", "b", "b"]))
    >>> classes.tolist(), counts.tolist()
    (['a', 'b'], [[1, 1], [0, 1]])
    """
    y = as_1d(labels, "labels")
    classes, codes = np.unique(y, return_inverse=True)
    parts = _indices(partitions, y)
    counts = np.zeros((len(parts), len(classes)), dtype=np.int64)
    for i, idx in enumerate(parts):
        counts[i] = np.bincount(codes.ravel()[idx], minlength=len(classes))
    return classes, counts


def label_skew(partitions: Partitions, labels: Any) -> float:
    """Mean total-variation distance between each node's label mix and the global one.

    0 means every node has the global label distribution; values near 1 mean nodes hold
    classes the others barely have. Empty partitions are ignored.
    """
    y = as_1d(labels, "labels")
    _, counts = label_counts(partitions, y)
    sizes = counts.sum(axis=1)
    counts = counts[sizes > 0]
    if len(counts) == 0:
        return 0.0
    global_mix = np.bincount(np.unique(y, return_inverse=True)[1].ravel()) / len(y)
    node_mix = counts / counts.sum(axis=1, keepdims=True)
    return float(np.mean(0.5 * np.abs(node_mix - global_mix).sum(axis=1)))
