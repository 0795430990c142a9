"""FederatedDataset: centralized test set, node partitions and per-node train/test splits."""

import numpy as np
import pytest

from glade.datasets import (
    DirichletPartitioner,
    FederatedDataset,
    IidPartitioner,
    NaturalIdPartitioner,
    NodePartition,
)
from glade.errors import ConfigError

N = 200
ROW_ID = np.arange(N)  # a feature that is the row's identity, to track rows through splits
Y = np.arange(N) % 5


def rows(data):
    return set(data[0].tolist())


@pytest.mark.parametrize("partitioner", [IidPartitioner(4), DirichletPartitioner(4, alpha=0.3)])
def test_splits_are_disjoint_and_cover_the_data(partitioner):
    fds = FederatedDataset((ROW_ID, Y), partitioner, test_fraction=0.25, seed=3)
    central = rows(fds.centralized_test())
    assert len(central) == 50
    seen = set(central)
    for i in range(fds.num_partitions):
        train, test = (
            rows(fds.load_partition(i, split="train")),
            rows(fds.load_partition(i, split="test")),
        )
        whole = rows(fds.load_partition(i))
        assert train.isdisjoint(test) and train | test == whole
        assert len(test) == round(0.2 * len(whole)) > 0
        assert seen.isdisjoint(whole)
        seen |= whole
    assert seen == set(range(N))


def test_splits_are_fixed_by_seed():
    a = FederatedDataset((ROW_ID, Y), IidPartitioner(3, seed=1), seed=9)
    b = FederatedDataset((ROW_ID, Y), IidPartitioner(3, seed=1), seed=9)
    c = FederatedDataset((ROW_ID, Y), IidPartitioner(3, seed=1), seed=10)
    assert rows(a.centralized_test()) == rows(b.centralized_test()) != rows(c.centralized_test())
    assert rows(a.load_partition(1, split="test")) == rows(b.load_partition(1, split="test"))


def test_given_test_set_is_used_and_all_data_partitioned():
    test = (np.arange(10) + 1000, np.zeros(10, dtype=int))
    fds = FederatedDataset((ROW_ID, Y), IidPartitioner(4), test=test, node_test_fraction=0.0)
    assert fds.centralized_test() is test
    sizes = [len(fds.load_partition(i, split="train")[0]) for i in range(4)]
    assert sizes == [50] * 4
    assert len(fds.load_partition(0, split="test")[0]) == 0


def test_node_test_split_never_empties_a_small_partition():
    fds = FederatedDataset((ROW_ID[:8], Y[:8]), IidPartitioner(4), test_fraction=0.0)
    for i in range(4):  # partitions of 2 rows: 1 train, 1 test
        assert len(fds.load_partition(i, split="train")[0]) == 1
        assert len(fds.load_partition(i, split="test")[0]) == 1


def test_load_node_reads_the_node_config():
    fds = FederatedDataset((ROW_ID, Y), IidPartitioner(5))
    node = fds.load_node({"partition-id": 3, "num-partitions": 5}, split="train")
    assert rows(node) == rows(fds.load_partition(3, split="train"))
    with pytest.raises(ConfigError, match="num-partitions=4 but the partitioner makes 5"):
        fds.load_node({"partition-id": 0, "num-partitions": 4})


def test_natural_ids_with_federated_dataset():
    users = np.array(["ann", "bob", "cy"])[np.arange(N) % 3]
    fds = FederatedDataset({"row": ROW_ID, "user": users}, NaturalIdPartitioner("user"))
    assert fds.num_partitions == 3
    assert set(fds.load_partition(2)["user"].tolist()) == {"cy"}


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"num-partitions": 2}, "no 'partition-id'"),
        ({"partition-id": 0}, "no 'num-partitions'"),
        ({"partition-id": "x", "num-partitions": 2}, "'partition-id' must be an integer"),
        ({"partition-id": 1.5, "num-partitions": 2}, "'partition-id' must be an integer"),
        ({"partition-id": 2, "num-partitions": 2}, r"partition-id must be in \[0, 2\)"),
        ({"partition-id": 0, "num-partitions": 0}, "num-partitions must be >= 1"),
    ],
)
def test_node_partition_rejects_bad_configs(config, match):
    with pytest.raises(ConfigError, match=match):
        NodePartition.from_node_config(config)


def test_node_partition_accepts_strings_from_the_cli():
    node = NodePartition.from_node_config({"partition-id": "1", "num-partitions": "4"})
    assert (node.partition_id, node.num_partitions) == (1, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test_fraction": 1.0}, r"test_fraction must be in \[0, 1\)"),
        ({"node_test_fraction": -0.1}, "node_test_fraction"),
        ({"test": (ROW_ID, Y), "test_fraction": 0.1}, "not both"),
    ],
)
def test_bad_fractions(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FederatedDataset((ROW_ID, Y), IidPartitioner(2), **kwargs)


def test_bad_split_and_partition_id():
    fds = FederatedDataset((ROW_ID, Y), IidPartitioner(2))
    with pytest.raises(ConfigError, match="split must be"):
        fds.load_partition(0, split="validation")
    with pytest.raises(ConfigError, match=r"partition_id must be in \[0, 2\)"):
        fds.load_partition(2)
    with pytest.raises(TypeError, match="must be a Partitioner"):
        FederatedDataset((ROW_ID, Y), "iid")
