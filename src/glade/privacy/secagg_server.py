"""`SecAggPlus`: secure aggregation (SecAgg+) around a FedAvg-style strategy.

The server side of :mod:`glade.privacy.secagg_protocol`. Unlike other strategies, this
wrapper exchanges messages itself: ``configure_train`` runs the two key stages through the
grid it is given and ``aggregate_train`` runs the unmask stage (each bounded by
``timeout``), because secure aggregation *is* a protocol of several exchanges per round.
"""

from __future__ import annotations

import math
import random

import numpy as np

from glade.errors import ConfigError, RunError
from glade.keys import NUM_EXAMPLES
from glade.message import Message, MessageType
from glade.privacy._messages import metric, with_arrays
from glade.privacy._wrapped import (
    delegate_aggregate_evaluate,
    delegate_configure_evaluate,
    delegate_required_nodes,
)
from glade.privacy.clipping import apply_update
from glade.privacy.secagg_crypto import dequantize_mean
from glade.privacy.secagg_protocol import (
    MASKED,
    MASKED_VECTOR,
    SECAGG,
    SETUP,
    SHARE_KEYS,
    neighbour_graph,
)
from glade.privacy.secagg_round import SecAggRound, all_bytes
from glade.records import ArrayRecord, ConfigRecord, MetricRecord
from glade.server.grid import Grid
from glade.strategies.base import Strategy

__all__ = ["SecAggPlus"]


class SecAggPlus(Strategy):
    """Secure aggregation: the server learns the (weighted) sum of updates, no single one.

    Each sampled node shares its mask secrets with ``num_shares - 1`` neighbours (and
    itself); ``reconstruction_threshold`` of them (an int, or a fraction > 0.5 of the
    neighbourhood) suffice to remove its masks, so a round survives up to
    ``num_shares - threshold`` dropped nodes per neighbourhood and fails, with the reason,
    beyond that. Updates (returned minus sent arrays) are clipped to
    ``[-clipping_range, clipping_range]`` and quantised with ``quantization_bits`` bits
    (error at most ``clipping_range / (2**bits - 1)`` per value); each is weighted by the
    wrapped strategy's ``weighted_by_key`` metric (a whole number, e.g. ``num-examples``),
    or equally with ``weighted=False``. The wrapped strategy then aggregates replies that
    all carry the securely aggregated model (with their metrics, which are not hidden).
    Nodes need :func:`~glade.privacy.secaggplus_mod`.

    >>> from glade.strategies import FedAvg
    >>> strategy = SecAggPlus(FedAvg(), num_shares=7, reconstruction_threshold=4)
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        num_shares: int = 15,
        reconstruction_threshold: int | float = 0.6,
        clipping_range: float = 1.0,
        quantization_bits: int = 24,
        weighted: bool = True,
        timeout: float | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise TypeError(f"wrap a Strategy (e.g. FedAvg()), got {type(strategy).__name__}")
        if not isinstance(num_shares, int) or num_shares < 2:
            raise ConfigError(f"num_shares must be an integer >= 2, got {num_shares!r}")
        _check_threshold(reconstruction_threshold, num_shares)
        if not (clipping_range > 0 and math.isfinite(clipping_range)):
            raise ConfigError(f"clipping_range must be a number > 0, got {clipping_range}")
        if not isinstance(quantization_bits, int) or not 1 <= quantization_bits <= 48:
            raise ConfigError(f"quantization_bits must be in [1, 48], got {quantization_bits!r}")
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
        self.strategy = strategy
        self.num_shares = num_shares
        self.reconstruction_threshold = reconstruction_threshold
        self.clipping_range = float(clipping_range)
        self.quantization_bits = quantization_bits
        self.weighted = weighted
        self.timeout = timeout
        self.weight_key = str(getattr(strategy, "weighted_by_key", NUM_EXAMPLES))
        self._rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self._round: SecAggRound | None = None
        self.num_sampled = 0
        """How many nodes the wrapped strategy sampled in the latest round (before dropouts)."""

    def __repr__(self) -> str:
        return (
            f"SecAggPlus({self.strategy!r}, num_shares={self.num_shares}, "
            f"reconstruction_threshold={self.reconstruction_threshold}, "
            f"clipping_range={self.clipping_range}, quantization_bits={self.quantization_bits})"
        )

    @property
    def max_error(self) -> float:
        """The largest quantisation error of one aggregated value (inside the range)."""
        return self.clipping_range / float(2**self.quantization_bits - 1)

    # -- train: stages 1-3 -----------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        messages = self.strategy.configure_train(server_round, arrays, config, grid)
        self._round = None
        self.num_sampled = len(messages)
        if not messages:
            return []
        state = SecAggRound(number=server_round, grid=grid, sent=arrays, timeout=self.timeout)
        self._setup(state, [m.metadata.dst_node_id for m in messages])
        self._share_keys(state)
        self._round = state
        fields = {
            "round": server_round,
            "clipping-range": self.clipping_range,
            "quantization-bits": self.quantization_bits,
            "weighted": self.weighted,
            "weight-key": self.weight_key,
        }
        out = []
        for message in messages:
            node = message.metadata.dst_node_id
            if node not in state.shared or message.content is None:
                continue
            sources = state.alive_neighbours(node)
            blobs = [state.shared[src][node] for src in sources]
            content = message.content.copy()
            content[SECAGG] = ConfigRecord({**fields, "sources": sources, "ciphertexts": blobs})
            out.append(Message(content, metadata=message.metadata))
        return out

    def _setup(self, state: SecAggRound, nodes: list[int]) -> None:
        """Stage 1: collect fresh public keys; build the neighbour graph over who answered."""
        records = state.exchange(SETUP, {n: ConfigRecord({"round": state.number}) for n in nodes})
        for node, record in records.items():
            c_pk, s_pk = record.get("c-pk"), record.get("s-pk")
            if isinstance(c_pk, bytes) and isinstance(s_pk, bytes) and len(c_pk) == len(s_pk) == 32:
                state.c_pks[node], state.s_pks[node] = c_pk, s_pk
        if len(state.c_pks) < 2:
            raise RunError(
                f"round {state.number}: SecAgg+ needs at least 2 nodes, {len(state.c_pks)} of "
                f"{len(nodes)} answered the setup stage"
            )
        state.neighbours = neighbour_graph(sorted(state.c_pks), self.num_shares, self._rng)
        size = min(len(v) for v in state.neighbours.values())
        state.threshold = self._threshold(size, state)

    def _threshold(self, size: int, state: SecAggRound) -> int:
        wanted = self.reconstruction_threshold
        threshold = wanted if isinstance(wanted, int) else max(2, math.ceil(wanted * size))
        if threshold > size:
            raise RunError(
                f"round {state.number}: the SecAgg+ reconstruction threshold {threshold} "
                f"exceeds the {size} nodes of a neighbourhood ({len(state.c_pks)} nodes took "
                "part); sample more nodes or lower reconstruction_threshold"
            )
        return threshold

    def _share_keys(self, state: SecAggRound) -> None:
        """Stage 2: route public keys to neighbours; collect their encrypted shares."""
        fields = {
            node: ConfigRecord(
                {
                    "round": state.number,
                    "threshold": state.threshold,
                    "neighbours": nbrs,
                    "c-pks": [state.c_pks[v] for v in nbrs],
                    "s-pks": [state.s_pks[v] for v in nbrs],
                }
            )
            for node, nbrs in state.neighbours.items()
        }
        records = state.exchange(SHARE_KEYS, fields)
        answered = len(records)
        for node, record in records.items():
            blobs = record.get("ciphertexts")
            nbrs = state.neighbours[node]
            if record.get("dst") == nbrs and all_bytes(blobs, len(nbrs)):
                state.shared[node] = dict(zip(nbrs, blobs, strict=True))
        # A node with fewer than `threshold` share holders left could not be unmasked if it
        # dropped later: leave it out (which may leave its neighbours short in turn).
        short = True
        while short:
            short = False
            for node in list(state.shared):
                if len(state.alive_neighbours(node)) < state.threshold:
                    del state.shared[node]
                    short = True
        if len(state.shared) < state.threshold:
            raise RunError(
                f"round {state.number}: only {answered} of {len(fields)} nodes completed the "
                f"SecAgg+ key sharing ({len(state.shared)} with enough live neighbours), below "
                f"the reconstruction threshold {state.threshold}"
            )

    # -- train: checks and stage 4 ---------------------------------------------------------
    def check_reply(
        self, server_round: int, reply: Message, *, stage: str, arrays: ArrayRecord
    ) -> str | None:
        if stage != MessageType.TRAIN:
            return self.strategy.check_reply(server_round, reply, stage=stage, arrays=arrays)
        problem = super().check_reply(server_round, reply, stage=stage, arrays=arrays)
        if problem is not None or reply.content is None:
            return problem or "the reply has no content"
        state = self._round
        if state is None or reply.metadata.src_node_id not in state.shared:
            return "the node is not part of this SecAgg+ round"
        masked = reply.content.get(MASKED)
        vector = masked.get(MASKED_VECTOR) if isinstance(masked, ArrayRecord) else None
        size = sum(a.size for a in state.sent.values()) + 1
        if vector is None or vector.dtype != "uint64" or vector.shape != (size,):
            return f"the reply has no masked uint64[{size}] vector (is secaggplus_mod installed?)"
        if self.weighted and not _whole(metric(reply, self.weight_key)):
            return f"the reply has no whole-number metric {self.weight_key!r} > 0 to weigh by"
        return None

    def aggregate_train(
        self, server_round: int, replies: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        state, self._round = self._round, None
        if state is None:
            return self.strategy.aggregate_train(server_round, replies)
        survivors = sorted(r.metadata.src_node_id for r in replies)
        dropped = sorted(set(state.shared) - set(survivors))
        if len(survivors) < state.threshold:
            raise RunError(
                f"round {server_round}: only {len(survivors)} nodes sent masked input, SecAgg+ "
                f"needs at least the reconstruction threshold {state.threshold} "
                f"({len(dropped)} dropped out)"
            )
        total = np.zeros(sum(a.size for a in state.sent.values()) + 1, dtype=np.uint64)
        for reply in replies:
            assert reply.content is not None
            masked = reply.content[MASKED]
            assert isinstance(masked, ArrayRecord)
            total += masked[MASKED_VECTOR].numpy()
        state.remove_masks(total, survivors, dropped)
        expected = (
            sum(int(metric(r, self.weight_key) or 0) for r in replies)
            if self.weighted
            else len(replies)
        )
        total_weight = int(total[-1])
        if total_weight != expected:
            raise RunError(
                f"round {server_round}: SecAgg+ unmasking failed (summed weight {total_weight}, "
                f"expected {expected}): a node sent a corrupt masked input or share"
            )
        mean = dequantize_mean(
            total[:-1],
            total_weight=total_weight,
            clipping_range=self.clipping_range,
            levels=2**self.quantization_bits - 1,
        )
        offsets = np.cumsum([a.size for a in state.sent.values()])[:-1]
        parts = np.split(mean, offsets)
        update = [p.reshape(a.shape) for p, a in zip(parts, state.sent.values(), strict=True)]
        aggregated = apply_update(state.sent, update)
        stripped = [with_arrays(r, aggregated, drop_records=(MASKED,)) for r in replies]
        return self.strategy.aggregate_train(server_round, stripped)

    # -- delegated to the wrapped strategy ---------------------------------------------------
    required_nodes = delegate_required_nodes
    configure_evaluate = delegate_configure_evaluate
    aggregate_evaluate = delegate_aggregate_evaluate


def _whole(value: float | None) -> bool:
    return value is not None and value > 0 and float(value).is_integer()


def _check_threshold(threshold: int | float, num_shares: int) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigError(f"reconstruction_threshold must be an int or a float, got {threshold!r}")
    if isinstance(threshold, float):
        if not 0.5 < threshold <= 1:
            raise ConfigError(
                f"a fractional reconstruction_threshold must be in (0.5, 1], got {threshold}"
            )
    elif not (2 <= threshold <= num_shares and 2 * threshold > num_shares):
        raise ConfigError(
            f"reconstruction_threshold must be in ({num_shares / 2:g}, {num_shares}] and >= 2 "
            f"(more than half of num_shares={num_shares}), got {threshold}"
        )
