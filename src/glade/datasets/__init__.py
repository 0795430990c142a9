"""Federated partitioning of NumPy, pandas and Hugging Face datasets, fully offline.

Pick a :class:`Partitioner` for the heterogeneity you want to study, then load a node's share::

    from glade.datasets import DirichletPartitioner, FederatedDataset, load_sklearn

    X, y = load_sklearn("digits")
    fds = FederatedDataset((X, y), DirichletPartitioner(10, alpha=0.5))
    X_train, y_train = fds.load_partition(3, split="train")

pandas, ``datasets`` (Hugging Face), matplotlib and scikit-learn are optional and imported only
by the functions that need them. See ``docs/partitioning.md``.
"""

from glade.datasets.adapters import column, num_rows, select_rows
from glade.datasets.federated import FederatedDataset, NodePartition, Split
from glade.datasets.iid import IidPartitioner, SizePartitioner
from glade.datasets.label_skew import (
    DirichletPartitioner,
    PathologicalPartitioner,
    ShardPartitioner,
)
from glade.datasets.loaders import SKLEARN_DATASETS, load_local, load_sklearn
from glade.datasets.natural import NaturalIdPartitioner
from glade.datasets.partitioner import Partitioner
from glade.datasets.plot import plot_partition
from glade.datasets.stats import label_counts, label_skew

__all__ = [
    "SKLEARN_DATASETS",
    "DirichletPartitioner",
    "FederatedDataset",
    "IidPartitioner",
    "NaturalIdPartitioner",
    "NodePartition",
    "PathologicalPartitioner",
    "Partitioner",
    "ShardPartitioner",
    "SizePartitioner",
    "Split",
    "column",
    "label_counts",
    "label_skew",
    "load_local",
    "load_sklearn",
    "num_rows",
    "plot_partition",
    "select_rows",
]
