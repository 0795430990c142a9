"""`FedMedian`: the coordinate-wise median of the replies (Yin et al., 2018)."""

from __future__ import annotations

from glade.records import ArrayRecord
from glade.strategies.fedavg import FedAvg
from glade.strategies.replies import arrays_of
from glade.strategies.robust import coordinate_median

__all__ = ["FedMedian"]


class FedMedian(FedAvg):
    """Each global array element becomes the median of that element over the replies.

    Robust to a minority of arbitrary (Byzantine) replies: with ``f < n / 2`` bad
    replies, every coordinate stays within the range of the honest values. Unweighted
    (a bad node could lie about its example count). For an even number of replies the
    two middle values are averaged. Computed in float32 for float32 and narrower floats,
    float64 for float64 and integers (rounded back). Other options as :class:`FedAvg`.

    >>> FedMedian(min_available_nodes=3).min_available_nodes
    3
    """

    def aggregate_arrays(
        self, server_round: int, weighted: list[tuple[ArrayRecord, float]]
    ) -> ArrayRecord:
        names, replies = arrays_of(weighted)
        return ArrayRecord(dict(zip(names, coordinate_median(replies), strict=True)))
