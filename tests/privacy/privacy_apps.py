"""Apps for the privacy tests: softmax regression in NumPy on scikit-learn's digits.

Imported by reference (``privacy_apps:secagg_app``) by the local backend's workers, so it
must stay importable on its own. Nodes can be told to fail at a protocol stage through the
run config: ``drop-stage`` (a message type) and ``drop-partitions`` (``"0,3"``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from glade import (
    ArrayRecord,
    ClientApp,
    Context,
    Message,
    MetricRecord,
    RecordDict,
    keys,
)
from glade.client.app import CallNext
from glade.privacy import LocalDpMod, dp_clipping_mod, secaggplus_mod

NUM_FEATURES, NUM_CLASSES = 64, 10


@lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def split(partition_id: int, num_partitions: int) -> tuple[np.ndarray, ...]:
    """This node's IID share: ``(x_train, y_train, x_test, y_test)`` (20% test)."""
    x, y = digits()
    order = np.random.default_rng(42).permutation(len(y))
    part = np.array_split(order, num_partitions)[partition_id]
    cut = len(part) // 5
    return x[part[cut:]], y[part[cut:]], x[part[:cut]], y[part[:cut]]


def held_out(num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """The union of the nodes' test splits: data no node trains on."""
    parts = [split(p, num_partitions) for p in range(num_partitions)]
    return np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts])


def init_model() -> ArrayRecord:
    return ArrayRecord(
        {
            "weights": np.zeros((NUM_FEATURES, NUM_CLASSES), np.float32),
            "bias": np.zeros(NUM_CLASSES, np.float32),
        }
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def accuracy(arrays: ArrayRecord, x: np.ndarray, y: np.ndarray) -> float:
    probs = _softmax(x @ arrays["weights"].numpy() + arrays["bias"].numpy())
    return float((probs.argmax(axis=1) == y).mean())


def _train(msg: Message, context: Context) -> RecordDict:
    pid, num = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    x, y, _, _ = split(pid, num)
    arrays = msg.content[keys.ARRAYS]
    config = msg.content[keys.CONFIG]
    w, b = arrays["weights"].numpy(copy=True), arrays["bias"].numpy(copy=True)
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[y]
    rng = np.random.default_rng(1000 * int(config[keys.SERVER_ROUND]) + pid)
    lr = float(config.get("lr", 0.5))
    for _ in range(int(config.get("local-epochs", 1))):
        order = rng.permutation(len(y))
        for start in range(0, len(y), 32):
            batch = order[start : start + 32]
            grad = (_softmax(x[batch] @ w + b) - onehot[batch]) / len(batch)
            w -= lr * (x[batch].T @ grad)
            b -= lr * grad.sum(axis=0)
    metrics = MetricRecord({keys.NUM_EXAMPLES: len(y)})
    return RecordDict({keys.ARRAYS: ArrayRecord({"weights": w, "bias": b}), keys.METRICS: metrics})


def _evaluate(msg: Message, context: Context) -> RecordDict:
    pid, num = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    _, _, x, y = split(pid, num)
    acc = accuracy(msg.content[keys.ARRAYS], x, y)
    return RecordDict({keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: len(y), "accuracy": acc})})


def drop_mod(msg: Message, context: Context, call_next: CallNext) -> Message:
    """Fail (as a dropped node would) at the stage named by the run config."""
    stage = context.run_config.get("drop-stage", "")
    chosen = str(context.run_config.get("drop-partitions", ""))
    partitions = {int(p) for p in chosen.split(",") if p}
    if msg.message_type == stage and int(context.node_config["partition-id"]) in partitions:
        raise ConnectionError(f"node dropped out at {stage}")
    return call_next(msg, context)


def _app(*mods) -> ClientApp:
    app = ClientApp(mods=list(mods))
    app.train()(_train)
    app.evaluate()(_evaluate)
    return app


plain_app = _app()
secagg_app = _app(drop_mod, secaggplus_mod)
clipping_app = _app(dp_clipping_mod)
secagg_clipping_app = _app(drop_mod, secaggplus_mod, dp_clipping_mod)
local_dp_app = _app(LocalDpMod(clipping_norm=1.0, epsilon=20.0, delta=1e-5, seed=0))


secagg_demo_app = ClientApp(mods=[secaggplus_mod])


@secagg_demo_app.train()
def _demo_train(msg: Message, context: Context) -> RecordDict:
    """Adds ``0.1 * (partition + 1)`` to every value, weighted by ``partition + 1``."""
    pid = int(context.node_config["partition-id"])
    arrays = {k: a.numpy() + 0.1 * (pid + 1) for k, a in msg.content[keys.ARRAYS].items()}
    metrics = MetricRecord({keys.NUM_EXAMPLES: pid + 1})
    return RecordDict({keys.ARRAYS: ArrayRecord(arrays), keys.METRICS: metrics})
