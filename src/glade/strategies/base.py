"""`Strategy`: the policy of a federated run (which nodes, what to send, how to aggregate)."""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from glade.errors import ConfigError
from glade.message import Message
from glade.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from glade.server.grid import Grid
from glade.server.loop import EvaluateFn, RoundLoop
from glade.strategies.checkpoint import Checkpoints, CheckpointWriter, as_checkpoints, resume
from glade.strategies.replies import error_problem
from glade.strategies.result import Result

__all__ = ["Strategy", "without"]


def without(state: RecordDict, keys: Iterable[str]) -> RecordDict:
    """A copy of ``state`` less ``keys``: what a subclass passes on to ``super().load_state``."""
    drop = set(keys)
    return RecordDict({k: v for k, v in state.items() if k not in drop})


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

    def state(self) -> RecordDict:
        """What a checkpoint must hold to continue this strategy exactly (records of
        arrays, configs or metrics; e.g. an optimizer's moments). Default: nothing."""
        return RecordDict()

    def load_state(self, state: RecordDict) -> None:
        """Restore what :meth:`state` returned, before a resumed run's first round.

        The default accepts only an empty state: a strategy that keeps state overrides
        both methods.
        """
        if len(state):
            raise ConfigError(
                f"{type(self).__name__} keeps no state, but the checkpoint holds "
                f"{sorted(state)}; override state() and load_state() together"
            )

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
        checkpoints: Checkpoints | str | os.PathLike[str] | None = None,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> Result:
        """Run ``num_rounds`` rounds of this strategy on ``grid``.

        ``timeout`` bounds each send-and-receive in seconds (``None``: wait for every
        reply); ``node_wait_timeout`` bounds each wait for enough connected nodes
        (:class:`~glade.errors.NotEnoughNodesError` after it). ``train_config`` /
        ``evaluate_config`` are merged into every instruction's ``"config"``.
        ``evaluate_fn(server_round, arrays)`` evaluates on the server for round 0 (the
        initial arrays) and after every round.

        ``checkpoints`` (a :class:`~glade.strategies.Checkpoints` or a folder) saves the
        global arrays, history and strategy state after rounds; ``resume_from`` (a
        checkpoint or a checkpoint folder: its newest) continues a run after the saved
        round, with the same final arrays as an uninterrupted run (same seed, same nodes).
        See ``docs/checkpoints.md``.
        """
        started = time.monotonic()
        saved = (
            None
            if resume_from is None
            else resume(self, resume_from, initial_arrays=initial_arrays, num_rounds=num_rounds)
        )
        writer = (
            None
            if checkpoints is None
            else CheckpointWriter(self, as_checkpoints(checkpoints), num_rounds=num_rounds)
        )
        loop = RoundLoop(
            self,
            grid,
            timeout=timeout,
            train_config=train_config,
            evaluate_config=evaluate_config,
            evaluate_fn=evaluate_fn,
            node_wait_timeout=node_wait_timeout,
            on_round_end=writer,
            history=None if saved is None else saved.history,
        )
        if saved is None:
            arrays = loop.run(initial_arrays, num_rounds=num_rounds)
        else:
            arrays = loop.run(
                saved.arrays, num_rounds=num_rounds, first_round=saved.server_round + 1
            )
        return Result(
            arrays=arrays,
            history=loop.history,
            num_rounds=num_rounds,
            elapsed_s=time.monotonic() - started,
        )
