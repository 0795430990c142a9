"""Strategies: the policy of a federated run, driven by the round loop.

- :class:`Strategy`: the base class (configure / check / aggregate hooks, ``start``).
- Averaging: :class:`FedAvg`, :class:`FedAvgM` (server momentum), :class:`FedProx`
  (proximal term), :class:`FedAdagrad` / :class:`FedAdam` / :class:`FedYogi` (adaptive
  server optimizers), :class:`QFedAvg` (fairness).
- Robust: :class:`FedMedian`, :class:`FedTrimmedAvg`, :class:`Krum` (and Multi-Krum),
  :class:`Bulyan`.
- Trees: :class:`FedXgbBagging`, :class:`FedXgbCyclic` (XGBoost on the nodes).
- :class:`Result`: what ``start`` returns (final arrays + metric history, exportable to
  JSON / CSV / PNG); :class:`Checkpoints`: per-round checkpoints and resuming.

The pure math lives in :mod:`~glade.strategies.aggregate`, :mod:`~glade.strategies.robust`
and :mod:`~glade.strategies.optimizers`. See ``docs/strategies.md``.
"""

from glade.strategies.base import Strategy
from glade.strategies.bulyan import Bulyan
from glade.strategies.checkpoint import Checkpoint, Checkpoints, load_checkpoint
from glade.strategies.fedavg import FedAvg, MetricsAggregationFn
from glade.strategies.fedavgm import FedAvgM
from glade.strategies.fedmedian import FedMedian
from glade.strategies.fedopt import CLIENT_LR_KEY, FedAdagrad, FedAdam, FedYogi
from glade.strategies.fedprox import (
    PROXIMAL_MU_KEY,
    FedProx,
    proximal_gradient,
    proximal_term,
    torch_proximal_term,
)
from glade.strategies.fedtrimmedavg import FedTrimmedAvg
from glade.strategies.fedxgb import FedXgbBagging, FedXgbCyclic
from glade.strategies.krum import Krum
from glade.strategies.optimizers import ServerOptimizer
from glade.strategies.qfedavg import QFedAvg
from glade.strategies.result import Result

__all__ = [
    "CLIENT_LR_KEY",
    "PROXIMAL_MU_KEY",
    "Bulyan",
    "Checkpoint",
    "Checkpoints",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedXgbBagging",
    "FedXgbCyclic",
    "FedYogi",
    "Krum",
    "MetricsAggregationFn",
    "QFedAvg",
    "Result",
    "ServerOptimizer",
    "Strategy",
    "load_checkpoint",
    "proximal_gradient",
    "proximal_term",
    "torch_proximal_term",
]
