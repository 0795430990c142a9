"""`FedAvg`: federated averaging (McMahan et al., 2017), weighted by examples per node."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence

from glade.errors import ConfigError
from glade.keys import ARRAYS, CONFIG, METRICS, NUM_EXAMPLES, SERVER_ROUND
from glade.message import Message, MessageType
from glade.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from glade.server.grid import Grid
from glade.strategies.aggregate import weighted_average, weighted_mean_metrics
from glade.strategies.base import Strategy, without
from glade.strategies.optimizers import ServerOptimizer
from glade.strategies.replies import (
    arrays_problem,
    reply_record,
    reply_weight,
    src_node,
    weight_problem,
)

__all__ = ["FedAvg", "MetricsAggregationFn"]

MetricsAggregationFn = Callable[[list[MetricRecord]], MetricRecord]
SAMPLER_KEY = "sampler"


class FedAvg(Strategy):
    """Sample nodes, send them the global arrays, average what they return.

    Each round samples ``fraction_train`` of the connected nodes (at least
    ``min_train_nodes``) for training and ``fraction_evaluate`` (at least
    ``min_evaluate_nodes``; ``0`` turns federated evaluation off) for evaluation. The new
    global arrays are the mean of the returned arrays weighted by the reply metric
    ``weighted_by_key``. Metrics are aggregated by ``train_metrics_aggr_fn`` /
    ``evaluate_metrics_aggr_fn`` (default: weighted mean, see
    :func:`~glade.strategies.aggregate.weighted_mean_metrics`). ``seed`` makes the node
    sampling reproducible. A ``server_optimizer``
    (:class:`~glade.strategies.optimizers.ServerOptimizer`) turns the mean into a step
    on the global arrays instead of taking it as they are (FedAvgM, FedAdam, ...).

    Hooks for subclasses: :meth:`sample_nodes`, :meth:`check_reply`,
    :meth:`aggregate_arrays`; FedProx-like strategies extend ``configure_train``'s config.

    >>> strategy = FedAvg(fraction_train=0.5, min_train_nodes=1, seed=42)
    >>> strategy.sample_nodes([4, 3, 2, 1], stage="train", server_round=1)
    [1, 4]
    """

    def __init__(
        self,
        *,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = NUM_EXAMPLES,
        train_metrics_aggr_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggr_fn: MetricsAggregationFn | None = None,
        seed: int | None = None,
        server_optimizer: ServerOptimizer | None = None,
    ) -> None:
        if not 0 < fraction_train <= 1:
            raise ConfigError(f"fraction_train must be in (0, 1], got {fraction_train}")
        if not 0 <= fraction_evaluate <= 1:
            raise ConfigError(f"fraction_evaluate must be in [0, 1], got {fraction_evaluate}")
        for name, value, least in (
            ("min_train_nodes", min_train_nodes, 0),
            ("min_evaluate_nodes", min_evaluate_nodes, 0),
            ("min_available_nodes", min_available_nodes, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
        if not isinstance(weighted_by_key, str) or not weighted_by_key:
            raise ConfigError(f"weighted_by_key must be a metric name, got {weighted_by_key!r}")
        for name, fn in (
            ("train_metrics_aggr_fn", train_metrics_aggr_fn),
            ("evaluate_metrics_aggr_fn", evaluate_metrics_aggr_fn),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable (list[MetricRecord]) -> MetricRecord")
        if server_optimizer is not None and not isinstance(server_optimizer, ServerOptimizer):
            raise TypeError(
                f"server_optimizer must be a ServerOptimizer, got {type(server_optimizer).__name__}"
            )
        default_aggr = functools.partial(weighted_mean_metrics, weight_key=weighted_by_key)
        self.fraction_train = float(fraction_train)
        self.fraction_evaluate = float(fraction_evaluate)
        self.min_train_nodes = min_train_nodes
        self.min_evaluate_nodes = min_evaluate_nodes
        self.min_available_nodes = min_available_nodes
        self.weighted_by_key = weighted_by_key
        self.train_metrics_aggr_fn: MetricsAggregationFn = train_metrics_aggr_fn or default_aggr
        self.evaluate_metrics_aggr_fn: MetricsAggregationFn = (
            evaluate_metrics_aggr_fn or default_aggr
        )
        self.seed = seed
        self.server_optimizer = server_optimizer
        self.current_arrays: ArrayRecord | None = None
        """The global arrays of the latest ``configure_train`` (for server-side optimizers)."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(fraction_train={self.fraction_train}, "
            f"fraction_evaluate={self.fraction_evaluate}, "
            f"min_train_nodes={self.min_train_nodes}, "
            f"min_evaluate_nodes={self.min_evaluate_nodes}, "
            f"min_available_nodes={self.min_available_nodes}, "
            f"weighted_by_key={self.weighted_by_key!r}, seed={self.seed!r}"
            + ("" if self.server_optimizer is None else f", {self.server_optimizer!r}")
            + ")"
        )

    # -- sampling --------------------------------------------------------------------------
    def required_nodes(self, stage: str) -> int:
        if stage == MessageType.EVALUATE:
            if self.fraction_evaluate == 0:
                return 0
            return max(self.min_available_nodes, self.min_evaluate_nodes)
        return max(self.min_available_nodes, self.min_train_nodes)

    def sample_nodes(self, node_ids: Sequence[int], *, stage: str, server_round: int) -> list[int]:
        """The sorted node ids that get ``stage``'s instructions in ``server_round``.

        Seeded sampling depends only on (seed, stage, round) and the set of node ids, so a
        rerun or a resumed run samples the same nodes.
        """
        if stage == MessageType.EVALUATE:
            fraction, least = self.fraction_evaluate, self.min_evaluate_nodes
        else:
            fraction, least = self.fraction_train, self.min_train_nodes
        if fraction == 0:
            return []
        candidates = sorted(set(node_ids))
        count = min(len(candidates), max(least, int(fraction * len(candidates)), 1))
        if count == len(candidates):
            return candidates
        # str seeds hash deterministically (unlike hash() of a tuple across processes).
        seed = None if self.seed is None else f"{self.seed}:{stage}:{server_round}"
        rng = random.Random(seed)
        return sorted(rng.sample(candidates, count))

    # -- train -----------------------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        self.current_arrays = arrays
        nodes = self.sample_nodes(
            grid.get_node_ids(), stage=MessageType.TRAIN, server_round=server_round
        )
        return self._instructions(MessageType.TRAIN, server_round, arrays, config, nodes)

    def aggregate_train(
        self, server_round: int, replies: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if not replies:
            return None, None
        ordered = sorted(replies, key=src_node)
        metrics = [reply_record(r, METRICS, MetricRecord) for r in ordered]
        weighted = [
            (reply_record(r, ARRAYS, ArrayRecord), reply_weight(r, self.weighted_by_key))
            for r in ordered
        ]
        return self.aggregate_arrays(server_round, weighted), self.train_metrics_aggr_fn(metrics)

    def aggregate_arrays(
        self, server_round: int, weighted: list[tuple[ArrayRecord, float]]
    ) -> ArrayRecord | None:
        """The new global arrays from ``(arrays, weight)`` per valid reply, in node order.

        FedAvg: the weighted mean, or the ``server_optimizer``'s step towards it.
        Override for robust aggregation (``self.current_arrays`` holds the arrays that
        were sent); returning ``None`` keeps the previous global arrays.
        """
        names = list(weighted[0][0])
        optimizer = self.server_optimizer
        means = weighted_average(
            (([record[name].numpy() for name in names], weight) for record, weight in weighted),
            keep_accumulator=optimizer is not None,
        )
        if optimizer is None:
            return ArrayRecord(dict(zip(names, means, strict=True)))
        if self.current_arrays is None:
            raise RuntimeError("aggregate_arrays before configure_train: no arrays were sent")
        return optimizer.step(self.current_arrays, dict(zip(names, means, strict=True)))

    # -- checkpoints -----------------------------------------------------------------------
    def state(self) -> RecordDict:
        """The sampler's seed and the server optimizer's state (if any).

        Seeded sampling is a function of (seed, stage, round), so the seed and the round
        (saved by the checkpoint) are the sampler's whole state.
        """
        state = super().state()
        if self.seed is not None:
            state[SAMPLER_KEY] = ConfigRecord({"seed": self.seed})
        if self.server_optimizer is not None:
            for key, record in self.server_optimizer.state().items():
                state[key] = record
        return state

    def load_state(self, state: RecordDict) -> None:
        sampler = state.get(SAMPLER_KEY)
        saved_seed = sampler.get("seed") if isinstance(sampler, ConfigRecord) else None
        if saved_seed != self.seed:
            raise ConfigError(
                f"the checkpoint was sampled with seed={saved_seed!r}, this strategy has "
                f"seed={self.seed!r}; resume with the same seed to get the same run"
            )
        mine = [SAMPLER_KEY]
        if self.server_optimizer is not None:
            self.server_optimizer.load_state(state)
            mine += ServerOptimizer.keys(state)
        super().load_state(without(state, mine))

    # -- evaluate --------------------------------------------------------------------------
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        if self.fraction_evaluate == 0:
            return []
        nodes = self.sample_nodes(
            grid.get_node_ids(), stage=MessageType.EVALUATE, server_round=server_round
        )
        return self._instructions(MessageType.EVALUATE, server_round, arrays, config, nodes)

    def aggregate_evaluate(self, server_round: int, replies: list[Message]) -> MetricRecord | None:
        if not replies:
            return None
        ordered = sorted(replies, key=src_node)
        return self.evaluate_metrics_aggr_fn(
            [reply_record(r, METRICS, MetricRecord) for r in ordered]
        )

    # -- checks ----------------------------------------------------------------------------
    def check_reply(
        self, server_round: int, reply: Message, *, stage: str, arrays: ArrayRecord
    ) -> str | None:
        """Why ``reply`` cannot be aggregated, or ``None``.

        Rejects error replies, replies without metrics or without a weight > 0, and (for
        train) replies whose arrays differ from ``arrays`` in names, shapes or dtypes, or
        hold NaN/inf.
        """
        problem = super().check_reply(server_round, reply, stage=stage, arrays=arrays)
        if problem is not None or reply.content is None:
            return problem or "the reply has no content"
        metrics = reply.content.get(METRICS)
        if not isinstance(metrics, MetricRecord):
            return f"the reply has no MetricRecord {METRICS!r}"
        problem = weight_problem(metrics, self.weighted_by_key)
        if problem is not None or stage != MessageType.TRAIN:
            return problem
        returned = reply.content.get(ARRAYS)
        if not isinstance(returned, ArrayRecord):
            return f"the train reply has no ArrayRecord {ARRAYS!r}"
        return arrays_problem(arrays, returned)

    # -- helpers ---------------------------------------------------------------------------
    def _instructions(
        self,
        message_type: str,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        node_ids: list[int],
    ) -> list[Message]:
        content = RecordDict(
            {ARRAYS: arrays, CONFIG: ConfigRecord({**config, SERVER_ROUND: server_round})}
        )
        # Each node gets its own copy of the records (arrays are immutable and shared), so a
        # ClientApp that edits its message cannot touch another node's or the caller's.
        return [
            Message(
                content.copy(),
                dst_node_id=node_id,
                message_type=message_type,
                group_id=str(server_round),
            )
            for node_id in node_ids
        ]
