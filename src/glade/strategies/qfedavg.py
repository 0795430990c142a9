"""`QFedAvg`: q-fair federated averaging (Li et al., 2020, "Fair Resource Allocation")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from glade.errors import ConfigError
from glade.keys import ARRAYS, METRICS
from glade.message import Message, MessageType
from glade.records import ArrayRecord, ConfigRecord, MetricRecord
from glade.server.grid import Grid
from glade.strategies.aggregate import cast_back, is_integer_dtype, weighted_average
from glade.strategies.fedavg import FedAvg
from glade.strategies.fedopt import CLIENT_LR_KEY
from glade.strategies.options import check_float
from glade.strategies.replies import reply_record, src_node

__all__ = ["QFedAvg"]

NDArray = np.ndarray[Any, Any]
_TINY_LOSS = 1e-10  # a loss of 0 would make q * F^(q-1) infinite for q < 1


class QFedAvg(FedAvg):
    """Weights nodes by their loss to the power ``q``, so nodes that do badly count more.

    Each train reply must report, as metric ``loss_key`` (default ``"train-loss"``), its
    loss ``F_k`` on the global arrays it received (before local training). With
    ``L = 1 / client_learning_rate`` and ``dw_k = L (x - x_k)``, the update is::

        x <- x - sum_k F_k^q dw_k / sum_k (q F_k^(q-1) |dw_k|^2 + L F_k^q)

    ``q = 0`` is the unweighted mean of the replies; larger ``q`` trades average accuracy
    for a more uniform accuracy over nodes (typical q: 0.1 to 5). ``|dw_k|^2`` sums over
    all float arrays; the update is computed in the accumulator dtype (float32 for float32
    and narrower, float64 for float64). Integer arrays take the ``F_k^q``-weighted mean,
    rounded. ``client_learning_rate`` is sent to the nodes as config ``"client-lr"``.
    Other options as :class:`FedAvg`.

    >>> QFedAvg(q=1.0, client_learning_rate=0.1, min_available_nodes=1).q
    1.0
    """

    def __init__(
        self,
        *,
        q: float = 0.2,
        client_learning_rate: float = 0.1,
        loss_key: str = "train-loss",
        **fedavg_options: Any,
    ) -> None:
        self.q = check_float("q", q, low=0.0)
        self.client_learning_rate = check_float(
            "client_learning_rate", client_learning_rate, low=0.0, low_open=True
        )
        if not isinstance(loss_key, str) or not loss_key:
            raise ConfigError(f"loss_key must be a metric name, got {loss_key!r}")
        self.loss_key = loss_key
        super().__init__(**fedavg_options)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        config = config.copy()
        config[CLIENT_LR_KEY] = self.client_learning_rate
        return super().configure_train(server_round, arrays, config, grid)

    def check_reply(
        self, server_round: int, reply: Message, *, stage: str, arrays: ArrayRecord
    ) -> str | None:
        """FedAvg's checks, plus: a train reply reports a finite loss ``>= 0``."""
        problem = super().check_reply(server_round, reply, stage=stage, arrays=arrays)
        if problem is not None or stage != MessageType.TRAIN:
            return problem
        loss = reply_record(reply, METRICS, MetricRecord).get(self.loss_key)
        if not isinstance(loss, int | float) or not (math.isfinite(loss) and loss >= 0):
            return f"q-FedAvg needs a finite train metric {self.loss_key!r} >= 0, got {loss!r}"
        return None

    def aggregate_train(
        self, server_round: int, replies: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if not replies:
            return None, None
        if self.current_arrays is None:
            raise RuntimeError("aggregate_train before configure_train: no arrays were sent")
        ordered = sorted(replies, key=src_node)
        metrics = [reply_record(r, METRICS, MetricRecord) for r in ordered]
        records = [reply_record(r, ARRAYS, ArrayRecord) for r in ordered]
        losses = [max(float(m[self.loss_key]), _TINY_LOSS) for m in metrics]  # type: ignore[arg-type]
        arrays = self.q_update(self.current_arrays, records, losses)
        return arrays, self.train_metrics_aggr_fn(metrics)

    def q_update(
        self, current: ArrayRecord, replies: list[ArrayRecord], losses: list[float]
    ) -> ArrayRecord:
        """The q-FedAvg step from the sent arrays, the returned ones and the losses.

        ``sum_k F^q (x - x_k) = C (x - mean)`` with ``C = sum_k F^q`` and ``mean`` the
        ``F^q``-weighted mean of the ``x_k``: one streaming mean instead of n deltas.
        """
        lipschitz = 1.0 / self.client_learning_rate
        names = list(current)
        float_names = [n for n in names if not is_integer_dtype(current[n].numpy().dtype)]
        weights = [loss**self.q for loss in losses]
        h_total = 0.0
        for record, loss, weight in zip(replies, losses, weights, strict=True):
            norm_sq = math.fsum(
                _sq_distance(current[n].numpy(), record[n].numpy()) for n in float_names
            )
            h_total += self.q * loss ** (self.q - 1) * lipschitz**2 * norm_sq + lipschitz * weight
        means = weighted_average(
            (([r[n].numpy() for n in names], w) for r, w in zip(replies, weights, strict=True)),
            keep_accumulator=True,
        )
        scale = lipschitz * math.fsum(weights) / h_total
        out: dict[str, NDArray] = {}
        for name, mean in zip(names, means, strict=True):
            dtype = current[name].numpy().dtype
            if name in float_names:
                x = current[name].numpy().astype(mean.dtype)
                # x - scale * (x - mean) = x + scale * (mean - x)
                np.subtract(mean, x, out=mean)
                mean *= mean.dtype.type(scale)
                mean += x
            out[name] = cast_back(mean, dtype)
        return ArrayRecord(out)

    def __repr__(self) -> str:
        return (
            super().__repr__()[:-1]
            + f", q={self.q}, client_learning_rate={self.client_learning_rate}, "
            + f"loss_key={self.loss_key!r})"
        )


def _sq_distance(x: NDArray, y: NDArray) -> float:
    """``|x - y|^2``, the difference and the sum in float64."""
    diff = np.subtract(x, y, dtype=np.float64).ravel()
    return float(np.dot(diff, diff))
