"""Label-skew partitioners: Dirichlet proportions, k classes per node, and label-sorted shards.

All three read one label per row: from the column ``label_key`` of the data (for a ``(X, y)``
tuple, ``y``), from ``labels=`` given up front, or from a 1-D labels array passed to
``partition_indices``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from glade.datasets.adapters import ColumnKey
from glade.datasets.partitioner import Partitioner, check_positive_int
from glade.errors import ConfigError

__all__ = ["DirichletPartitioner", "PathologicalPartitioner", "ShardPartitioner"]


def class_groups(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Row positions of each class (classes in sorted order), each group shuffled."""
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(codes.ravel(), kind="stable")
    return [rng.permutation(g) for g in np.split(order, np.cumsum(counts)[:-1])]


class _LabelPartitioner(Partitioner):
    _uses_column = True

    def __init__(
        self,
        num_partitions: int,
        *,
        label_key: ColumnKey,
        labels: Any,
        seed: int | None,
    ) -> None:
        super().__init__(num_partitions, seed=seed, key=label_key, values=labels)

    def _labels(self, values: np.ndarray | None) -> np.ndarray:
        assert values is not None  # the base class resolves labels for _uses_column
        return values


class DirichletPartitioner(_LabelPartitioner):
    """Per class, share its rows among nodes in proportions drawn from ``Dirichlet(alpha)``.

    Small ``alpha`` (0.1) gives each node a few dominant classes; large ``alpha`` (100) is close
    to IID. Draws are repeated (up to ``max_retries`` times) until every partition holds at
    least ``min_partition_size`` rows. ``alpha`` may also be one value per partition.

    >>> import numpy as np
    >>> labels = np.repeat(np.arange(4), 50)
    >>> p = DirichletPartitioner(5, alpha=0.5, labels=labels, min_partition_size=5, seed=0)
    >>> sum(len(x) for x in p.partition_indices(200))
    200
    """

    def __init__(
        self,
        num_partitions: int,
        alpha: float | Sequence[float],
        *,
        label_key: ColumnKey = "label",
        labels: Any = None,
        min_partition_size: int = 10,
        max_retries: int = 100,
        seed: int | None = 42,
    ) -> None:
        super().__init__(num_partitions, label_key=label_key, labels=labels, seed=seed)
        a = np.asarray(alpha, dtype=np.float64)
        if a.ndim == 0:
            a = np.full(self.num_partitions, float(a))
        elif a.shape != (self.num_partitions,):
            raise ConfigError(
                f"alpha must be one number or one per partition ({self.num_partitions}), "
                f"got {a.size} values"
            )
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ConfigError(
                f"alpha must be > 0 (e.g. 0.1 for strong skew, 100 for near IID), got {alpha!r}"
            )
        if isinstance(min_partition_size, bool) or min_partition_size < 0:
            raise ConfigError(f"min_partition_size must be >= 0, got {min_partition_size!r}")
        self._alpha = a
        self._min_size = int(min_partition_size)
        self._max_retries = check_positive_int("max_retries", max_retries)

    def _split(self, n: int, values: np.ndarray | None, rng: np.random.Generator) -> list[Any]:
        labels, k = self._labels(values), self.num_partitions
        if self._min_size * k > n:
            raise ConfigError(
                f"min_partition_size={self._min_size} x {k} partitions needs "
                f"{self._min_size * k} rows but the data has {n}; lower min_partition_size"
            )
        groups = class_groups(labels, rng)
        smallest = 0
        for _ in range(self._max_retries):
            buckets: list[list[np.ndarray]] = [[] for _ in range(k)]
            for group in groups:
                shares = rng.dirichlet(self._alpha)
                cuts = (np.cumsum(shares)[:-1] * len(group)).astype(np.int64)
                for bucket, piece in zip(buckets, np.split(group, cuts), strict=True):
                    bucket.append(piece)
            parts = [np.concatenate(b) for b in buckets]
            smallest = min(len(p) for p in parts)
            if smallest >= self._min_size:
                return parts
        raise ConfigError(
            f"DirichletPartitioner could not give each of {k} partitions at least "
            f"min_partition_size={self._min_size} rows in max_retries={self._max_retries} draws "
            f"(smallest got {smallest}); use a larger alpha (now {self._alpha.min():g}), a "
            "smaller min_partition_size, fewer partitions or more max_retries"
        )


class PathologicalPartitioner(_LabelPartitioner):
    """Each node gets rows of exactly ``num_classes_per_partition`` classes.

    ``class_assignment="cyclic"`` (default) shuffles the classes and hands them out round-robin,
    so every class is used as soon as ``num_partitions * k >= num_classes``; ``"random"`` draws
    each node's k classes independently (some classes may then be used by no node). A class's
    rows are shared equally among the nodes that hold it; rows of unused classes are left out.

    >>> import numpy as np
    >>> labels = np.repeat(np.arange(10), 20)
    >>> p = PathologicalPartitioner(5, num_classes_per_partition=2, labels=labels, seed=0)
    >>> [len(np.unique(labels[i])) for i in p.partition_indices(200)]
    [2, 2, 2, 2, 2]
    """

    def __init__(
        self,
        num_partitions: int,
        num_classes_per_partition: int,
        *,
        label_key: ColumnKey = "label",
        labels: Any = None,
        class_assignment: Literal["cyclic", "random"] = "cyclic",
        seed: int | None = 42,
    ) -> None:
        super().__init__(num_partitions, label_key=label_key, labels=labels, seed=seed)
        self._k = check_positive_int("num_classes_per_partition", num_classes_per_partition)
        if class_assignment not in ("cyclic", "random"):
            raise ConfigError(
                f"class_assignment must be 'cyclic' or 'random', got {class_assignment!r}"
            )
        self._assignment = class_assignment

    def _node_classes(self, num_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
        if self._assignment == "random":
            return [
                rng.choice(num_classes, self._k, replace=False) for _ in range(self.num_partitions)
            ]
        order = rng.permutation(num_classes)
        return [
            order[(i * self._k + np.arange(self._k)) % num_classes]
            for i in range(self.num_partitions)
        ]

    def _split(self, n: int, values: np.ndarray | None, rng: np.random.Generator) -> list[Any]:
        labels = self._labels(values)
        classes = np.unique(labels)
        if self._k > len(classes):
            raise ConfigError(
                f"num_classes_per_partition={self._k} but the labels have only {len(classes)} "
                f"classes; use at most {len(classes)}"
            )
        groups = class_groups(labels, rng)
        holders: list[list[int]] = [[] for _ in classes]
        for node, owned in enumerate(self._node_classes(len(classes), rng)):
            for c in owned:
                holders[int(c)].append(node)
        buckets: list[list[np.ndarray]] = [[] for _ in range(self.num_partitions)]
        for c, (group, nodes) in enumerate(zip(groups, holders, strict=True)):
            if len(nodes) > len(group):
                raise ConfigError(
                    f"class {classes[c]!r} has {len(group)} rows but {len(nodes)} partitions "
                    "need some of it; use fewer partitions or num_classes_per_partition"
                )
            for node, piece in zip(nodes, np.array_split(group, max(len(nodes), 1)), strict=False):
                buckets[node].append(piece)
        return [np.concatenate(b) for b in buckets]


class ShardPartitioner(_LabelPartitioner):
    """Sort rows by label, cut them into shards, and deal ``num_shards_per_partition`` to each.

    Without ``shard_size`` all rows are cut into ``num_partitions * num_shards_per_partition``
    near-equal shards; with it, shards have exactly ``shard_size`` rows and the rest is left out.
    Few shards per node means few classes per node (the classic "2 shards per client" split).

    >>> import numpy as np
    >>> labels = np.repeat(np.arange(10), 10)
    >>> p = ShardPartitioner(10, num_shards_per_partition=2, labels=labels, seed=0)
    >>> [len(x) for x in p.partition_indices(100)][:3]
    [10, 10, 10]
    """

    def __init__(
        self,
        num_partitions: int,
        num_shards_per_partition: int,
        *,
        shard_size: int | None = None,
        label_key: ColumnKey = "label",
        labels: Any = None,
        seed: int | None = 42,
    ) -> None:
        super().__init__(num_partitions, label_key=label_key, labels=labels, seed=seed)
        self._shards = check_positive_int("num_shards_per_partition", num_shards_per_partition)
        self._shard_size = (
            None if shard_size is None else check_positive_int("shard_size", shard_size)
        )

    def _split(self, n: int, values: np.ndarray | None, rng: np.random.Generator) -> list[Any]:
        total = self.num_partitions * self._shards
        order = np.concatenate(class_groups(self._labels(values), rng))
        if self._shard_size is None:
            if total > n:
                raise ConfigError(
                    f"{self.num_partitions} partitions x {self._shards} shards = {total} shards "
                    f"but the data has only {n} rows; use fewer shards or partitions"
                )
            shards = np.array_split(order, total)
        else:
            if total * self._shard_size > n:
                raise ConfigError(
                    f"{total} shards of shard_size={self._shard_size} need "
                    f"{total * self._shard_size} rows but the data has {n}; use a smaller "
                    "shard_size, fewer shards or leave shard_size=None"
                )
            shards = np.split(order[: total * self._shard_size], total)
        dealt = rng.permutation(total).reshape(self.num_partitions, self._shards)
        return [np.concatenate([shards[s] for s in row]) for row in dealt]
