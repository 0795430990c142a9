"""`FedProx` (Li et al., 2020) and the proximal term for NumPy and PyTorch training loops.

The server side is FedAvg that sends ``proximal-mu`` with every train instruction. The
client side adds ``mu / 2 * |w - w_global|^2`` to its local loss, which keeps local
models near the global one when node data differ (less client drift):

NumPy loop (add the term's gradient to yours)::

    mu = float(msg.content["config"][PROXIMAL_MU_KEY])
    grads = [g + d for g, d in zip(grads, proximal_gradient(weights, global_weights, mu=mu))]

PyTorch loop (add the term to the loss; it is differentiable)::

    loss = criterion(model(x), y) + torch_proximal_term(model, global_params, mu=mu)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from glade import keys
from glade.message import Message
from glade.records import ArrayRecord, ConfigRecord
from glade.server.grid import Grid
from glade.strategies.fedavg import FedAvg
from glade.strategies.options import check_float

__all__ = [
    "PROXIMAL_MU_KEY",
    "FedProx",
    "proximal_gradient",
    "proximal_term",
    "torch_proximal_term",
]

PROXIMAL_MU_KEY = keys.PROXIMAL_MU
"""Train config key that carries ``mu`` to the nodes."""

NDArray = np.ndarray[Any, Any]


class FedProx(FedAvg):
    """FedAvg that asks nodes to add a proximal term ``mu / 2 |w - w_global|^2`` locally.

    ``proximal_mu >= 0`` (0 is FedAvg) is sent to every train instruction as config
    ``"proximal-mu"``; the node applies it with :func:`proximal_gradient` (NumPy) or
    :func:`torch_proximal_term` (PyTorch). Use it when node data are heterogeneous and
    many local steps let local models drift apart; typical ``mu``: 0.001 to 1.
    Aggregation is FedAvg's. Other options as :class:`FedAvg`.

    >>> FedProx(proximal_mu=0.1, min_available_nodes=1).proximal_mu
    0.1
    """

    def __init__(self, *, proximal_mu: float, **fedavg_options: Any) -> None:
        self.proximal_mu = check_float("proximal_mu", proximal_mu, low=0.0)
        super().__init__(**fedavg_options)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        config = config.copy()
        config[PROXIMAL_MU_KEY] = self.proximal_mu
        return super().configure_train(server_round, arrays, config, grid)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", proximal_mu={self.proximal_mu})"


def _pairs(local: Iterable[Any], global_: Iterable[Any]) -> list[tuple[NDArray, NDArray]]:
    xs, gs = list(local), list(global_)
    if len(xs) != len(gs):
        raise ValueError(f"{len(xs)} local arrays but {len(gs)} global arrays")
    return [(np.asarray(x), np.asarray(g)) for x, g in zip(xs, gs, strict=True)]


def proximal_term(local: Sequence[Any], global_: Sequence[Any], *, mu: float) -> float:
    """``mu / 2 * sum |local_i - global_i|^2`` over the arrays (float64).

    >>> proximal_term([np.array([1.0, 2.0])], [np.array([0.0, 0.0])], mu=0.5)
    1.25
    """
    total = math.fsum(
        float(np.sum(np.square(x.astype(np.float64) - g.astype(np.float64))))
        for x, g in _pairs(local, global_)
    )
    return mu / 2 * total


def proximal_gradient(local: Sequence[Any], global_: Sequence[Any], *, mu: float) -> list[NDArray]:
    """The gradient of :func:`proximal_term` w.r.t. ``local``: ``mu * (local - global)``.

    >>> proximal_gradient([np.array([1.0, 2.0])], [np.array([0.0, 1.0])], mu=0.5)
    [array([0.5, 0.5])]
    """
    return [mu * (x - g.astype(x.dtype)) for x, g in _pairs(local, global_)]


def torch_proximal_term(model_or_params: Any, global_params: Iterable[Any], *, mu: float) -> Any:
    """``mu / 2 * sum |p - g|^2`` as a differentiable ``torch`` scalar.

    ``model_or_params`` is a ``torch.nn.Module`` (its ``parameters()``) or an iterable of
    tensors; ``global_params`` the global tensors (or arrays) in the same order, e.g.
    ``[t.clone() for t in model.parameters()]`` taken before local training. Only the
    local parameters get gradients. Imports torch lazily.
    """
    import torch

    params = list(
        model_or_params.parameters()
        if isinstance(model_or_params, torch.nn.Module)
        else model_or_params
    )
    anchors = list(global_params)
    if len(params) != len(anchors):
        raise ValueError(f"{len(params)} local tensors but {len(anchors)} global tensors")
    total = torch.zeros((), dtype=torch.float32)
    for p, g in zip(params, anchors, strict=True):
        g = torch.as_tensor(g, dtype=p.dtype, device=p.device).detach()
        total = total.to(p.device) + torch.sum((p - g) ** 2)
    return total * (mu / 2)
