"""The server side of one SecAgg+ round: what it knows, its exchanges, and the unmasking.

Used by :class:`~glade.privacy.SecAggPlus`; see :mod:`glade.privacy.secagg_protocol` for
the protocol.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np

from glade.errors import RecordError, RunError
from glade.message import Message
from glade.privacy.secagg_crypto import agree, expand_mask, load_private
from glade.privacy.secagg_protocol import MASK_INFO, SECAGG, UNMASK
from glade.privacy.shamir import Share, combine_shares
from glade.records import ArrayRecord, ConfigRecord, RecordDict
from glade.server.grid import Grid
from glade.strategies.replies import error_problem

__all__ = ["SecAggRound", "all_bytes"]

logger = logging.getLogger(__name__)

NDArray = np.ndarray[Any, Any]


@dataclass(slots=True)
class SecAggRound:
    """What the server knows during one round: public keys, graph, who is still there."""

    number: int
    grid: Grid
    sent: ArrayRecord
    timeout: float | None = None
    threshold: int = 0
    c_pks: dict[int, bytes] = field(default_factory=dict)
    s_pks: dict[int, bytes] = field(default_factory=dict)
    neighbours: dict[int, list[int]] = field(default_factory=dict)
    shared: dict[int, dict[int, bytes]] = field(default_factory=dict)  # src -> dst -> blob

    def alive_neighbours(self, node: int) -> list[int]:
        """``node``'s neighbours (itself included) that completed the key sharing."""
        return [v for v in self.neighbours[node] if v in self.shared]

    def exchange(self, stage: str, fields: dict[int, ConfigRecord]) -> dict[int, ConfigRecord]:
        """Send one stage's records; return the ``"secagg"`` record of each good reply."""
        messages = [
            Message(
                RecordDict({SECAGG: record}),
                dst_node_id=node,
                message_type=stage,
                group_id=str(self.number),
            )
            for node, record in fields.items()
        ]
        replies = self.grid.send_and_receive(messages, timeout=self.timeout)
        out: dict[int, ConfigRecord] = {}
        for reply in replies:
            node = reply.metadata.src_node_id
            record = reply.content.get(SECAGG) if reply.content is not None else None
            if node in fields and isinstance(record, ConfigRecord):
                out[node] = record
            else:
                reason = error_problem(reply) or "no SecAgg+ record in the reply"
                logger.info(
                    "round %d %s: node %d dropped out: %s", self.number, stage, node, reason
                )
        missing = len(fields) - len(out)
        if missing:
            logger.warning(
                "round %d %s: %d of %d nodes dropped out", self.number, stage, missing, len(fields)
            )
        return out

    def remove_masks(self, total: NDArray, survivors: list[int], dropped: list[int]) -> None:
        """Stage 4: collect shares; subtract survivors' self masks and dangling pair masks."""
        seed_shares, key_shares = self._unmask(survivors, dropped)
        for node in survivors:
            seed = self._recover(node, seed_shares.get(node, []), "self-mask seed")
            total -= expand_mask(seed, total.size)
        for node in dropped:
            secret = load_private(self._recover(node, key_shares.get(node, []), "mask key"))
            for peer in survivors:
                if node not in self.alive_neighbours(peer):
                    continue
                mask = expand_mask(agree(secret, self.s_pks[peer], info=MASK_INFO), total.size)
                if peer < node:
                    total -= mask
                else:
                    total += mask

    def _unmask(
        self, survivors: list[int], dropped: list[int]
    ) -> tuple[dict[int, list[Share]], dict[int, list[Share]]]:
        """Ask each survivor for the shares it holds of survivors' seeds and dropped keys."""
        asked: dict[int, tuple[list[int], list[int]]] = {}
        for node in survivors:
            nbrs = set(self.alive_neighbours(node))
            asked[node] = ([v for v in survivors if v in nbrs], [v for v in dropped if v in nbrs])
        fields = {
            node: ConfigRecord(
                {
                    "round": self.number,
                    "survived": alive,
                    "dropped": gone,
                    "num-survived": len(survivors),
                }
            )
            for node, (alive, gone) in asked.items()
        }
        seeds: dict[int, list[Share]] = {}
        keys: dict[int, list[Share]] = {}
        for node, record in self.exchange(UNMASK, fields).items():
            try:
                got_seeds = _shares(record, "seed", asked[node][0])
                got_keys = _shares(record, "key", asked[node][1])
            except RecordError as exc:
                logger.warning(
                    "round %d: ignoring the shares of node %d: %s", self.number, node, exc
                )
                continue
            for target, share in got_seeds:
                seeds.setdefault(target, []).append(share)
            for target, share in got_keys:
                keys.setdefault(target, []).append(share)
        return seeds, keys

    def _recover(self, node: int, shares: list[Share], what: str) -> bytes:
        if len(shares) < self.threshold:
            size = len(self.neighbours[node])
            raise RunError(
                f"round {self.number}: SecAgg+ cannot remove the masks of node {node}: "
                f"{len(shares)} shares of its {what} came back, {self.threshold} are needed; "
                f"too many nodes dropped out (each neighbourhood of {size} tolerates "
                f"{size - self.threshold})"
            )
        return combine_shares(shares[: self.threshold], size=32)


def all_bytes(value: object, count: int) -> TypeGuard[list[bytes]]:
    """``value`` is a list of ``count`` bytes objects."""
    return (
        isinstance(value, list) and len(value) == count and all(isinstance(v, bytes) for v in value)
    )


def _shares(record: ConfigRecord, kind: str, expected: list[int]) -> list[tuple[int, Share]]:
    """``(node, share)`` pairs of a reply, which must name exactly the ``expected`` nodes."""
    blobs = record.get(f"{kind}-shares")
    if record.get(f"{kind}-ids") != expected or not all_bytes(blobs, len(expected)):
        raise RecordError(f"the {kind} shares do not match the request")
    return [(v, Share.from_bytes(b)) for v, b in zip(expected, blobs, strict=True)]
