"""Federated XGBoost: bagging of trees grown on each node, or cyclic training.

Models travel as XGBoost JSON bytes in a uint8 ArrayRecord (see
:mod:`glade.strategies.xgbtrees`); start from ``initial_arrays=empty_model()``. The
server does not need ``xgboost``; nodes do (``pip install 'glade[xgboost]'``). A node's
train handler, in short::

    booster = booster_from_arrays(msg.content["arrays"], params)   # None in round 1
    booster = xgboost.train(params, dtrain, num_boost_round=local_rounds, xgb_model=booster)
    return RecordDict({"arrays": booster_to_arrays(booster),
                       "metrics": MetricRecord({"num-examples": dtrain.num_row()})})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from glade.errors import RecordError
from glade.keys import ARRAYS, METRICS
from glade.message import Message, MessageType
from glade.records import ArrayRecord, MetricRecord
from glade.strategies.fedavg import FedAvg
from glade.strategies.replies import error_problem, weight_problem
from glade.strategies.xgbtrees import TreeModel, bag_models, model_bytes, model_record

__all__ = ["FedXgbBagging", "FedXgbCyclic"]


def model_reply_problem(reply: Message, *, arrays: ArrayRecord, weight_key: str) -> str | None:
    """Why a train reply holds no usable model that extends the global one ``arrays``."""
    problem = error_problem(reply)
    if problem is not None or reply.content is None:
        return problem or "the reply has no content"
    metrics = reply.content.get(METRICS)
    if not isinstance(metrics, MetricRecord):
        return f"the reply has no MetricRecord {METRICS!r}"
    problem = weight_problem(metrics, weight_key)
    if problem is not None:
        return problem
    returned = reply.content.get(ARRAYS)
    if not isinstance(returned, ArrayRecord):
        return f"the train reply has no ArrayRecord {ARRAYS!r}"
    try:
        model = TreeModel.parse(model_bytes(returned))
        global_raw = model_bytes(arrays)
        if global_raw:
            return model.extends(TreeModel.parse(global_raw))
    except RecordError as exc:
        return str(exc)
    return None


class FedXgbBagging(FedAvg):
    """Every sampled node grows trees on top of the global model; the server appends them.

    The new trees of each reply are scaled by its share of the weight
    (``weighted_by_key``, default examples), so the merged model predicts the weighted
    mean of the nodes' margins: bagging of the nodes' boosters. ``sum_trees=True``
    appends them unscaled (the model predicts the sum of the nodes' updates; lower the
    XGBoost ``eta`` to match). Sampling, evaluation and options as :class:`FedAvg`.

    >>> FedXgbBagging(min_available_nodes=2).sum_trees
    False
    """

    def __init__(self, *, sum_trees: bool = False, **fedavg_options: Any) -> None:
        self.sum_trees = bool(sum_trees)
        super().__init__(**fedavg_options)

    def check_reply(
        self, server_round: int, reply: Message, *, stage: str, arrays: ArrayRecord
    ) -> str | None:
        """Evaluate: as FedAvg. Train: the reply's model extends the global model."""
        if stage != MessageType.TRAIN:
            return super().check_reply(server_round, reply, stage=stage, arrays=arrays)
        return model_reply_problem(reply, arrays=arrays, weight_key=self.weighted_by_key)

    def aggregate_arrays(
        self, server_round: int, weighted: list[tuple[ArrayRecord, float]]
    ) -> ArrayRecord:
        sent = model_bytes(self.current_arrays) if self.current_arrays is not None else b""
        replies = [(model_bytes(arrays), weight) for arrays, weight in weighted]
        return model_record(bag_models(sent, replies, sum_trees=self.sum_trees))

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", sum_trees={self.sum_trees})"


class FedXgbCyclic(FedAvg):
    """One node per round trains on top of the global model, in turn; its model becomes
    the global model.

    Round ``r`` trains on the ``(r - 1) mod n``-th of the ``n`` connected nodes (sorted by
    id), so every node's data is visited in a fixed cycle: the federated analogue of
    training on the concatenated data. Evaluation samples ``fraction_evaluate`` as in
    :class:`FedAvg`. ``fraction_train`` / ``min_train_nodes`` do not apply (one node).

    >>> FedXgbCyclic(min_available_nodes=3).sample_nodes([7, 5, 9], stage="train", server_round=2)
    [7]
    """

    def __init__(self, **fedavg_options: Any) -> None:
        for name in ("fraction_train", "min_train_nodes"):
            if name in fedavg_options:
                raise TypeError(f"FedXgbCyclic trains one node per round; drop {name}")
        super().__init__(min_train_nodes=1, **fedavg_options)

    def sample_nodes(self, node_ids: Sequence[int], *, stage: str, server_round: int) -> list[int]:
        if stage != MessageType.TRAIN:
            return super().sample_nodes(node_ids, stage=stage, server_round=server_round)
        candidates = sorted(set(node_ids))
        return [candidates[(server_round - 1) % len(candidates)]] if candidates else []

    def check_reply(
        self, server_round: int, reply: Message, *, stage: str, arrays: ArrayRecord
    ) -> str | None:
        """Evaluate: as FedAvg. Train: the reply's model extends the global model."""
        if stage != MessageType.TRAIN:
            return super().check_reply(server_round, reply, stage=stage, arrays=arrays)
        return model_reply_problem(reply, arrays=arrays, weight_key=self.weighted_by_key)

    def aggregate_arrays(
        self, server_round: int, weighted: list[tuple[ArrayRecord, float]]
    ) -> ArrayRecord:
        arrays, _ = weighted[-1]  # one node trains per round
        return arrays.copy()
