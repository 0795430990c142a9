"""f of n nodes send large adversarial updates: robust strategies stay near the honest mean,
FedAvg does not (both asserted on the same replies).

Honest updates are ``mu + N(0, sigma^2)`` in d dimensions; an honest update is about
``sigma * sqrt(d)`` from the honest mean, which sets the bound every robust aggregate
must meet. The attacks are NaN-free: scaled, sign-flipped, or both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from strat_helpers import NodesOnly, train_reply

from glade import ArrayRecord, ConfigRecord, keys
from glade.strategies import Bulyan, FedAvg, FedMedian, FedTrimmedAvg, Krum

N, F, D, SIGMA = 11, 2, 300, 0.1
BOUND = 1.5 * SIGMA * np.sqrt(D)
"""Every robust aggregate is at most this far from the honest mean (1.5 honest spreads)."""


def attack(kind: str, honest: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    mean = honest.mean(axis=0)
    if kind == "sign-flipped":
        return np.stack([-5.0 * mean] * F)
    if kind == "scaled":
        return 50.0 * honest[rng.choice(len(honest), F, replace=False)]
    if kind == "mixed":  # one of each, and far apart from each other
        return np.stack([-20.0 * mean, 30.0 * honest[0]])
    raise AssertionError(kind)


def aggregate(strategy: FedAvg, updates: np.ndarray, examples: list[int]) -> np.ndarray:
    current = ArrayRecord({"w": np.zeros(D, np.float32)})
    nodes = list(range(1, len(updates) + 1))
    strategy.configure_train(1, current, ConfigRecord(), NodesOnly(nodes))
    replies = [
        train_reply(n, {"w": u.astype(np.float32)}, {keys.NUM_EXAMPLES: e})
        for n, u, e in zip(nodes, updates, examples, strict=True)
    ]
    assert all(strategy.check_reply(1, r, stage="train", arrays=current) is None for r in replies)
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None
    return arrays["w"].numpy().astype(np.float64)


ROBUST: dict[str, Any] = {
    "median": lambda: FedMedian(min_available_nodes=1),
    "trimmed": lambda: FedTrimmedAvg(beta=0.2, min_available_nodes=1),
    "krum": lambda: Krum(num_byzantine=F),
    "multi-krum": lambda: Krum(num_byzantine=F, num_selected=N - 2 * F),
    "bulyan": lambda: Bulyan(num_byzantine=F),
}


@pytest.mark.parametrize("kind", ["sign-flipped", "scaled", "mixed"])
@pytest.mark.parametrize("seed", [0, 1])
def test_robust_aggregates_stay_near_the_honest_mean_and_fedavg_does_not(
    kind: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal(D)
    honest = mu + SIGMA * rng.standard_normal((N - F, D))
    bad = attack(kind, honest, rng)
    # The attackers go first and last in node order, and claim the most examples.
    updates = np.concatenate([bad[:1], honest, bad[1:]])
    examples = [1000] + [int(e) for e in rng.integers(10, 100, N - F)] + [1000]
    honest_mean = honest.mean(axis=0)

    fedavg = aggregate(FedAvg(min_available_nodes=1), updates, examples)
    fedavg_error = np.linalg.norm(fedavg - honest_mean)
    assert fedavg_error > 5 * BOUND, f"FedAvg should be dragged away, error {fedavg_error:.2f}"

    for name, make in ROBUST.items():
        error = np.linalg.norm(aggregate(make(), updates, examples) - honest_mean)
        assert error < BOUND, f"{name}: {error:.3f} from the honest mean (bound {BOUND:.3f})"


def test_without_attackers_robust_aggregates_are_close_to_fedavg() -> None:
    rng = np.random.default_rng(3)
    honest = rng.standard_normal(D) + SIGMA * rng.standard_normal((N, D))
    examples = [10] * N
    fedavg = aggregate(FedAvg(min_available_nodes=1), honest, examples)
    for name, make in ROBUST.items():
        error = np.linalg.norm(aggregate(make(), honest, examples) - fedavg)
        assert error < BOUND, name
