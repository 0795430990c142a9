"""Property tests of the partitioners: coverage, sizes, determinism, and the skew they create."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glade.datasets import (
    DirichletPartitioner,
    IidPartitioner,
    NaturalIdPartitioner,
    PathologicalPartitioner,
    ShardPartitioner,
    SizePartitioner,
    label_skew,
)

FAST = settings(max_examples=40, deadline=None)


@st.composite
def labelled(draw, min_rows=1, max_rows=300, max_classes=12):
    """(num_partitions, labels) with at least one row per partition."""
    k = draw(st.integers(1, 20))
    n = draw(st.integers(max(k, min_rows), max(k, min_rows, max_rows)))
    num_classes = draw(st.integers(1, max_classes))
    seed = draw(st.integers(0, 2**32 - 1))
    labels = np.random.default_rng(seed).integers(0, num_classes, size=n)
    return k, labels


def assert_exact_cover(parts, n):
    """Every row in exactly one partition, positions sorted and int64."""
    allrows = np.concatenate(parts)
    assert allrows.dtype == np.int64
    assert np.array_equal(np.sort(allrows), np.arange(n))
    for p in parts:
        assert np.all(np.diff(p) > 0)


def build(kind, k, labels, seed):
    if kind == "iid":
        return IidPartitioner(k, seed=seed)
    if kind == "size":
        return SizePartitioner(weights=np.linspace(1.0, 3.0, k), seed=seed)
    if kind == "dirichlet":
        return DirichletPartitioner(k, alpha=0.7, labels=labels, min_partition_size=0, seed=seed)
    if kind == "shard":
        return ShardPartitioner(k, 1 + seed % 3, labels=labels, seed=seed)
    raise AssertionError(kind)


@FAST
@given(data=labelled(), seed=st.integers(0, 1000))
@pytest.mark.parametrize("kind", ["iid", "size", "dirichlet", "shard"])
def test_every_row_in_exactly_one_partition(kind, data, seed):
    k, labels = data
    if kind == "size":
        k = min(k, len(labels))  # weights 1..3 over k nodes: each gets >= n/(3k) rows
        labels = np.resize(labels, max(len(labels), 3 * k))
    if kind == "shard":
        labels = np.resize(labels, max(len(labels), k * (1 + seed % 3)))
    p = build(kind, k, labels, seed)
    parts = p.partition_indices(labels)
    assert len(parts) == k == p.num_partitions
    assert_exact_cover(parts, len(labels))


@FAST
@given(data=labelled())
def test_natural_ids_group_rows(data):
    _, ids = data
    p = NaturalIdPartitioner("id")
    parts = p.partition_indices({"x": np.zeros(len(ids)), "id": ids})
    assert_exact_cover(parts, len(ids))
    assert np.array_equal(p.natural_ids, np.unique(ids))
    for i, part in enumerate(parts):
        assert np.all(ids[part] == p.natural_ids[i])
        assert len(part) == np.sum(ids == p.natural_ids[i])


@FAST
@given(k=st.integers(1, 30), extra=st.integers(0, 500), seed=st.integers(0, 2**32 - 1))
def test_iid_sizes_differ_by_at_most_one(k, extra, seed):
    sizes = [len(p) for p in IidPartitioner(k, seed=seed).partition_indices(k + extra)]
    assert sum(sizes) == k + extra
    assert max(sizes) - min(sizes) <= 1


@FAST
@given(sizes=st.lists(st.integers(1, 50), min_size=1, max_size=12), spare=st.integers(0, 40))
def test_size_partitioner_uses_exact_sizes(sizes, spare):
    n = sum(sizes) + spare
    parts = SizePartitioner(sizes=sizes, seed=1).partition_indices(n)
    assert [len(p) for p in parts] == sizes
    used = np.concatenate(parts)
    assert len(np.unique(used)) == sum(sizes) and used.max() < n


@FAST
@given(
    weights=st.lists(st.floats(0.5, 20.0), min_size=1, max_size=10),
    n=st.integers(200, 2000),
)
def test_size_partitioner_shares_follow_weights(weights, n):
    parts = SizePartitioner(weights=weights).partition_indices(n)
    sizes = np.array([len(p) for p in parts])
    exact = np.array(weights) / sum(weights) * n
    assert sizes.sum() == n
    assert np.all(np.abs(sizes - exact) < 1.0)


def test_linear_and_exponential_sizes():
    assert [len(p) for p in SizePartitioner.linear(4).partition_indices(100)] == [10, 20, 30, 40]
    exp = [len(p) for p in SizePartitioner.exponential(3, base=3.0).partition_indices(130)]
    assert exp == [10, 30, 90]


@FAST
@given(
    k=st.integers(1, 10),
    shards=st.integers(1, 4),
    size=st.integers(1, 20),
    spare=st.integers(0, 30),
)
def test_shard_sizes_with_fixed_shard_size(k, shards, size, spare):
    n = k * shards * size + spare
    labels = np.arange(n) % 7
    parts = ShardPartitioner(k, shards, shard_size=size, labels=labels).partition_indices(n)
    assert [len(p) for p in parts] == [shards * size] * k
    assert len(np.unique(np.concatenate(parts))) == k * shards * size


@FAST
@given(data=labelled(min_rows=50), seeds=st.lists(st.integers(0, 10**6), min_size=2, max_size=2))
@pytest.mark.parametrize("kind", ["iid", "size", "dirichlet"])
def test_seed_fixes_the_split(kind, data, seeds):
    k, labels = data
    k = max(3, min(k, 10))
    first = build(kind, k, labels, seeds[0]).partition_indices(labels)
    again = build(kind, k, labels, seeds[0]).partition_indices(labels)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    if seeds[0] != seeds[1]:
        other = build(kind, k, labels, seeds[1]).partition_indices(labels)
        assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_split_is_computed_once_and_cannot_be_mutated():
    p = IidPartitioner(3, seed=None)  # unseeded: only the cache makes calls agree
    first = p.partition_indices(30)
    second = p.partition_indices(np.zeros(30))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    with pytest.raises(ValueError, match="read-only"):
        first[0][0] = 5
    with pytest.raises(ValueError, match="create a new partitioner"):
        p.partition_indices(31)


@FAST
@given(
    k=st.integers(1, 12),
    per=st.integers(1, 5),
    num_classes=st.integers(1, 15),
    assignment=st.sampled_from(["cyclic", "random"]),
    seed=st.integers(0, 10**6),
)
def test_pathological_gives_exactly_k_classes(k, per, num_classes, assignment, seed):
    per = min(per, num_classes)
    labels = np.random.default_rng(seed).permutation(np.arange(num_classes * k * 2) % num_classes)
    p = PathologicalPartitioner(k, per, labels=labels, class_assignment=assignment, seed=seed)
    parts = p.partition_indices(labels)
    assert [len(np.unique(labels[part])) for part in parts] == [per] * k
    used = np.concatenate(parts)
    assert len(np.unique(used)) == len(used)  # no row twice
    if assignment == "cyclic" and k * per >= num_classes:
        assert_exact_cover(parts, len(labels))


def mean_tv(parts, labels):
    """Reference for the skew statistic: mean over nodes of 1/2 * L1(node mix - global mix)."""
    classes = np.unique(labels)
    glob = np.array([np.mean(labels == c) for c in classes])
    tvs = []
    for part in parts:
        node = np.array([np.mean(labels[part] == c) for c in classes])
        tvs.append(0.5 * np.abs(node - glob).sum())
    return float(np.mean(tvs))


def test_label_skew_statistic_matches_reference():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    parts = [np.array([0, 1, 2]), np.array([3, 4, 5, 6, 7])]
    assert label_skew(parts, labels) == pytest.approx(mean_tv(parts, labels))
    assert label_skew([np.array([0, 2]), np.array([1, 3])], np.array([0, 1, 0, 1])) == 1.0 / 2
    assert label_skew([np.arange(4)], np.array([0, 1, 0, 1])) == 0.0


def test_dirichlet_skew_grows_as_alpha_falls():
    """Mean TV distance to the global label mix, averaged over 3 seeds: 100 < 1 < 0.1."""
    labels = np.repeat(np.arange(10), 300)  # 3000 rows, 10 balanced classes
    skew = {}
    for alpha in (100.0, 1.0, 0.1):
        values = []
        for seed in range(3):
            p = DirichletPartitioner(20, alpha, labels=labels, min_partition_size=5, seed=seed)
            parts = p.partition_indices(labels)
            assert_exact_cover(parts, len(labels))
            values.append(mean_tv(parts, labels))
        skew[alpha] = float(np.mean(values))
    assert skew[100.0] < 0.15
    assert skew[1.0] > skew[100.0] + 0.2
    assert skew[0.1] > skew[1.0] + 0.15
