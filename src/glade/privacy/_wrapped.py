"""What the privacy wrappers (CentralDp, SecAggPlus) hand straight to the strategy they wrap.

Assigned as class attributes (``required_nodes = delegate_required_nodes``), so each wrapper
stays one level below :class:`~glade.strategies.Strategy` and the delegation is written once.
"""

from __future__ import annotations

from typing import Any

from glade.message import Message
from glade.records import ArrayRecord, ConfigRecord, MetricRecord
from glade.server.grid import Grid

__all__ = [
    "delegate_aggregate_evaluate",
    "delegate_configure_evaluate",
    "delegate_required_nodes",
]


def delegate_required_nodes(self: Any, stage: str) -> int:
    nodes: int = self.strategy.required_nodes(stage)
    return nodes


def delegate_configure_evaluate(
    self: Any, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
) -> list[Message]:
    messages: list[Message] = self.strategy.configure_evaluate(server_round, arrays, config, grid)
    return messages


def delegate_aggregate_evaluate(
    self: Any, server_round: int, replies: list[Message]
) -> MetricRecord | None:
    metrics: MetricRecord | None = self.strategy.aggregate_evaluate(server_round, replies)
    return metrics
