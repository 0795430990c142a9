"""Benchmark of server-side aggregation (prints numbers; not a test).

For ``--replies`` train replies of ``--params`` float32 parameters (default 100 x 1e6,
400 MB of updates), the time of each strategy's ``aggregate_train`` on real reply
messages (best of ``--repeat`` runs), beside NumPy baselines measured in the same run on
the same bytes:

- ``np.add``: accumulating the replies into one float32 array (the least any mean costs);
- ``np.median``: ``np.median(stacked, axis=0)`` on the replies stacked beforehand;
- ``np.partition``: ``np.partition(stacked, [k, n-k-1], axis=0)`` (the trimmed-mean core).

Targets: FedAvg / FedAvgM / FedAdam within 2x of ``np.add``; FedMedian within 3x of
``np.median`` and FedTrimmedAvg within 3x of ``np.partition``. Krum, Multi-Krum and
Bulyan (f = 10% of the replies) compute all pairwise distances: O(n^2 d); their time is
reported as it is.

Usage: python bench/aggregation.py [--replies 100] [--params 1000000] [--repeat 3]
                                   [--only FedAvg,FedMedian]
"""

from __future__ import annotations

import argparse
import functools
import gc
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from glade import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict, keys
from glade.strategies import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    QFedAvg,
)
from glade.strategies.replies import reply_record

BETA = 0.1  # FedTrimmedAvg: 10% trimmed from each end


class Nodes:
    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def get_node_ids(self) -> list[int]:
        return self.ids


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def make_replies(n: int, d: int, current: np.ndarray) -> list[Message]:
    rng = np.random.default_rng(0)
    replies = []
    for node in range(1, n + 1):
        update = current + rng.standard_normal(d, dtype=np.float32)
        sent = Message(RecordDict(), dst_node_id=node, message_type="train", group_id="1")
        metrics = MetricRecord({keys.NUM_EXAMPLES: int(rng.integers(10, 1000)), "train-loss": 1.0})
        content = RecordDict({keys.ARRAYS: ArrayRecord({"w": update}), keys.METRICS: metrics})
        replies.append(Message.reply(sent, content))
    return replies


def strategies(n: int) -> dict[str, tuple[Callable[[], Any], str, float | None]]:
    """name -> (factory, baseline, target ratio)."""
    f = max(0, min(n // 10, (n - 3) // 4))  # Krum / Bulyan: Byzantine nodes tolerated (10%)
    common: dict[str, Any] = {"min_available_nodes": 1, "min_train_nodes": 1}
    robust: dict[str, Any] = {"min_available_nodes": 1}
    return {
        "FedAvg": (lambda: FedAvg(**common), "np.add", 2.0),
        "FedProx": (lambda: FedProx(proximal_mu=0.1, **common), "np.add", 2.0),
        "FedAvgM": (lambda: FedAvgM(**common), "np.add", 2.0),
        "FedAdam": (lambda: FedAdam(**common), "np.add", 2.0),
        "FedYogi": (lambda: FedYogi(**common), "np.add", None),
        "FedAdagrad": (lambda: FedAdagrad(**common), "np.add", None),
        "QFedAvg": (lambda: QFedAvg(**common), "np.add", None),
        "FedMedian": (lambda: FedMedian(**common), "np.median", 3.0),
        "FedTrimmedAvg": (lambda: FedTrimmedAvg(beta=BETA, **common), "np.partition", 3.0),
        "Krum": (lambda: Krum(num_byzantine=f, **robust), "np.add", None),
        "Multi-Krum": (
            lambda: Krum(num_byzantine=f, num_selected=n - 2 * f, **robust),
            "np.add",
            None,
        ),
        "Bulyan": (lambda: Bulyan(num_byzantine=f, **robust), "np.add", None),
    }


def baselines(arrays: list[np.ndarray], repeat: int) -> dict[str, float]:
    n = len(arrays)
    k = int(BETA * n)

    def add() -> None:
        acc = arrays[0].copy()
        for x in arrays[1:]:
            np.add(acc, x, out=acc)

    stacked = np.stack(arrays)  # freed on return
    return {
        "np.add": best_of(repeat, add),
        "np.median": best_of(repeat, lambda: np.median(stacked, axis=0)),
        "np.partition": best_of(repeat, lambda: np.partition(stacked, [k, n - k - 1], axis=0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=100)
    parser.add_argument("--params", type=float, default=1e6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated strategy names")
    args = parser.parse_args()
    n, d = args.replies, int(args.params)
    current = np.zeros(d, np.float32)
    replies = make_replies(n, d, current)
    arrays = [reply_record(r, keys.ARRAYS, ArrayRecord)["w"].numpy() for r in replies]
    gb = n * d * 4 / 1e9
    print(
        f"{n} replies x {d:,} float32 = {gb:.2f} GB; best of {args.repeat}; "
        f"{platform.processor() or platform.machine()}, numpy {np.__version__}"
    )
    base = baselines(arrays, args.repeat)
    for name, seconds in base.items():
        print(f"  baseline {name:<13} {seconds * 1e3:9.1f} ms  ({gb / seconds:5.2f} GB/s)")
    print(f"\n  {'strategy':<14}{'time':>10}   {'baseline':<13}{'ratio':>7}   target")
    wanted = {s for s in args.only.split(",") if s}
    record = ArrayRecord({"w": current})
    for name, (make, baseline, target) in strategies(n).items():
        if wanted and name not in wanted:
            continue
        strategy = make()
        strategy.configure_train(1, record, ConfigRecord(), Nodes(list(range(1, n + 1))))
        slow = name in ("Krum", "Multi-Krum", "Bulyan")
        repeat = max(1, args.repeat // 2) if slow else args.repeat
        seconds = best_of(repeat, functools.partial(strategy.aggregate_train, 1, replies))
        ratio = seconds / base[baseline]
        verdict = (
            "" if target is None else f"<= {target:g}x  {'ok' if ratio <= target else 'MISSED'}"
        )
        print(f"  {name:<14}{seconds * 1e3:8.1f} ms   {baseline:<13}{ratio:6.2f}x   {verdict}")


if __name__ == "__main__":
    main()
