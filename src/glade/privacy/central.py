"""Central differential privacy: a strategy wrapper that clips updates and noises their mean.

:class:`CentralDp` wraps any FedAvg-style strategy. Each round it computes every node's
update (returned arrays minus the global arrays sent), clips it to an L2 norm ``C`` (on the
server, or on the node with :func:`~glade.privacy.dp_clipping_mod`), averages the clipped
updates with equal weights and adds Gaussian noise of std ``noise_multiplier * C / n``
(``n``: the nodes in the mean). The wrapped strategy then aggregates replies that all carry
that one noised model, so whatever it does with them (a weighted mean, a server optimizer,
a robust rule) is post-processing and keeps the guarantee. The train metrics of every
round carry the clipping norm and the privacy spent so far (``dp-epsilon`` at
``dp-delta``), computed by :class:`~glade.privacy.PrivacyAccountant`.

Only the model is protected: the train metrics that nodes report (loss, example counts)
are aggregated in the clear, as without DP.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from glade.errors import ConfigError, RecordError
from glade.keys import ARRAYS
from glade.message import Message, MessageType
from glade.privacy._messages import metric, with_arrays, with_config
from glade.privacy._wrapped import (
    delegate_aggregate_evaluate,
    delegate_configure_evaluate,
    delegate_required_nodes,
)
from glade.privacy.accountant import PrivacyAccountant
from glade.privacy.clipping import (
    CLIPPING_NORM,
    NORM_BIT,
    REPORT_NORM_BIT,
    AdaptiveClipping,
    ClippingPolicy,
    FixedClipping,
    add_gaussian_noise,
    apply_update,
    clip_update,
    mean_update,
    update_of,
)
from glade.privacy.secagg_server import SecAggPlus
from glade.records import ArrayRecord, ConfigRecord, MetricRecord
from glade.server.grid import Grid
from glade.strategies.base import Strategy

__all__ = ["DP_DELTA", "DP_EPSILON", "CentralDp"]

DP_EPSILON = "dp-epsilon"
"""Train metric: the epsilon spent up to and including this round."""
DP_DELTA = "dp-delta"
"""Train metric: the delta that :data:`DP_EPSILON` is computed for."""
_NODE_METRICS = (CLIPPING_NORM, NORM_BIT)


class CentralDp(Strategy):
    """Central DP around ``strategy``: clip each update, noise the mean, account the budget.

    ``clipping`` is a :class:`~glade.privacy.FixedClipping` or an
    :class:`~glade.privacy.AdaptiveClipping` policy (copied: the wrapper owns its state);
    a float means ``FixedClipping(value)``. ``clip_on="server"`` clips on the server (the
    nodes need nothing); ``"client"`` sends the norm to the nodes, whose ClientApp must use
    :func:`~glade.privacy.dp_clipping_mod` (the server then never needs unclipped updates,
    and the wrapper also works around :class:`~glade.privacy.SecAggPlus`, which hides them).
    ``delta`` is the target delta of the reported epsilon (``None``: no accounting, and no
    need for ``dp-accounting``). ``seed`` makes the noise reproducible: for tests only.

    >>> from glade.strategies import FedAvg
    >>> strategy = CentralDp(FedAvg(), noise_multiplier=1.0, clipping=0.5,
    ...                      delta=1e-5)  # doctest: +SKIP
    >>> result = strategy.start(grid, initial_arrays=arrays, num_rounds=10)  # doctest: +SKIP
    >>> result.history.metrics["train"][10]["dp-epsilon"]  # doctest: +SKIP
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        noise_multiplier: float,
        clipping: ClippingPolicy | float,
        clip_on: str = "server",
        delta: float | None = 1e-5,
        seed: int | None = None,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise TypeError(f"wrap a Strategy (e.g. FedAvg()), got {type(strategy).__name__}")
        if not (noise_multiplier >= 0 and math.isfinite(noise_multiplier)):
            raise ConfigError(f"noise_multiplier must be a number >= 0, got {noise_multiplier}")
        if clip_on not in ("server", "client"):
            raise ConfigError(f"clip_on must be 'server' or 'client', got {clip_on!r}")
        if isinstance(clipping, int | float) and not isinstance(clipping, bool):
            clipping = FixedClipping(float(clipping))
        if not isinstance(clipping, FixedClipping | AdaptiveClipping):
            raise TypeError("clipping must be a FixedClipping, an AdaptiveClipping or a float")
        if isinstance(strategy, SecAggPlus):
            if clip_on != "client":
                raise ConfigError(
                    "SecAggPlus hides the updates from the server: use clip_on='client'"
                )
            if strategy.weighted:
                raise ConfigError(
                    "central DP needs an unweighted mean: wrap SecAggPlus(..., weighted=False)"
                )
        self.strategy = strategy
        self.noise_multiplier = float(noise_multiplier)
        self.clipping: ClippingPolicy = copy.copy(clipping)
        self.clip_on = clip_on
        self.accountant = (
            None
            if delta is None
            else PrivacyAccountant(noise_multiplier=noise_multiplier, delta=delta)
        )
        self._rng = np.random.default_rng(seed)
        self._sent: ArrayRecord | None = None
        self._sampling_rate = 0.0
        self._round_norm = self.clipping.norm

    def __repr__(self) -> str:
        return (
            f"CentralDp({self.strategy!r}, noise_multiplier={self.noise_multiplier}, "
            f"clipping={self.clipping!r}, clip_on={self.clip_on!r})"
        )

    # -- train -----------------------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        messages = self.strategy.configure_train(server_round, arrays, config, grid)
        self._sent = arrays
        self._round_norm = self.clipping.norm
        available = len(grid.get_node_ids())
        # Nodes that drop out of SecAgg+'s key stages were sampled all the same.
        sampled = (
            self.strategy.num_sampled if isinstance(self.strategy, SecAggPlus) else len(messages)
        )
        self._sampling_rate = min(1.0, sampled / available) if available else 0.0
        if self.clip_on == "client":
            node_config: dict[str, Any] = {CLIPPING_NORM: self._round_norm}
            if self.clipping.reports_bits:
                node_config[REPORT_NORM_BIT] = True
            messages = [with_config(m, node_config) for m in messages]
        return messages

    def check_reply(
        self, server_round: int, reply: Message, *, stage: str, arrays: ArrayRecord
    ) -> str | None:
        problem = self.strategy.check_reply(server_round, reply, stage=stage, arrays=arrays)
        if problem is not None or stage != MessageType.TRAIN:
            return problem
        if self.clip_on == "server":
            if reply.content is None or not isinstance(reply.content.get(ARRAYS), ArrayRecord):
                return "server-side clipping needs the node's arrays (use clip_on='client')"
            return None
        clipped_to = metric(reply, CLIPPING_NORM)
        if clipped_to is None or not math.isclose(clipped_to, self._round_norm, rel_tol=1e-9):
            return (
                f"the node did not clip its update to {self._round_norm:g} (its metric "
                f"{CLIPPING_NORM!r} is {clipped_to}); add glade.privacy.dp_clipping_mod to "
                "its ClientApp"
            )
        if self.clipping.reports_bits and metric(reply, NORM_BIT) not in (0.0, 1.0):
            return f"the reply has no 0/1 metric {NORM_BIT!r} for adaptive clipping"
        return None

    def aggregate_train(
        self, server_round: int, replies: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if not replies:
            return self.strategy.aggregate_train(server_round, [])
        if self._sent is None:
            raise RecordError("aggregate_train called before configure_train")
        norm = self._round_norm
        z_update = self.clipping.update_noise_multiplier(self.noise_multiplier, len(replies))
        std = z_update * norm / len(replies)
        if all(_has_arrays(r) for r in replies):
            arrays, metrics, unclipped = self._release(server_round, replies, norm, std)
        else:  # e.g. SecAgg+ inside: the nodes clipped, only the sum is visible
            arrays, metrics = self.strategy.aggregate_train(
                server_round, [with_arrays(r, None, drop_metrics=_NODE_METRICS) for r in replies]
            )
            if arrays is not None:
                noise = add_gaussian_noise(update_of(arrays, self._sent), std, self._rng)
                arrays = apply_update(self._sent, noise)
            unclipped = self._bits(replies)
        self.clipping.update(unclipped=unclipped, count=len(replies), rng=self._rng)
        out = MetricRecord(metrics or {})
        out[CLIPPING_NORM] = norm
        if self.accountant is not None:
            self.accountant.step(sampling_rate=self._sampling_rate)
            out[DP_EPSILON] = self.accountant.epsilon
            out[DP_DELTA] = self.accountant.delta
        return arrays, out

    def _release(
        self, server_round: int, replies: list[Message], norm: float, std: float
    ) -> tuple[ArrayRecord | None, MetricRecord | None, int]:
        """Clip (again, on client-side clipping: a no-op for honest nodes), average, noise."""
        assert self._sent is not None
        updates, unclipped = [], 0
        for reply in replies:
            assert reply.content is not None
            record = reply.content[ARRAYS]
            assert isinstance(record, ArrayRecord)
            clipped, node_norm = clip_update(update_of(record, self._sent), norm)
            updates.append(clipped)
            unclipped += node_norm <= norm
        if self.clip_on == "client":
            unclipped = self._bits(replies)
        noised = apply_update(self._sent, add_gaussian_noise(mean_update(updates), std, self._rng))
        stripped = [with_arrays(r, noised, drop_metrics=_NODE_METRICS) for r in replies]
        arrays, metrics = self.strategy.aggregate_train(server_round, stripped)
        return arrays, metrics, unclipped

    @staticmethod
    def _bits(replies: list[Message]) -> int:
        return sum(int(metric(r, NORM_BIT) or 0) for r in replies)

    # -- delegated to the wrapped strategy ---------------------------------------------------
    required_nodes = delegate_required_nodes
    configure_evaluate = delegate_configure_evaluate
    aggregate_evaluate = delegate_aggregate_evaluate


def _has_arrays(reply: Message) -> bool:
    return reply.content is not None and isinstance(reply.content.get(ARRAYS), ArrayRecord)
