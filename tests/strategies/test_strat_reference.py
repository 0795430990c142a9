"""Each strategy against an independent NumPy closed form, on random mixed-dtype updates.

Replies hold float64, float32, float16, bfloat16 and int64 arrays; weights are random;
counts are odd and even. References are written from the papers' formulas in float64
with plain loops, sharing no code with the library.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from strat_helpers import SPECS, as_f64, assert_close, random_record, run_round

from glade import ArrayRecord, keys
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

FLOATS = [n for n, (d, _) in SPECS.items() if np.dtype(d).kind == "f" or n == "bf16"]
INTS = [n for n in SPECS if n not in FLOATS]


def replies_around(
    rng: np.random.Generator, current: ArrayRecord, n: int, **metrics: Any
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """n replies: the sent arrays plus a random update, random example counts."""
    out = []
    for _ in range(n):
        update = random_record(rng, scale=0.5)
        arrays = {}
        for name, (dtype, _) in SPECS.items():
            if name in INTS:
                arrays[name] = update[name]
            else:
                base = current[name].numpy().astype(np.float64)
                arrays[name] = (base + update[name].astype(np.float64)).astype(dtype)
        out.append((arrays, {keys.NUM_EXAMPLES: int(rng.integers(1, 50)), **metrics}))
    return out


def weighted_mean(replies: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    weights = [float(m[keys.NUM_EXAMPLES]) for _, m in replies]
    return {
        name: sum(w * as_f64(a)[name] for (a, _), w in zip(replies, weights, strict=True))
        / sum(weights)
        for name in SPECS
    }


def options(**kwargs: Any) -> dict[str, Any]:
    return {"min_available_nodes": 1, "min_evaluate_nodes": 1, **kwargs}


def start_record(rng: np.random.Generator) -> ArrayRecord:
    return ArrayRecord(random_record(rng))


# -- averaging family ----------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 4, 7])
def test_fedavg_and_fedprox_are_the_weighted_mean(n: int) -> None:
    rng = np.random.default_rng(n)
    current = start_record(rng)
    replies = replies_around(rng, current, n)
    for strategy in (FedAvg(**options()), FedProx(proximal_mu=0.3, **options())):
        assert_close(run_round(strategy, 1, current, replies), weighted_mean(replies))


@pytest.mark.parametrize(("lr", "momentum"), [(1.0, 0.0), (1.0, 0.9), (0.5, 0.5)])
def test_fedavgm_matches_server_momentum_over_rounds(lr: float, momentum: float) -> None:
    rng = np.random.default_rng(7)
    strategy = FedAvgM(server_learning_rate=lr, server_momentum=momentum, **options())
    current = start_record(rng)
    velocity = {n: 0.0 for n in FLOATS}
    for server_round, n in zip(range(1, 5), [3, 5, 4, 6], strict=True):
        replies = replies_around(rng, current, n)
        mean, x = weighted_mean(replies), as_f64(current)
        want = dict(mean)  # integer arrays: the rounded mean
        for name in FLOATS:
            velocity[name] = momentum * velocity[name] + (mean[name] - x[name])
            want[name] = x[name] + lr * velocity[name]
        got = run_round(strategy, server_round, current, replies)
        assert got is not None
        assert_close(got, want, scale=4.0)
        current = got


def adaptive_reference(kind: str, eta: float, b1: float, b2: float, tau: float) -> Any:
    """Reddi et al. 2021, Algorithm 2, in float64: returns step(x, mean) -> new x."""
    m: dict[str, Any] = {n: 0.0 for n in FLOATS}
    v: dict[str, Any] = {n: tau**2 for n in FLOATS}

    def step(x: dict[str, Any], mean: dict[str, Any]) -> dict[str, Any]:
        out = dict(mean)
        for name in FLOATS:
            delta = mean[name] - x[name]
            m[name] = b1 * m[name] + (1 - b1) * delta
            if kind == "adagrad":
                v[name] = v[name] + delta**2
            elif kind == "adam":
                v[name] = b2 * v[name] + (1 - b2) * delta**2
            else:
                v[name] = v[name] - (1 - b2) * delta**2 * np.sign(v[name] - delta**2)
            out[name] = x[name] + eta * m[name] / (np.sqrt(v[name]) + tau)
        return out

    return step


@pytest.mark.parametrize("kind", ["adagrad", "adam", "yogi"])
def test_adaptive_server_optimizers_match_the_paper(kind: str) -> None:
    rng = np.random.default_rng(11)
    eta, b1, b2, tau = 0.3, 0.8, 0.95, 0.05
    if kind == "adagrad":
        strategy: FedAvg = FedAdagrad(eta=eta, beta_1=b1, tau=tau, eta_l=0.01, **options())
    elif kind == "adam":
        strategy = FedAdam(eta=eta, beta_1=b1, beta_2=b2, tau=tau, **options())
    else:
        strategy = FedYogi(eta=eta, beta_1=b1, beta_2=b2, tau=tau, **options())
    reference = adaptive_reference(kind, eta, b1, b2, tau)
    current = start_record(rng)
    for server_round in range(1, 5):
        replies = replies_around(rng, current, 3 + server_round)
        want = reference(as_f64(current), weighted_mean(replies))
        got = run_round(strategy, server_round, current, replies)
        assert got is not None
        assert_close(got, want, scale=2.0)
        current = got


# -- robust family ---------------------------------------------------------------------------
def stacked(replies: list[tuple[dict[str, Any], dict[str, Any]]], name: str) -> np.ndarray:
    return np.stack([as_f64(a)[name] for a, _ in replies])


@pytest.mark.parametrize("n", [1, 2, 5, 6, 9])
def test_fedmedian_is_the_coordinate_median(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    current = start_record(rng)
    replies = replies_around(rng, current, n)
    want = {name: np.median(stacked(replies, name), axis=0) for name in SPECS}
    assert_close(run_round(FedMedian(**options()), 1, current, replies), want)


@pytest.mark.parametrize(("n", "beta"), [(5, 0.2), (6, 0.2), (10, 0.3), (4, 0.0), (9, 0.45)])
def test_fedtrimmedavg_drops_both_tails(n: int, beta: float) -> None:
    rng = np.random.default_rng(200 + n)
    current = start_record(rng)
    replies = replies_around(rng, current, n)
    k = int(np.floor(beta * n))
    want = {name: np.sort(stacked(replies, name), axis=0)[k : n - k].mean(axis=0) for name in SPECS}
    assert_close(run_round(FedTrimmedAvg(beta=beta, **options()), 1, current, replies), want)


def flat(arrays: dict[str, Any]) -> np.ndarray:
    return np.concatenate([np.ravel(v) for v in as_f64(arrays).values()])


def krum_reference(points: list[np.ndarray], f: int, m: int) -> list[int]:
    n = len(points)
    k = max(1, n - f - 2)
    scores = []
    for i in range(n):
        dists = sorted(float(np.sum((points[i] - points[j]) ** 2)) for j in range(n) if j != i)
        scores.append(sum(dists[:k]))
    order = sorted(range(n), key=lambda i: (scores[i], i))
    return sorted(order[:m])


@pytest.mark.parametrize(("n", "f", "m"), [(5, 1, 1), (7, 2, 1), (8, 1, 3), (9, 2, 4)])
def test_krum_and_multikrum_keep_the_best_scored(n: int, f: int, m: int) -> None:
    rng = np.random.default_rng(300 + n)
    current = start_record(rng)
    replies = replies_around(rng, current, n)
    chosen = krum_reference([flat(a) for a, _ in replies], f, m)
    want = {name: stacked(replies, name)[chosen].mean(axis=0) for name in SPECS}
    strategy = Krum(num_byzantine=f, num_selected=m, **options())
    assert_close(run_round(strategy, 1, current, replies), want)


def test_krum_ties_go_to_the_lower_node() -> None:
    rng = np.random.default_rng(5)
    current = start_record(rng)
    base = replies_around(rng, current, 1)[0]
    # Nodes 1..3 are copies of one reply; nodes 4 and 5 equal copies of another.
    other = replies_around(rng, current, 1)[0]
    replies = [base, base, base, other, other]
    got = run_round(Krum(num_byzantine=1, **options()), 1, current, replies)
    assert got is not None
    assert all(got[name] == ArrayRecord(base[0])[name] for name in SPECS)


def bulyan_reference(points: list[np.ndarray], f: int) -> list[int]:
    remaining, chosen = list(range(len(points))), []
    while len(chosen) < len(points) - 2 * f:
        sub = [points[i] for i in remaining]
        best = krum_reference(sub, f, 1)[0]
        chosen.append(remaining.pop(best))
    return sorted(chosen)


@pytest.mark.parametrize(("n", "f"), [(3, 0), (7, 1), (8, 1), (11, 2)])
def test_bulyan_is_krum_selection_then_trimmed_mean(n: int, f: int) -> None:
    rng = np.random.default_rng(400 + n)
    current = start_record(rng)
    replies = replies_around(rng, current, n)
    chosen = bulyan_reference([flat(a) for a, _ in replies], f)
    want = {}
    for name in SPECS:
        picked = np.sort(stacked(replies, name)[chosen], axis=0)
        want[name] = picked[f : len(chosen) - f].mean(axis=0)
    assert_close(run_round(Bulyan(num_byzantine=f, **options()), 1, current, replies), want)


def test_robust_strategies_ignore_the_claimed_weights() -> None:
    rng = np.random.default_rng(9)
    current = start_record(rng)
    replies = replies_around(rng, current, 7)
    liars = [(a, {keys.NUM_EXAMPLES: 10**9 if i == 0 else 1}) for i, (a, _) in enumerate(replies)]
    for make in (
        lambda: FedMedian(**options()),
        lambda: FedTrimmedAvg(beta=0.2, **options()),
        lambda: Krum(num_byzantine=1, num_selected=2, **options()),
        lambda: Bulyan(num_byzantine=1, **options()),
    ):
        assert run_round(make(), 1, current, replies) == run_round(make(), 1, current, liars)


# -- fairness ------------------------------------------------------------------------------
def qfedavg_reference(
    x: dict[str, Any], replies: list[tuple[dict[str, Any], dict[str, Any]]], q: float, lr: float
) -> dict[str, Any]:
    """Li et al. 2020 (q-FFL), Algorithm 2's server update, in float64."""
    lipschitz = 1.0 / lr
    deltas, hs = [], []
    for arrays, metrics in replies:
        loss = metrics["train-loss"]
        dw = {n: lipschitz * (x[n] - as_f64(arrays)[n]) for n in FLOATS}
        norm_sq = sum(float(np.sum(dw[n] ** 2)) for n in FLOATS)
        deltas.append({n: loss**q * dw[n] for n in FLOATS})
        hs.append(q * loss ** (q - 1) * norm_sq + lipschitz * loss**q)
    out = {n: x[n] - sum(d[n] for d in deltas) / sum(hs) for n in FLOATS}
    weights = [m["train-loss"] ** q for _, m in replies]
    for name in INTS:
        out[name] = sum(w * as_f64(a)[name] for (a, _), w in zip(replies, weights, strict=True))
        out[name] = out[name] / sum(weights)
    return out


@pytest.mark.parametrize(("q", "n"), [(0.0, 4), (0.5, 5), (1.0, 3), (3.0, 6)])
def test_qfedavg_matches_the_paper(q: float, n: int) -> None:
    rng = np.random.default_rng(500 + n)
    current = start_record(rng)
    replies = [
        (a, {**m, "train-loss": float(rng.uniform(0.1, 3.0))})
        for a, m in replies_around(rng, current, n)
    ]
    strategy = QFedAvg(q=q, client_learning_rate=0.05, **options())
    want = qfedavg_reference(as_f64(current), replies, q, 0.05)
    assert_close(run_round(strategy, 1, current, replies), want)


def test_qfedavg_with_q_zero_is_the_unweighted_mean() -> None:
    rng = np.random.default_rng(1)
    current = start_record(rng)
    replies = replies_around(rng, current, 5, **{"train-loss": 1.5})
    want = {name: stacked(replies, name).mean(axis=0) for name in SPECS}
    got = run_round(QFedAvg(q=0.0, client_learning_rate=0.1, **options()), 1, current, replies)
    assert_close(got, want, scale=2.0)


def test_every_strategy_leaves_its_inputs_untouched() -> None:
    rng = np.random.default_rng(3)
    current = start_record(rng)
    replies = replies_around(rng, current, 7, **{"train-loss": 1.0})
    before = [{n: a.copy() for n, a in arrays.items()} for arrays, _ in replies]
    sent = {n: a.numpy(copy=True) for n, a in current.items()}
    for strategy in itertools.chain(
        [FedAvgM(**options()), FedAdam(**options()), QFedAvg(**options())],
        [FedMedian(**options()), Krum(num_byzantine=1, **options())],
        [Bulyan(num_byzantine=1, **options()), FedTrimmedAvg(**options())],
    ):
        run_round(strategy, 1, current, replies)
    for (arrays, _), copy in zip(replies, before, strict=True):
        assert all(np.array_equal(arrays[n], copy[n]) for n in SPECS)
    assert all(np.array_equal(current[n].numpy(), sent[n]) for n in SPECS)
