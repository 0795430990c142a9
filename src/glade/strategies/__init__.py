"""Strategies: the policy of a federated run, driven by the round loop.

- :class:`Strategy`: the base class (configure / check / aggregate hooks, ``start``).
- :class:`FedAvg`: federated averaging weighted by examples.
- :class:`Result`: what ``start`` returns (final arrays + metric history).

The pure aggregation math lives in :mod:`glade.strategies.aggregate`.
"""

from glade.strategies.base import Strategy
from glade.strategies.fedavg import FedAvg, MetricsAggregationFn
from glade.strategies.result import Result

__all__ = ["FedAvg", "MetricsAggregationFn", "Result", "Strategy"]
