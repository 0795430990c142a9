"""`Bulyan` (El Mhamdi et al., 2018): Krum selection, then a coordinate-wise trimmed mean."""

from __future__ import annotations

import logging
from typing import Any

from glade.records import ArrayRecord
from glade.strategies.fedavg import FedAvg
from glade.strategies.krum import min_nodes_option
from glade.strategies.options import check_int
from glade.strategies.replies import arrays_of
from glade.strategies.robust import bulyan

__all__ = ["Bulyan"]

logger = logging.getLogger(__name__)


class Bulyan(FedAvg):
    """Pick ``theta = n - 2f`` replies one by one with Krum (each time among those not yet
    picked), then per element average the ``theta - 2f`` picked values nearest the
    median in rank (drop the ``f`` largest and ``f`` smallest).

    Stronger than Krum against attacks that hide in a few coordinates, at the price of
    ``n >= 4f + 3`` replies (``min_train_nodes`` defaults to that; a round with fewer
    valid replies keeps the previous arrays, with a warning). Unweighted; distances in
    float64, the trimmed mean in the dtypes of :class:`FedTrimmedAvg`. Other options as
    :class:`FedAvg`.

    >>> Bulyan(num_byzantine=1).min_train_nodes
    7
    """

    def __init__(self, *, num_byzantine: int, **fedavg_options: Any) -> None:
        self.num_byzantine = check_int("num_byzantine", num_byzantine, low=0)
        min_nodes_option("Bulyan", self.needed(), fedavg_options)
        super().__init__(**fedavg_options)

    def needed(self) -> int:
        """The fewest replies a round needs: ``4f + 3``."""
        return 4 * self.num_byzantine + 3

    def aggregate_arrays(
        self, server_round: int, weighted: list[tuple[ArrayRecord, float]]
    ) -> ArrayRecord | None:
        if len(weighted) < self.needed():
            logger.warning(
                "round %d: Bulyan(f=%d) needs %d valid replies, got %d; "
                "keeping the previous arrays",
                server_round,
                self.num_byzantine,
                self.needed(),
                len(weighted),
            )
            return None
        names, replies = arrays_of(weighted)
        means = bulyan(replies, num_byzantine=self.num_byzantine)
        return ArrayRecord(dict(zip(names, means, strict=True)))

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", num_byzantine={self.num_byzantine})"
