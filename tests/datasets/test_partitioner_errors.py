"""Impossible or malformed requests fail early with a ConfigError naming the parameter."""

import numpy as np
import pytest

from glade.datasets import (
    DirichletPartitioner,
    IidPartitioner,
    NaturalIdPartitioner,
    PathologicalPartitioner,
    ShardPartitioner,
    SizePartitioner,
)
from glade.errors import ConfigError

LABELS = np.repeat(np.arange(3), 10)  # 30 rows, 3 classes


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: IidPartitioner(0), "num_partitions must be a positive integer"),
        (lambda: IidPartitioner(2.5), "num_partitions"),
        (lambda: IidPartitioner(True), "num_partitions"),
        (lambda: IidPartitioner(2, seed="x"), "seed"),
        (lambda: DirichletPartitioner(3, alpha=0), "alpha must be > 0"),
        (lambda: DirichletPartitioner(3, alpha=-1.0), "alpha must be > 0"),
        (lambda: DirichletPartitioner(3, alpha=[1.0, 0.0, 1.0]), "alpha must be > 0"),
        (lambda: DirichletPartitioner(3, alpha=[1.0, 2.0]), r"one per partition \(3\), got 2"),
        (lambda: DirichletPartitioner(3, alpha=1, min_partition_size=-1), "min_partition_size"),
        (lambda: DirichletPartitioner(3, alpha=1, max_retries=0), "max_retries"),
        (lambda: PathologicalPartitioner(3, 0), "num_classes_per_partition"),
        (lambda: PathologicalPartitioner(3, 1, class_assignment="x"), "class_assignment"),
        (lambda: ShardPartitioner(3, 0), "num_shards_per_partition"),
        (lambda: ShardPartitioner(3, 1, shard_size=0), "shard_size"),
        (lambda: SizePartitioner(sizes=[3, -1]), r"sizes\[1\] must be a positive integer"),
        (lambda: SizePartitioner(sizes=[]), "at least one partition"),
        (lambda: SizePartitioner(weights=[1.0, 0.0]), "weights must be finite positive"),
        (lambda: SizePartitioner(sizes=[1], weights=[1.0]), "exactly one of"),
        (lambda: SizePartitioner(), "exactly one of"),
        (lambda: SizePartitioner.exponential(3, base=0), "base must be positive"),
        (lambda: DirichletPartitioner(3, alpha=1, labels=np.zeros((4, 2))), "one-hot"),
    ],
)
def test_bad_parameters(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


@pytest.mark.parametrize(
    ("partitioner", "data", "match"),
    [
        (IidPartitioner(31), LABELS, r"num_partitions \(31\) is larger than the number of rows"),
        (IidPartitioner(2), 0, "no rows"),
        (SizePartitioner(sizes=[20, 20]), 30, "ask for 40 rows but the data has only 30"),
        (SizePartitioner.exponential(12), 100, "leave partition 0 with no rows"),
        (PathologicalPartitioner(2, 4), LABELS, "num_classes_per_partition=4 but the labels"),
        (PathologicalPartitioner(25, 3), LABELS, "has 10 rows but 25 partitions"),
        (ShardPartitioner(10, 4), LABELS, "40 shards but the data has only 30"),
        (ShardPartitioner(3, 2, shard_size=6), LABELS, "shard_size=6 need 36 rows"),
        (DirichletPartitioner(4, alpha=1.0, min_partition_size=8), LABELS, "lower min_partition"),
        (DirichletPartitioner(3, alpha=1.0), 30, "needs labels"),
        (DirichletPartitioner(3, alpha=1.0, labels=LABELS), 29, "30 entries but the data has 29"),
        (DirichletPartitioner(3, alpha=1.0, label_key="y"), {"label": LABELS}, "unknown column"),
        (NaturalIdPartitioner("user"), {"x": LABELS}, "unknown column 'user'"),
    ],
)
def test_impossible_requests(partitioner, data, match):
    with pytest.raises(ConfigError, match=match):
        partitioner.partition_indices(data)


def test_dirichlet_retries_then_suggests_larger_alpha():
    labels = np.repeat(np.arange(10), 20)
    strict = DirichletPartitioner(
        20, alpha=0.01, labels=labels, min_partition_size=8, max_retries=5, seed=0
    )
    with pytest.raises(ConfigError, match=r"max_retries=5.*larger alpha \(now 0.01\)"):
        strict.partition_indices(labels)
    relaxed = DirichletPartitioner(20, alpha=1000.0, labels=labels, min_partition_size=8, seed=0)
    assert min(len(p) for p in relaxed.partition_indices(labels)) >= 8


def test_min_partition_size_is_honoured():
    labels = np.repeat(np.arange(5), 40)
    p = DirichletPartitioner(10, alpha=0.3, labels=labels, min_partition_size=10, seed=3)
    assert min(len(part) for part in p.partition_indices(labels)) >= 10


def test_partition_id_out_of_range():
    with pytest.raises(ConfigError, match=r"partition_id must be in \[0, 3\)"):
        IidPartitioner(3).load_partition(np.arange(9), 3)


def test_natural_partitioner_needs_data_before_num_partitions():
    p = NaturalIdPartitioner("id")
    with pytest.raises(ValueError, match="after seeing data"):
        _ = p.num_partitions
    with pytest.raises(ValueError, match="after partition_indices"):
        _ = p.natural_ids
