"""The round loop: configure -> send -> check -> aggregate -> evaluate, for N rounds.

Strategies are policy (which nodes, what instructions, how to aggregate); this module is the
mechanism that drives them through a :class:`~glade.server.Grid`: it waits for enough nodes,
sends instructions, leaves out missing and invalid replies (logging why), reports
:class:`~glade.server.RunEvent` s and builds the :class:`~glade.server.History`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeAlias

from glade.errors import ConfigError, NotEnoughNodesError
from glade.keys import SERVER_ROUND
from glade.message import Message, MessageType
from glade.records import ArrayRecord, ConfigRecord, MetricRecord
from glade.server.events import History, RunEvent
from glade.server.grid import Grid, collect_replies

__all__ = [
    "CENTRALIZED",
    "EvaluateFn",
    "RoundEndFn",
    "RoundLoop",
    "RoundPolicy",
    "wait_for_nodes",
]

logger = logging.getLogger(__name__)

CENTRALIZED = "centralized"
"""Stage name of the server-side ``evaluate_fn`` in events and the history."""

EvaluateFn: TypeAlias = Callable[[int, ArrayRecord], MetricRecord | Mapping[str, Any] | None]
RoundEndFn: TypeAlias = Callable[[int, ArrayRecord, History], None]
"""``on_round_end(server_round, arrays, history)``: called after each finished round
(e.g. to write a checkpoint); an exception it raises ends the run."""


class RoundPolicy(Protocol):
    """What the loop needs from a strategy (:class:`glade.strategies.Strategy` has it all)."""

    def required_nodes(self, stage: str) -> int: ...

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]: ...

    def aggregate_train(
        self, server_round: int, replies: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]: ...

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]: ...

    def aggregate_evaluate(
        self, server_round: int, replies: list[Message]
    ) -> MetricRecord | None: ...

    def check_reply(
        self, server_round: int, reply: Message, *, stage: str, arrays: ArrayRecord
    ) -> str | None: ...


def wait_for_nodes(grid: Grid, min_nodes: int, *, timeout: float) -> list[int]:
    """Poll ``grid.get_node_ids()`` until at least ``min_nodes`` are there (or raise).

    Raises :class:`~glade.errors.NotEnoughNodesError` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    logged = False
    while True:
        node_ids = grid.get_node_ids()
        if len(node_ids) >= min_nodes:
            return node_ids
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotEnoughNodesError(
                f"waited {timeout:g}s for at least {min_nodes} nodes, but only "
                f"{len(node_ids)} are connected; start more SuperNodes (or simulate more), "
                "or lower the strategy's min_available_nodes / min_train_nodes / "
                "min_evaluate_nodes"
            )
        if not logged:
            logger.info("waiting for %d nodes (%d connected)", min_nodes, len(node_ids))
            logged = True
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 1.0)


class _FetchedNodes:
    """``grid`` whose first :meth:`get_node_ids` returns ``node_ids``, fetched a moment ago
    (a strategy's configure step reads the node list the loop's wait has just fetched:
    over a SuperLink, that is one round trip less per stage). Everything else is ``grid``'s.
    """

    def __init__(self, grid: Grid, node_ids: list[int]) -> None:
        self._grid = grid
        self._node_ids: list[int] | None = list(node_ids)

    @property
    def run_id(self) -> int:
        return self._grid.run_id

    def get_node_ids(self) -> list[int]:
        node_ids, self._node_ids = self._node_ids, None
        return node_ids if node_ids is not None else self._grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str], *, timeout: float = 0.0) -> list[Message]:
        return self._grid.pull_messages(message_ids, timeout=timeout)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        return self._grid.send_and_receive(messages, timeout=timeout)

    def report(self, event: RunEvent) -> None:
        self._grid.report(event)

    def __getattr__(self, name: str) -> Any:  # what a Grid has beyond the protocol
        return getattr(self._grid, name)


def _config(value: ConfigRecord | Mapping[str, Any] | None, name: str) -> ConfigRecord:
    if value is None:
        return ConfigRecord()
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a ConfigRecord or a dict, got {type(value).__name__}")
    record = value.copy() if isinstance(value, ConfigRecord) else ConfigRecord(value)
    if SERVER_ROUND in record:
        raise ConfigError(f"{name} must not set {SERVER_ROUND!r}: the round loop sets it")
    return record


def _metrics(value: object) -> MetricRecord | None:
    if value is None or isinstance(value, MetricRecord):
        return value
    if isinstance(value, Mapping):
        return MetricRecord(value)
    raise TypeError(
        f"evaluate_fn must return a MetricRecord, a dict of metrics or None, "
        f"got {type(value).__name__}"
    )


def _preview(node_ids: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in node_ids[:limit])
    return shown + (f", ... ({len(node_ids) - limit} more)" if len(node_ids) > limit else "")


class RoundLoop:
    """Drives a strategy through ``num_rounds`` rounds on a grid.

    ``timeout`` bounds each ``send_and_receive`` (``None``: wait for every reply);
    ``node_wait_timeout`` bounds each wait for the strategy's :meth:`required_nodes`.
    ``train_config`` / ``evaluate_config`` are passed to the strategy every round.
    ``evaluate_fn(server_round, arrays)`` evaluates the global arrays on the server for
    round 0 (the initial arrays) and after every round. ``on_round_end(server_round,
    arrays, history)`` runs after each round (checkpoints). ``history`` continues a
    history (a resumed run); by default the loop starts an empty one.
    """

    def __init__(
        self,
        policy: RoundPolicy,
        grid: Grid,
        *,
        timeout: float | None = None,
        train_config: ConfigRecord | Mapping[str, Any] | None = None,
        evaluate_config: ConfigRecord | Mapping[str, Any] | None = None,
        evaluate_fn: EvaluateFn | None = None,
        node_wait_timeout: float = 60.0,
        on_round_end: RoundEndFn | None = None,
        history: History | None = None,
    ) -> None:
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not node_wait_timeout >= 0:
            raise ConfigError(f"node_wait_timeout must be >= 0 seconds, got {node_wait_timeout}")
        if evaluate_fn is not None and not callable(evaluate_fn):
            raise TypeError("evaluate_fn must be callable (server_round, arrays) -> metrics")
        if on_round_end is not None and not callable(on_round_end):
            raise TypeError("on_round_end must be callable (server_round, arrays, history)")
        self._policy = policy
        self._grid = grid
        self._timeout = timeout
        self._train_config = _config(train_config, "train_config")
        self._evaluate_config = _config(evaluate_config, "evaluate_config")
        self._evaluate_fn = evaluate_fn
        self._node_wait_timeout = float(node_wait_timeout)
        self._on_round_end = on_round_end
        self._num_rounds = 0
        self.history = History() if history is None else history

    def run(
        self, initial_arrays: ArrayRecord, *, num_rounds: int, first_round: int = 1
    ) -> ArrayRecord:
        """Run rounds ``first_round..num_rounds``; returns the final arrays.

        ``self.history`` has the metrics. ``first_round > 1`` continues a run whose
        earlier rounds produced ``initial_arrays`` (no round-0 centralized evaluation).
        """
        if not isinstance(initial_arrays, ArrayRecord):
            raise TypeError(
                f"initial_arrays must be an ArrayRecord, got {type(initial_arrays).__name__}"
            )
        if not isinstance(num_rounds, int) or isinstance(num_rounds, bool) or num_rounds < 0:
            raise ConfigError(f"num_rounds must be an integer >= 0, got {num_rounds!r}")
        if (
            not isinstance(first_round, int)
            or isinstance(first_round, bool)
            or not 1 <= first_round <= num_rounds + 1
        ):
            raise ConfigError(f"first_round must be in [1, {num_rounds + 1}], got {first_round!r}")
        self._num_rounds = num_rounds
        arrays = initial_arrays.copy()  # never hand the caller's record back as the result
        if first_round == 1:
            self._centralized(0, arrays)
        for server_round in range(first_round, num_rounds + 1):
            started = time.monotonic()
            self._report("round-started", server_round)
            arrays = self._train(server_round, arrays)
            self._evaluate(server_round, arrays)
            self._centralized(server_round, arrays)
            if self._on_round_end is not None:
                self._on_round_end(server_round, arrays, self.history)
            self._report("round-finished", server_round, elapsed_s=time.monotonic() - started)
        return arrays

    # -- stages ----------------------------------------------------------------------------
    def _train(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord:
        started = time.monotonic()
        grid = self._wait(MessageType.TRAIN)
        messages = self._policy.configure_train(
            server_round, arrays, self._train_config.copy(), grid
        )
        if not messages:
            logger.warning("round %d: the strategy sent no train instructions", server_round)
            return arrays
        valid, failures = self._exchange(MessageType.TRAIN, server_round, messages, arrays)
        new_arrays, metrics = self._policy.aggregate_train(server_round, valid)
        self._report(
            "stage-finished",
            server_round,
            stage=MessageType.TRAIN,
            metrics=metrics,
            num_replies=len(valid),
            num_failures=failures,
            elapsed_s=time.monotonic() - started,
        )
        if new_arrays is None:
            logger.warning(
                "round %d: no new arrays from %d valid train replies (%d failures); "
                "keeping the previous arrays",
                server_round,
                len(valid),
                failures,
            )
            return arrays
        return new_arrays

    def _evaluate(self, server_round: int, arrays: ArrayRecord) -> None:
        started = time.monotonic()
        grid = self._wait(MessageType.EVALUATE)
        messages = self._policy.configure_evaluate(
            server_round, arrays, self._evaluate_config.copy(), grid
        )
        if not messages:
            return  # federated evaluation is off (e.g. fraction_evaluate=0)
        valid, failures = self._exchange(MessageType.EVALUATE, server_round, messages, arrays)
        metrics = self._policy.aggregate_evaluate(server_round, valid)
        self._report(
            "stage-finished",
            server_round,
            stage=MessageType.EVALUATE,
            metrics=metrics,
            num_replies=len(valid),
            num_failures=failures,
            elapsed_s=time.monotonic() - started,
        )

    def _centralized(self, server_round: int, arrays: ArrayRecord) -> None:
        if self._evaluate_fn is None:
            return
        started = time.monotonic()
        metrics = _metrics(self._evaluate_fn(server_round, arrays))
        if metrics is None:
            return
        self._report(
            "stage-finished",
            server_round,
            stage=CENTRALIZED,
            metrics=metrics,
            elapsed_s=time.monotonic() - started,
        )

    # -- helpers ---------------------------------------------------------------------------
    def _wait(self, stage: str) -> Grid:
        """Wait for the stage's nodes; returns the Grid to configure the stage with (its
        first ``get_node_ids()`` answers with the list the wait just fetched)."""
        required = self._policy.required_nodes(stage)
        if required <= 0:
            return self._grid
        node_ids = wait_for_nodes(self._grid, required, timeout=self._node_wait_timeout)
        return _FetchedNodes(self._grid, node_ids)

    def _exchange(
        self, stage: str, server_round: int, messages: list[Message], arrays: ArrayRecord
    ) -> tuple[list[Message], int]:
        """Send, then split the replies: (valid replies sorted by node id, failure count).

        Each reply is checked as it arrives (e.g. its arrays for NaN), while the others are
        still on their way."""
        checked: dict[int, str | None] = {}

        def check(reply: Message) -> None:
            checked[id(reply)] = self._policy.check_reply(
                server_round, reply, stage=stage, arrays=arrays
            )

        ids = self._grid.push_messages(messages)
        replies = collect_replies(self._grid, ids, timeout=self._timeout, on_reply=check)
        valid: list[Message] = []
        seen: set[int] = set()
        for reply in sorted(replies, key=lambda m: m.metadata.src_node_id):
            node = reply.metadata.src_node_id
            reason = "a second reply from the same node" if node in seen else checked[id(reply)]
            seen.add(node)
            if reason is None:
                valid.append(reply)
            else:
                logger.warning(
                    "round %d %s: leaving out the reply of node %d: %s",
                    server_round,
                    stage,
                    node,
                    reason,
                )
        missing = sorted({m.metadata.dst_node_id for m in messages} - seen)
        if missing:
            logger.warning(
                "round %d %s: no reply from %d of %d nodes within the timeout (%s)",
                server_round,
                stage,
                len(missing),
                len(messages),
                _preview(missing),
            )
        rejected = len(replies) - len(valid)
        return valid, rejected + len(missing)

    def _report(
        self,
        kind: str,
        server_round: int,
        *,
        metrics: MetricRecord | None = None,
        **fields: Any,
    ) -> None:
        event = RunEvent(
            kind=kind,
            server_round=server_round,
            num_rounds=self._num_rounds,
            metrics=dict(metrics or {}),
            **fields,
        )
        self.history.add(event)
        self._grid.report(event)
