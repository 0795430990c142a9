"""`Strategy`: the policy of a federated run (which nodes, what to send, how to aggregate)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from glade.message import Message
from glade.records import ArrayRecord, ConfigRecord, MetricRecord
from glade.server.grid import Grid
from glade.server.loop import EvaluateFn, RoundLoop
from glade.strategies.replies import error_problem
from glade.strategies.result import Result

__all__ = ["Strategy"]


class Strategy(ABC):
    """Maps round state to instructions and replies to aggregates; does no I/O.

    Subclasses implement the four ``configure_*`` / ``aggregate_*`` methods (or subclass
    :class:`~glade.strategies.FedAvg` and override one hook). :meth:`start` hands the
    strategy to the round loop (:class:`glade.server.loop.RoundLoop`), which waits for
    nodes, sends, drops the replies :meth:`check_reply` rejects, and calls ``aggregate_*``
    with the valid replies only, sorted by source node id.

    Strategies never block, print or mutate the records they are given.

    >>> import numpy as np
    >>> from glade import ArrayRecord
    >>> from glade.strategies import FedAvg
    >>> strategy = FedAvg(min_train_nodes=1, min_evaluate_nodes=1, min_available_nodes=1)
    >>> result = strategy.start(grid, initial_arrays=ArrayRecord([np.zeros(3)]),
    ...                         num_rounds=3)  # doctest: +SKIP
    """

    @abstractmethod
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """The train instructions of ``server_round`` (may read ``grid.get_node_ids()``)."""

    @abstractmethod
    def aggregate_train(
        self, server_round: int, replies: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """New global arrays and train metrics from the valid replies (``None``: keep)."""

    @abstractmethod
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """The evaluate instructions of ``server_round`` (empty: no federated evaluation)."""

    @abstractmethod
    def aggregate_evaluate(self, server_round: int, replies: list[Message]) -> MetricRecord | None:
        """Aggregated evaluation metrics from the valid replies."""

    def check_reply(
        self, server_round: int, reply: Message, *, stage: str, arrays: ArrayRecord
    ) -> str | None:
        """Why ``reply`` must be left out of the aggregate, or ``None`` to keep it.

        ``stage`` is ``"train"`` or ``"evaluate"``; ``arrays`` are the global arrays that
        were sent. The default rejects error replies; override (calling ``super()``) to add
        checks. Rejected replies are logged and counted as failures by the round loop.
        """
        return error_problem(reply)

    def required_nodes(self, stage: str) -> int:
        """How many connected nodes the loop waits for before configuring ``stage``."""
        return 1

    def start(
        self,
        grid: Grid,
        *,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float | None = None,
        train_config: ConfigRecord | Mapping[str, Any] | None = None,
        evaluate_config: ConfigRecord | Mapping[str, Any] | None = None,
        evaluate_fn: EvaluateFn | None = None,
        node_wait_timeout: float = 60.0,
    ) -> Result:
        """Run ``num_rounds`` rounds of this strategy on ``grid``.

        ``timeout`` bounds each send-and-receive in seconds (``None``: wait for every
        reply); ``node_wait_timeout`` bounds each wait for enough connected nodes
        (:class:`~glade.errors.NotEnoughNodesError` after it). ``train_config`` /
        ``evaluate_config`` are merged into every instruction's ``"config"``.
        ``evaluate_fn(server_round, arrays)`` evaluates on the server for round 0 (the
        initial arrays) and after every round.
        """
        started = time.monotonic()
        loop = RoundLoop(
            self,
            grid,
            timeout=timeout,
            train_config=train_config,
            evaluate_config=evaluate_config,
            evaluate_fn=evaluate_fn,
            node_wait_timeout=node_wait_timeout,
        )
        arrays = loop.run(initial_arrays, num_rounds=num_rounds)
        return Result(
            arrays=arrays,
            history=loop.history,
            num_rounds=num_rounds,
            elapsed_s=time.monotonic() - started,
        )
