"""`FederatedDataset`: a held-out test set plus one partition (and train/test split) per node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from glade.datasets.adapters import num_rows, select_rows
from glade.datasets.partitioner import Partitioner
from glade.errors import ConfigError

__all__ = ["FederatedDataset", "NodePartition", "Split"]

Split = Literal["train", "test"]

PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"


def _fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def _node_config_int(node_config: Mapping[str, Any], key: str) -> int:
    if key not in node_config:
        raise ConfigError(
            f"node config has no {key!r}; the simulation sets it, and a SuperNode gets it "
            f'with --node-config "partition-id=0 num-partitions=10"'
        )
    value = node_config[key]
    try:
        if isinstance(value, bool) or float(value) != int(value):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"node config {key!r} must be an integer, got {value!r}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePartition:
    """Which partition a node owns: ``partition_id`` of ``num_partitions``.

    >>> NodePartition.from_node_config({"partition-id": "2", "num-partitions": 5})
    NodePartition(partition_id=2, num_partitions=5)
    """

    partition_id: int
    num_partitions: int

    def __post_init__(self) -> None:
        if self.num_partitions < 1:
            raise ConfigError(f"num-partitions must be >= 1, got {self.num_partitions}")
        if not 0 <= self.partition_id < self.num_partitions:
            raise ConfigError(
                f"partition-id must be in [0, {self.num_partitions}), got {self.partition_id}"
            )

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> NodePartition:
        """Read ``partition-id`` and ``num-partitions`` (ints or strings) from a node config."""
        return cls(
            partition_id=_node_config_int(node_config, PARTITION_ID),
            num_partitions=_node_config_int(node_config, NUM_PARTITIONS),
        )


class FederatedDataset:
    """Split one dataset into a centralized test set and per-node partitions.

    Unless ``test`` is given, a shuffled ``test_fraction`` of ``data`` (default 0.2) is held out
    as the centralized test set and the rest is partitioned. Each partition is further split
    into ``train``/``test`` with ``node_test_fraction``. All splits are fixed by ``seed``.
    Label partitioners should read labels from the data (``label_key``) rather than take
    ``labels=`` up front: they see only the rows left after the test set is held out.

    >>> import numpy as np
    >>> from glade.datasets import IidPartitioner
    >>> X, y = np.arange(200).reshape(100, 2), np.arange(100) % 3
    >>> fds = FederatedDataset((X, y), IidPartitioner(4), test_fraction=0.2, seed=0)
    >>> len(fds.centralized_test()[1]), len(fds.load_partition(0)[1])
    (20, 20)
    >>> len(fds.load_partition(0, split="train")[1]), len(fds.load_partition(0, split="test")[1])
    (16, 4)
    """

    def __init__(
        self,
        data: Any,
        partitioner: Partitioner,
        *,
        test: Any = None,
        test_fraction: float | None = None,
        node_test_fraction: float = 0.2,
        seed: int | None = 42,
    ) -> None:
        if not isinstance(partitioner, Partitioner):
            raise TypeError(f"partitioner must be a Partitioner, got {type(partitioner).__name__}")
        if test is not None and test_fraction is not None:
            raise ConfigError("pass either test=... (a ready test set) or test_fraction, not both")
        self._partitioner = partitioner
        self._node_test_fraction = _fraction("node_test_fraction", node_test_fraction)
        self._seed = seed
        self._node_splits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if test is not None:
            self._pool, self._test = data, test
            return
        fraction = _fraction("test_fraction", 0.2 if test_fraction is None else test_fraction)
        n = num_rows(data)
        order = np.random.default_rng(seed).permutation(n)
        n_test = round(fraction * n)
        self._pool = select_rows(data, np.sort(order[n_test:]))
        self._test = select_rows(data, np.sort(order[:n_test]))

    @property
    def partitioner(self) -> Partitioner:
        """The partitioner that splits the non-test rows across nodes."""
        return self._partitioner

    @property
    def num_partitions(self) -> int:
        """Number of node partitions (computed from the data for natural ids)."""
        return len(self._partitioner.partition_indices(self._pool))

    def centralized_test(self) -> Any:
        """The held-out test set, for evaluation on the server."""
        return self._test

    def load_partition(self, partition_id: int, *, split: Split | None = None) -> Any:
        """Node ``partition_id``'s rows: all of them, or its ``"train"`` or ``"test"`` part."""
        parts = self._partitioner.partition_indices(self._pool)
        if isinstance(partition_id, bool) or not 0 <= partition_id < len(parts):
            raise ConfigError(f"partition_id must be in [0, {len(parts)}), got {partition_id!r}")
        rows = parts[partition_id]
        if split is None:
            return select_rows(self._pool, rows)
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train', 'test' or None, got {split!r}")
        train, test = self._node_split(partition_id, len(rows))
        return select_rows(self._pool, rows[train if split == "train" else test])

    def load_node(self, node_config: Mapping[str, Any], *, split: Split | None = None) -> Any:
        """This node's data, from the ``partition-id``/``num-partitions`` of its node config."""
        node = NodePartition.from_node_config(node_config)
        if node.num_partitions != self.num_partitions:
            raise ConfigError(
                f"node config says num-partitions={node.num_partitions} but the partitioner "
                f"makes {self.num_partitions}; build the partitioner from num-partitions"
            )
        return self.load_partition(node.partition_id, split=split)

    def _node_split(self, partition_id: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions within the partition of its train and test rows (cached per node)."""
        if partition_id not in self._node_splits:
            seed = None if self._seed is None else [self._seed, partition_id]
            order = np.random.default_rng(seed).permutation(size)
            n_test = round(self._node_test_fraction * size)
            if self._node_test_fraction > 0 and size >= 2:
                n_test = min(max(n_test, 1), size - 1)
            self._node_splits[partition_id] = (np.sort(order[n_test:]), np.sort(order[:n_test]))
        return self._node_splits[partition_id]
