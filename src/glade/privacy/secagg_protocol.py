"""SecAgg+ on the Message API: the names, the neighbour graph and the share envelope.

One round of :class:`~glade.privacy.SecAggPlus` with the nodes running
:func:`~glade.privacy.secaggplus_mod` takes four exchanges::

    server                                          node u
      -- secagg-setup -------------------------------->  new X25519 key pairs (c: encryption,
      <------------------------------- c_pk, s_pk ----   s: masks)
      -- secagg-share-keys (neighbours, their keys) -->  self-mask seed b_u; Shamir shares of
      <---------- shares of b_u and s_sk_u, encrypted -   b_u and s_sk_u, one per neighbour,
                  for each neighbour (AES-GCM)             AES-GCM under a key agreed with it
      -- train (+ the ciphertexts for u) ------------->  train; y_u = w_u * Q(update_u) + PRG(b_u)
      <----------------------------- masked y_u ------     + sum_v +-PRG(KA(s_sk_u, s_pk_v))
      -- secagg-unmask (who survived, who dropped) --->  shares of b_v for survivors v and of
      <----------------------------------- shares ----   s_sk_v for dropped v (never both)

The server sums the masked vectors (modulo 2**64), rebuilds each survivor's b_v and each
dropped node's s_sk_v from ``threshold`` shares, removes the self masks of the survivors
and the pairwise masks that the survivors share with dropped nodes: what is left is
``sum(w_u * Q(update_u))``, never one node's update. Pairwise masks cancel between
survivors. The neighbour graph is a random circulant (Harary) graph of degree
``num_shares - 1`` over the nodes, so each node's work grows with ``num_shares``, not with
the number of nodes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from glade.errors import RecordError
from glade.privacy.shamir import Share

__all__ = [
    "MASKED",
    "SECAGG",
    "SETUP",
    "SHARE_KEYS",
    "UNMASK",
    "associated_data",
    "neighbour_graph",
    "pack_shares",
    "unpack_shares",
]

SETUP = "secagg-setup"
"""Message type of stage 1: the node makes fresh key pairs and returns the public keys."""
SHARE_KEYS = "secagg-share-keys"
"""Message type of stage 2: the node shares its secrets with its neighbours, encrypted."""
UNMASK = "secagg-unmask"
"""Message type of stage 4: the node reveals the shares that remove the masks."""
SECAGG = "secagg"
"""Content key of the ConfigRecord carrying each stage's protocol fields."""
MASKED = "secagg-masked"
"""Content key of the ArrayRecord with the masked vector of a train reply."""
MASKED_VECTOR = "vector"
STATE = "secagg-state"
"""Context state key of the node's secrets for the current round."""

ENCRYPTION_INFO = b"glade-secagg-v1 share encryption"
MASK_INFO = b"glade-secagg-v1 pairwise mask"


def neighbour_graph(
    node_ids: Sequence[int], num_shares: int, rng: random.Random
) -> dict[int, list[int]]:
    """Each node's neighbourhood (itself included), as sorted node ids.

    With at most ``num_shares`` nodes everyone is everyone's neighbour. Otherwise nodes sit
    on a ring in random order and each one's neighbourhood is the ``(k - 1) / 2`` nodes on
    either side, ``k`` being ``num_shares`` rounded up to odd: a symmetric graph in which
    every node has ``k`` neighbours.
    """
    nodes = sorted(set(node_ids))
    if len(nodes) <= num_shares + (1 - num_shares % 2):
        return {n: list(nodes) for n in nodes}
    half = num_shares // 2  # (k - 1) / 2 for k = num_shares rounded up to odd
    order = list(nodes)
    rng.shuffle(order)
    size = len(order)
    return {
        order[i]: sorted(order[(i + j) % size] for j in range(-half, half + 1)) for i in range(size)
    }


def associated_data(server_round: int, src: int, dst: int) -> bytes:
    """What an encrypted share is bound to: the round, its sender and its receiver."""
    return b"glade-secagg-v1|" + b"".join(
        v.to_bytes(16, "big", signed=True) for v in (server_round, src, dst)
    )


_ID_BYTES = 16


def pack_shares(src: int, dst: int, seed_share: Share, key_share: Share) -> bytes:
    """The plaintext of one envelope: who it is from and to, and the two shares."""
    ids = b"".join(v.to_bytes(_ID_BYTES, "big", signed=True) for v in (src, dst))
    return ids + seed_share.to_bytes() + key_share.to_bytes()


def unpack_shares(plaintext: bytes, *, src: int, dst: int) -> tuple[Share, Share]:
    """Inverse of :func:`pack_shares`, checking the sender and the receiver."""
    ids, rest = plaintext[: 2 * _ID_BYTES], plaintext[2 * _ID_BYTES :]
    got = [int.from_bytes(ids[i : i + _ID_BYTES], "big", signed=True) for i in (0, _ID_BYTES)]
    if got != [src, dst]:
        raise RecordError(f"a share envelope names {got[0]} -> {got[1]}, expected {src} -> {dst}")
    half = len(rest) // 2
    return Share.from_bytes(rest[:half]), Share.from_bytes(rest[half:])
