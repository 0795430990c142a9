"""`FedTrimmedAvg`: the coordinate-wise trimmed mean of the replies (Yin et al., 2018)."""

from __future__ import annotations

import math
from typing import Any

from glade.records import ArrayRecord
from glade.strategies.fedavg import FedAvg
from glade.strategies.options import check_float
from glade.strategies.replies import arrays_of
from glade.strategies.robust import trimmed_mean

__all__ = ["FedTrimmedAvg"]


class FedTrimmedAvg(FedAvg):
    """Per element, drop the ``floor(beta * n)`` largest and smallest values, average the rest.

    ``beta`` in ``[0, 0.5)`` is the fraction trimmed from *each* end (0 is the unweighted
    mean); choose it above the fraction of nodes you expect to misbehave. Unweighted,
    like :class:`FedMedian`, and computed in the same dtypes. Other options as
    :class:`FedAvg`.

    >>> FedTrimmedAvg(beta=0.2, min_available_nodes=5).beta
    0.2
    """

    def __init__(self, *, beta: float = 0.2, **fedavg_options: Any) -> None:
        self.beta = check_float("beta", beta, low=0.0, high=0.5, high_open=True)
        super().__init__(**fedavg_options)

    def trim_count(self, num_replies: int) -> int:
        """How many values are dropped from each end for ``num_replies`` replies."""
        return math.floor(self.beta * num_replies)

    def aggregate_arrays(
        self, server_round: int, weighted: list[tuple[ArrayRecord, float]]
    ) -> ArrayRecord:
        names, replies = arrays_of(weighted)
        means = trimmed_mean(replies, trim=self.trim_count(len(replies)))
        return ArrayRecord(dict(zip(names, means, strict=True)))

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", beta={self.beta})"
