"""`FedAvgM`: federated averaging with server momentum (Hsu et al., 2019)."""

from __future__ import annotations

from typing import Any

from glade.strategies.fedavg import FedAvg
from glade.strategies.optimizers import Momentum

__all__ = ["FedAvgM"]


class FedAvgM(FedAvg):
    """FedAvg whose server keeps a momentum buffer of the round updates.

    Each round, with ``delta`` the weighted mean of the replies minus the global arrays:
    ``v <- server_momentum * v + delta`` and ``x <- x + server_learning_rate * v``.
    ``server_momentum=0`` and ``server_learning_rate=1`` is FedAvg. Momentum helps when
    nodes hold skewed data and the rounds' means zig-zag. State (``v``) is kept in the
    accumulator dtype (float32 for float32 and narrower floats, float64 for float64)
    and saved by checkpoints. Other options as :class:`FedAvg`.

    >>> FedAvgM(server_momentum=0.9, min_available_nodes=1).server_optimizer
    Momentum(lr=1.0, momentum=0.9)
    """

    def __init__(
        self,
        *,
        server_learning_rate: float = 1.0,
        server_momentum: float = 0.9,
        **fedavg_options: Any,
    ) -> None:
        optimizer = Momentum(lr=server_learning_rate, momentum=server_momentum)
        super().__init__(server_optimizer=optimizer, **fedavg_options)
