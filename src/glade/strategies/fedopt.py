"""FedAdagrad, FedAdam, FedYogi: adaptive server optimizers (Reddi et al., 2021).

Each is :class:`~glade.strategies.FedAvg` with a server optimizer from
:mod:`glade.strategies.optimizers` applied to the round's pseudo-gradient (weighted mean
of the replies minus the global arrays). ``eta`` is the server learning rate, ``tau``
the adaptivity (a floor on the denominator), ``beta_1`` / ``beta_2`` the moment decays.
``eta_l``, when given, is sent to every train instruction as config ``"client-lr"``
(the client learning rate the paper tunes together with ``eta``).
"""

from __future__ import annotations

from typing import Any

from glade import keys
from glade.message import Message
from glade.records import ArrayRecord, ConfigRecord
from glade.server.grid import Grid
from glade.strategies.fedavg import FedAvg
from glade.strategies.optimizers import Adagrad, Adam, Yogi
from glade.strategies.options import check_float

__all__ = ["CLIENT_LR_KEY", "FedAdagrad", "FedAdam", "FedYogi"]

CLIENT_LR_KEY = keys.CLIENT_LR
"""Train config key that carries the client learning rate (``eta_l``, q-FedAvg's) to nodes."""


def _client_lr(eta_l: float | None) -> float | None:
    return None if eta_l is None else check_float("eta_l", eta_l, low=0.0, low_open=True)


def _with_client_lr(config: ConfigRecord, eta_l: float | None) -> ConfigRecord:
    if eta_l is not None:
        config = config.copy()
        config[CLIENT_LR_KEY] = eta_l
    return config


def _configure_train_with_client_lr(
    self: Any, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
) -> list[Message]:
    """FedAvg's train instructions, plus ``client-lr`` (eta_l) when it is set."""
    messages: list[Message] = FedAvg.configure_train(
        self, server_round, arrays, _with_client_lr(config, self.eta_l), grid
    )
    return messages


class FedAdagrad(FedAvg):
    """FedAvg + server Adagrad: ``v <- v + delta**2``, ``x <- x + eta * m / (sqrt(v) + tau)``.

    Suits sparse or rarely-updated parameters; the step shrinks as ``v`` grows.
    Defaults: ``eta=0.1, beta_1=0.0, tau=1e-3``. Other options as :class:`FedAvg`.

    >>> FedAdagrad(eta=0.5, min_available_nodes=1).server_optimizer
    Adagrad(eta=0.5, beta_1=0.0, beta_2=0.0, tau=0.001)
    """

    def __init__(
        self,
        *,
        eta: float = 0.1,
        eta_l: float | None = None,
        beta_1: float = 0.0,
        tau: float = 1e-3,
        **fedavg_options: Any,
    ) -> None:
        self.eta_l = _client_lr(eta_l)
        optimizer = Adagrad(eta=eta, beta_1=beta_1, tau=tau)
        super().__init__(server_optimizer=optimizer, **fedavg_options)

    configure_train = _configure_train_with_client_lr


class FedAdam(FedAvg):
    """FedAvg + server Adam (no bias correction).

    ``m <- beta_1 m + (1 - beta_1) delta``, ``v <- beta_2 v + (1 - beta_2) delta**2``,
    ``x <- x + eta * m / (sqrt(v) + tau)``. A robust default for heterogeneous data.
    Defaults: ``eta=0.01, beta_1=0.9, beta_2=0.99, tau=1e-3``. Other options as
    :class:`FedAvg`.

    >>> FedAdam(eta=0.05, min_available_nodes=1).server_optimizer.eta
    0.05
    """

    def __init__(
        self,
        *,
        eta: float = 0.01,
        eta_l: float | None = None,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        **fedavg_options: Any,
    ) -> None:
        self.eta_l = _client_lr(eta_l)
        optimizer = Adam(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
        super().__init__(server_optimizer=optimizer, **fedavg_options)

    configure_train = _configure_train_with_client_lr


class FedYogi(FedAvg):
    """FedAvg + server Yogi: like FedAdam, but ``v`` grows or shrinks additively,
    ``v <- v - (1 - beta_2) delta**2 sign(v - delta**2)``, which keeps the effective
    step from exploding when gradients get small. Defaults as :class:`FedAdam`.

    >>> FedYogi(tau=0.01, eta_l=0.05, min_available_nodes=1).eta_l
    0.05
    """

    def __init__(
        self,
        *,
        eta: float = 0.01,
        eta_l: float | None = None,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        **fedavg_options: Any,
    ) -> None:
        self.eta_l = _client_lr(eta_l)
        optimizer = Yogi(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
        super().__init__(server_optimizer=optimizer, **fedavg_options)

    configure_train = _configure_train_with_client_lr
