"""`Krum` and Multi-Krum (Blanchard et al., 2017): keep the replies closest to the others."""

from __future__ import annotations

import logging
from typing import Any

from glade.errors import ConfigError
from glade.records import ArrayRecord
from glade.strategies.aggregate import weighted_average
from glade.strategies.fedavg import FedAvg
from glade.strategies.options import check_int
from glade.strategies.replies import arrays_of
from glade.strategies.robust import krum_select, pairwise_sq_distances

__all__ = ["Krum", "min_nodes_option"]

logger = logging.getLogger(__name__)


def min_nodes_option(name: str, needed: int, options: dict[str, Any]) -> None:
    """Default ``min_train_nodes`` to ``needed``; a smaller explicit value is an error."""
    given = options.setdefault("min_train_nodes", needed)
    if isinstance(given, int) and not isinstance(given, bool) and given < needed:
        raise ConfigError(
            f"{name} needs min_train_nodes >= {needed} for its guarantee, got {given}"
        )


class Krum(FedAvg):
    """Score each reply by its squared distances to its ``n - f - 2`` nearest other
    replies; the new global arrays are the unweighted mean of the ``num_selected`` (m)
    best-scored replies (``num_selected=1``: Krum, the best reply itself; ``m > 1``:
    Multi-Krum).

    ``num_byzantine`` (f) is the number of malicious nodes to tolerate; Krum needs
    ``n >= 2f + 3`` replies (and ``n >= f + m``): ``min_train_nodes`` defaults to that,
    and a round with fewer valid replies keeps the previous arrays (with a warning).
    Equal scores go to the lower node id. Distances are computed in float64 with a Gram
    matrix: O(n^2 d) time. The mean is computed as in FedAvg. Other options as
    :class:`FedAvg`.

    >>> Krum(num_byzantine=1, num_selected=3).min_train_nodes
    5
    """

    def __init__(self, *, num_byzantine: int, num_selected: int = 1, **fedavg_options: Any) -> None:
        self.num_byzantine = check_int("num_byzantine", num_byzantine, low=0)
        self.num_selected = check_int("num_selected", num_selected, low=1)
        min_nodes_option("Krum", self.needed(), fedavg_options)
        super().__init__(**fedavg_options)

    def needed(self) -> int:
        """The fewest replies a round needs: ``max(2f + 3, f + m)``."""
        return max(2 * self.num_byzantine + 3, self.num_byzantine + self.num_selected)

    def aggregate_arrays(
        self, server_round: int, weighted: list[tuple[ArrayRecord, float]]
    ) -> ArrayRecord | None:
        if len(weighted) < self.needed():
            logger.warning(
                "round %d: Krum(f=%d, m=%d) needs %d valid replies, got %d; "
                "keeping the previous arrays",
                server_round,
                self.num_byzantine,
                self.num_selected,
                self.needed(),
                len(weighted),
            )
            return None
        names, replies = arrays_of(weighted)
        chosen = krum_select(
            pairwise_sq_distances(replies),
            num_byzantine=self.num_byzantine,
            num_selected=self.num_selected,
        )
        means = weighted_average((replies[i], 1.0) for i in chosen)
        return ArrayRecord(dict(zip(names, means, strict=True)))

    def __repr__(self) -> str:
        return (
            super().__repr__()[:-1]
            + f", num_byzantine={self.num_byzantine}, num_selected={self.num_selected})"
        )
