"""SecAgg+ building blocks: Shamir sharing, key agreement, AEAD, PRG, quantisation, graph."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glade import RecordError
from glade.privacy.secagg_crypto import (
    KeyPair,
    agree,
    decrypt,
    dequantize_mean,
    encrypt,
    expand_mask,
    quantize,
)
from glade.privacy.secagg_protocol import (
    associated_data,
    neighbour_graph,
    pack_shares,
    unpack_shares,
)
from glade.privacy.shamir import PRIME, Share, combine_shares, split_secret


# -- Shamir ---------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    secret=st.binary(min_size=0, max_size=64),
    num_shares=st.integers(1, 12),
    data=st.data(),
)
def test_any_threshold_shares_recover_the_secret(secret, num_shares, data):
    threshold = data.draw(st.integers(1, num_shares))
    shares = split_secret(secret, num_shares=num_shares, threshold=threshold)
    assert [s.x for s in shares] == list(range(1, num_shares + 1))
    chosen = data.draw(st.permutations(shares))[:threshold]
    assert combine_shares(chosen, size=64) == secret.rjust(64, b"\0")


def test_every_subset_of_threshold_shares_agrees():
    secret = bytes(range(32))
    shares = split_secret(secret, num_shares=6, threshold=4)
    for subset in itertools.combinations(shares, 4):
        assert combine_shares(subset, size=32) == secret
    for subset in itertools.combinations(shares, 5):  # more than needed works too
        assert combine_shares(subset, size=32) == secret


def test_fewer_shares_than_threshold_reveal_nothing_useful():
    secret = b"\x01" * 32
    wrong = 0
    for _ in range(20):
        shares = split_secret(secret, num_shares=5, threshold=3)
        try:
            wrong += combine_shares(shares[:2], size=32) != secret
        except RecordError:  # the interpolated value does not even fit in 32 bytes
            wrong += 1
    assert wrong == 20


def test_two_splits_of_one_secret_give_unrelated_shares():
    first = split_secret(b"k" * 32, num_shares=3, threshold=2)
    second = split_secret(b"k" * 32, num_shares=3, threshold=2)
    assert all(a.y != b.y for a, b in zip(first, second, strict=True))


def test_share_encoding_round_trips_and_validates():
    share = Share(7, PRIME - 1)
    assert Share.from_bytes(share.to_bytes()) == share
    with pytest.raises(RecordError):
        Share.from_bytes(share.to_bytes()[:-1])
    with pytest.raises(RecordError):
        Share(0, 1)
    with pytest.raises(RecordError):
        Share(1, PRIME)


def test_bad_sharing_parameters_raise():
    with pytest.raises(ValueError, match="threshold"):
        split_secret(b"x", num_shares=3, threshold=4)
    with pytest.raises(ValueError, match="64 bytes"):
        split_secret(b"x" * 65, num_shares=3, threshold=2)
    shares = split_secret(b"x", num_shares=3, threshold=2)
    with pytest.raises(RecordError, match="duplicate"):
        combine_shares([shares[0], shares[0]], size=1)


# -- key agreement, encryption --------------------------------------------------------------
def test_key_agreement_is_symmetric_and_separated_by_info():
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    assert agree(a.private, b.public, info=b"x") == agree(b.private, a.public, info=b"x")
    assert agree(a.private, b.public, info=b"x") != agree(a.private, b.public, info=b"y")
    assert agree(a.private, b.public, info=b"x") != agree(a.private, c.public, info=b"x")
    assert KeyPair.from_private(a.private) == a


def test_shares_are_authenticated_and_bound_to_their_route():
    a, b = KeyPair.generate(), KeyPair.generate()
    key = agree(a.private, b.public, info=b"enc")
    seed_share, key_share = split_secret(b"s" * 32, num_shares=2, threshold=2)[0], Share(1, 5)
    blob = encrypt(key, pack_shares(11, 22, seed_share, key_share), associated_data=b"ad")
    plaintext = decrypt(key, blob, associated_data=b"ad")
    assert unpack_shares(plaintext, src=11, dst=22) == (seed_share, key_share)
    with pytest.raises(RecordError, match="names"):
        unpack_shares(plaintext, src=11, dst=23)
    with pytest.raises(RecordError, match="authentication"):
        decrypt(key, blob, associated_data=b"other route")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(RecordError, match="authentication"):
        decrypt(key, tampered, associated_data=b"ad")
    assert associated_data(1, 2, 3) != associated_data(1, 3, 2)
    assert associated_data(1, -(2**63), 2**64 - 1) != associated_data(2, -(2**63), 2**64 - 1)


# -- masks and quantisation -----------------------------------------------------------------
def test_mask_prg_is_deterministic_and_uniform_looking():
    mask = expand_mask(b"\x07" * 32, 200_000)
    assert mask.dtype == np.uint64 and mask.shape == (200_000,)
    assert np.array_equal(mask, expand_mask(b"\x07" * 32, 200_000))
    assert np.array_equal(expand_mask(b"\x07" * 32, 10), mask[:10])  # a prefix of one stream
    assert not np.array_equal(expand_mask(b"\x08" * 32, 10), mask[:10])
    top_bits = (mask >> np.uint64(60)).astype(np.int64)  # 16 buckets, 12,500 expected each
    counts = np.bincount(top_bits, minlength=16)
    assert np.all(np.abs(counts - 12_500) < 6 * np.sqrt(12_500))


def test_masks_cancel_modulo_2_64():
    rng = np.random.default_rng(0)
    value = rng.integers(0, 2**40, size=1000, dtype=np.uint64)
    mask = expand_mask(b"m" * 32, 1000)
    masked_a, masked_b = value + mask, np.zeros(1000, np.uint64) - mask
    assert np.array_equal(masked_a + masked_b, value)


@settings(max_examples=30, deadline=None)
@given(
    clipping_range=st.floats(0.01, 100.0),
    bits=st.integers(2, 30),
    weights=st.lists(st.integers(1, 1000), min_size=1, max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_quantised_weighted_mean_is_within_the_error_bound(clipping_range, bits, weights, seed):
    rng = np.random.default_rng(seed)
    values = rng.uniform(-clipping_range, clipping_range, size=(len(weights), 50))
    levels = 2**bits - 1
    total = np.zeros(50, np.uint64)
    for w, v in zip(weights, values, strict=True):
        total += quantize(v, clipping_range=clipping_range, levels=levels) * np.uint64(w)
    mean = dequantize_mean(
        total, total_weight=sum(weights), clipping_range=clipping_range, levels=levels
    )
    exact = np.average(values, axis=0, weights=weights)
    bound = clipping_range / levels
    assert np.max(np.abs(mean - exact)) <= bound * (1 + 1e-9) + 1e-12 * clipping_range


def test_quantisation_clips_out_of_range_values_and_checks_overflow():
    q = quantize(np.array([-5.0, 0.0, 5.0]), clipping_range=1.0, levels=10)
    assert q.tolist() == [0, 5, 10]
    with pytest.raises(RecordError, match="overflows"):
        dequantize_mean(q, total_weight=2**62, clipping_range=1.0, levels=10)


# -- neighbour graph ------------------------------------------------------------------------
@pytest.mark.parametrize(("num_nodes", "num_shares"), [(5, 7), (8, 8), (9, 8), (30, 7), (100, 10)])
def test_neighbour_graph_is_symmetric_and_regular(num_nodes, num_shares):
    nodes = random.Random(num_nodes).sample(range(1, 10**9), num_nodes)
    graph = neighbour_graph(nodes, num_shares, random.Random(1))
    assert set(graph) == set(nodes)
    odd = num_shares + (1 - num_shares % 2)
    size = num_nodes if num_nodes <= odd else odd
    for node, nbrs in graph.items():
        assert node in nbrs and len(nbrs) == len(set(nbrs)) == size and nbrs == sorted(nbrs)
        assert all(node in graph[v] for v in nbrs)
