"""`secaggplus_mod`: the node side of SecAgg+ (see :mod:`glade.privacy.secagg_protocol`).

The mod answers the ``secagg-*`` stage messages itself, and on a ``train`` message that
carries a ``"secagg"`` record it runs the rest of the app, then replaces the returned
arrays with the masked, quantised, weighted update. The node's secrets for the round live
in ``context.state`` between stages and never leave the node unencrypted.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from glade.client.app import CallNext
from glade.context import Context
from glade.errors import RecordError
from glade.keys import ARRAYS, METRICS
from glade.message import Message, MessageType
from glade.privacy.clipping import update_of
from glade.privacy.secagg_crypto import (
    KeyPair,
    agree,
    decrypt,
    encrypt,
    expand_mask,
    load_private,
    quantize,
)
from glade.privacy.secagg_protocol import (
    ENCRYPTION_INFO,
    MASK_INFO,
    MASKED,
    MASKED_VECTOR,
    SECAGG,
    SETUP,
    SHARE_KEYS,
    STATE,
    UNMASK,
    associated_data,
    pack_shares,
    unpack_shares,
)
from glade.privacy.shamir import split_secret
from glade.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

__all__ = ["secaggplus_mod"]

logger = logging.getLogger(__name__)

NDArray = np.ndarray[Any, Any]


def secaggplus_mod(msg: Message, context: Context, call_next: CallNext) -> Message:
    """Take part in SecAgg+ rounds driven by :class:`~glade.privacy.SecAggPlus`.

    Put it first in the ClientApp's mods (outermost), before any mod that changes the
    update (e.g. :func:`~glade.privacy.dp_clipping_mod`), so it masks the final update.

    >>> from glade import ClientApp
    >>> app = ClientApp(mods=[secaggplus_mod])
    """
    stage = msg.message_type
    fields = msg.content.get(SECAGG) if msg.content is not None else None
    if stage not in (SETUP, SHARE_KEYS, UNMASK) and not (
        stage == MessageType.TRAIN and isinstance(fields, ConfigRecord)
    ):
        return call_next(msg, context)
    if not isinstance(fields, ConfigRecord):
        raise RecordError(f"a {stage!r} message needs a ConfigRecord {SECAGG!r}")
    if stage == SETUP:
        out = _setup(fields, context)
    elif stage == SHARE_KEYS:
        out = _share_keys(fields, context)
    elif stage == UNMASK:
        out = _unmask(fields, context)
    else:
        return _masked_train(msg, fields, context, call_next)
    return Message.reply(msg, RecordDict({SECAGG: out}))


# -- helpers -------------------------------------------------------------------------------
def _int(fields: ConfigRecord, key: str) -> int:
    value = fields.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError(f"SecAgg+ field {key!r} must be an int, got {value!r}")
    return value


def _list(fields: ConfigRecord, key: str, kind: type) -> list[Any]:
    value = fields.get(key)
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise RecordError(f"SecAgg+ field {key!r} must be a list of {kind.__name__}")
    return value


def _bytes(fields: ConfigRecord, key: str) -> bytes:
    value = fields.get(key)
    if not isinstance(value, bytes):
        raise RecordError(f"SecAgg+ field {key!r} must be bytes")
    return value


def _state(context: Context, server_round: int) -> ConfigRecord:
    state = context.state.get(STATE)
    if not isinstance(state, ConfigRecord) or state.get("round") != server_round:
        raise RecordError(f"this node did not set up SecAgg+ round {server_round}")
    return state


# -- stages --------------------------------------------------------------------------------
def _setup(fields: ConfigRecord, context: Context) -> ConfigRecord:
    """Stage 1: fresh key pairs for this round; the public halves go to the server."""
    enc, mask = KeyPair.generate(), KeyPair.generate()
    context.state[STATE] = ConfigRecord(
        {"round": _int(fields, "round"), "c-sk": enc.private, "s-sk": mask.private}
    )
    return ConfigRecord({"c-pk": enc.public, "s-pk": mask.public})


def _share_keys(fields: ConfigRecord, context: Context) -> ConfigRecord:
    """Stage 2: share the self-mask seed and the mask key with the neighbours, encrypted."""
    server_round = _int(fields, "round")
    state = _state(context, server_round)
    me, threshold = context.node_id, _int(fields, "threshold")
    neighbours = _list(fields, "neighbours", int)
    c_pks, s_pks = _list(fields, "c-pks", bytes), _list(fields, "s-pks", bytes)
    if me not in neighbours or not len(neighbours) == len(c_pks) == len(s_pks):
        raise RecordError("the SecAgg+ neighbour list must hold this node and one key each")
    if not 2 <= threshold <= len(neighbours):
        raise RecordError(f"threshold {threshold} is invalid for {len(neighbours)} neighbours")
    seed = os.urandom(32)
    seed_shares = split_secret(seed, num_shares=len(neighbours), threshold=threshold)
    key_shares = split_secret(
        _bytes(state, "s-sk"), num_shares=len(neighbours), threshold=threshold
    )
    c_sk = load_private(_bytes(state, "c-sk"))
    ciphertexts = []
    for dst, c_pk, seed_share, key_share in zip(
        neighbours, c_pks, seed_shares, key_shares, strict=True
    ):
        key = agree(c_sk, c_pk, info=ENCRYPTION_INFO)
        plaintext = pack_shares(me, dst, seed_share, key_share)
        ciphertexts.append(
            encrypt(key, plaintext, associated_data=associated_data(server_round, me, dst))
        )
    state.update(
        {
            "b-seed": seed,
            "threshold": threshold,
            "neighbours": neighbours,
            "c-pks": c_pks,
            "s-pks": s_pks,
        }
    )
    return ConfigRecord({"dst": neighbours, "ciphertexts": ciphertexts})


def _masked_train(
    msg: Message, fields: ConfigRecord, context: Context, call_next: CallNext
) -> Message:
    """Stage 3: keep the shares meant for this node, train, and mask the update."""
    server_round = _int(fields, "round")
    state = _state(context, server_round)
    if "sources" in state:
        raise RecordError(f"this node already sent its masked input in round {server_round}")
    _receive_shares(fields, state, server_round, context.node_id)
    assert msg.content is not None
    content = msg.content.copy()
    del content[SECAGG]
    reply = call_next(Message(content, metadata=msg.metadata), context)
    if reply.content is None:
        return reply  # the app failed: the server treats this node as dropped
    vector = _masked_vector(msg, reply, fields, state, context.node_id)
    out = reply.content.copy()
    out.pop(ARRAYS, None)
    out[MASKED] = ArrayRecord({MASKED_VECTOR: vector})
    return Message(out, metadata=reply.metadata)


def _receive_shares(fields: ConfigRecord, state: ConfigRecord, server_round: int, me: int) -> None:
    sources = _list(fields, "sources", int)
    ciphertexts = _list(fields, "ciphertexts", bytes)
    neighbours = _list(state, "neighbours", int)
    c_pks = _list(state, "c-pks", bytes)
    threshold = _int(state, "threshold")
    if len(sources) != len(ciphertexts) or len(set(sources)) != len(sources):
        raise RecordError("SecAgg+ sources and ciphertexts must pair up, without repeats")
    if me not in sources or not set(sources) <= set(neighbours):
        raise RecordError("SecAgg+ shares must come from this node's neighbours (and itself)")
    if len(sources) < threshold:
        raise RecordError(
            f"only {len(sources)} neighbours shared keys, the threshold is {threshold}"
        )
    c_sk = load_private(_bytes(state, "c-sk"))
    seed_shares, key_shares = [], []
    for src, blob in zip(sources, ciphertexts, strict=True):
        key = agree(c_sk, c_pks[neighbours.index(src)], info=ENCRYPTION_INFO)
        plaintext = decrypt(key, blob, associated_data=associated_data(server_round, src, me))
        seed_share, key_share = unpack_shares(plaintext, src=src, dst=me)
        seed_shares.append(seed_share.to_bytes())
        key_shares.append(key_share.to_bytes())
    state.update({"sources": sources, "seed-shares": seed_shares, "key-shares": key_shares})


def _weight(reply: Message, fields: ConfigRecord) -> int:
    if not fields.get("weighted", True):
        return 1
    key = fields.get("weight-key")
    assert reply.content is not None
    metrics = reply.content.get(METRICS)
    value = metrics.get(key) if isinstance(metrics, MetricRecord) and isinstance(key, str) else None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise RecordError(f"SecAgg+ needs a metric {key!r} > 0 to weigh the update, got {value!r}")
    if float(value) != int(value):
        raise RecordError(f"SecAgg+ weights must be whole numbers, got {key!r}={value}")
    return int(value)


def _masked_vector(
    msg: Message, reply: Message, fields: ConfigRecord, state: ConfigRecord, me: int
) -> NDArray:
    """``[w * Q(update), w] + PRG(b) + sum of signed pairwise masks`` modulo 2**64."""
    assert msg.content is not None and reply.content is not None
    sent, returned = msg.content.get(ARRAYS), reply.content.get(ARRAYS)
    if not isinstance(sent, ArrayRecord) or not isinstance(returned, ArrayRecord):
        raise RecordError("a SecAgg+ train exchange needs arrays in the instruction and reply")
    flat = np.concatenate([u.ravel() for u in update_of(returned, sent)] or [np.zeros(0)])
    clipping_range = fields.get("clipping-range")
    if not isinstance(clipping_range, float) or not clipping_range > 0:
        raise RecordError(f"SecAgg+ clipping range must be a float > 0, got {clipping_range!r}")
    levels = 2 ** _int(fields, "quantization-bits") - 1
    weight = _weight(reply, fields)
    if weight * levels >= 2**64:
        raise RecordError(f"weight {weight} x {levels} quantisation levels overflows 2**64")
    outside = int(np.count_nonzero(np.abs(flat) > clipping_range))
    if outside:
        logger.warning(
            "SecAgg+: %d of %d update values lie outside the clipping range +-%g and were "
            "clipped; raise SecAggPlus(clipping_range=...)",
            outside,
            flat.size,
            clipping_range,
        )
    vector = np.empty(flat.size + 1, dtype=np.uint64)
    vector[:-1] = quantize(flat, clipping_range=clipping_range, levels=levels)
    vector[:-1] *= np.uint64(weight)
    vector[-1] = weight
    vector += expand_mask(_bytes(state, "b-seed"), vector.size)
    s_sk = load_private(_bytes(state, "s-sk"))
    neighbours = _list(state, "neighbours", int)
    s_pks = _list(state, "s-pks", bytes)
    for peer in _list(state, "sources", int):
        if peer == me:
            continue
        mask = expand_mask(agree(s_sk, s_pks[neighbours.index(peer)], info=MASK_INFO), vector.size)
        if me < peer:
            vector += mask
        else:
            vector -= mask
    return vector


def _unmask(fields: ConfigRecord, context: Context) -> ConfigRecord:
    """Stage 4: reveal survivors' seed shares and dropped nodes' key shares, never both."""
    server_round = _int(fields, "round")
    state = _state(context, server_round)
    if "sources" not in state or state.get("revealed"):
        raise RecordError(f"this node cannot reveal shares for round {server_round} (again)")
    survived, dropped = _list(fields, "survived", int), _list(fields, "dropped", int)
    sources = _list(state, "sources", int)
    if set(survived) & set(dropped):
        raise RecordError("the server named some nodes as both survived and dropped")
    if context.node_id not in survived or not set(survived) | set(dropped) <= set(sources):
        raise RecordError("the unmask request names nodes this node holds no shares of")
    if _int(fields, "num-survived") < _int(state, "threshold"):
        raise RecordError("fewer nodes survived than the threshold: refusing to unmask")
    seed_shares = _list(state, "seed-shares", bytes)
    key_shares = _list(state, "key-shares", bytes)
    out = ConfigRecord(
        {
            "seed-ids": survived,
            "seed-shares": [seed_shares[sources.index(v)] for v in survived],
            "key-ids": dropped,
            "key-shares": [key_shares[sources.index(v)] for v in dropped],
        }
    )
    context.state[STATE] = ConfigRecord({"round": server_round, "revealed": True})
    return out
