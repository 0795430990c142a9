"""CentralDp as policy: clipping, noise scale, accounting and adaptive clipping (no grid I/O).

Statistical checks are seeded; each states its tolerance in units of the estimator's
standard error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from glade import ArrayRecord, ConfigError, ConfigRecord, Message, MetricRecord, RecordDict, keys
from glade.privacy import (
    DP_DELTA,
    DP_EPSILON,
    AdaptiveClipping,
    CentralDp,
    FixedClipping,
    compute_epsilon,
)
from glade.privacy.clipping import (
    CLIPPING_NORM,
    NORM_BIT,
    REPORT_NORM_BIT,
    clip_update,
    l2_norm,
    next_clipping_norm,
    update_noise_multiplier,
)
from glade.strategies import FedAvg

SIZE = 20_000
GLOBAL = ArrayRecord({"w": np.full((100, SIZE // 100 - 1), 0.25), "b": np.full(100, -1.0)})
SMALL = ArrayRecord({"w": np.zeros(8), "b": np.ones(2)})


class NodesOnly:
    """Just enough of a Grid for configure_train: the strategies only list node ids."""

    def __init__(self, count: int) -> None:
        self.node_ids = list(range(1, count + 1))

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)


def fedavg(**kwargs: Any) -> FedAvg:
    options = {"min_train_nodes": 1, "min_evaluate_nodes": 1, "min_available_nodes": 1}
    return FedAvg(**(options | kwargs))


def direction(seed: int, norm: float, template: ArrayRecord = GLOBAL) -> list[np.ndarray]:
    """A random update of the shape of ``template`` with the given L2 norm."""
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal(a.shape) for a in template.values()]
    scale = norm / l2_norm(parts)
    return [p * scale for p in parts]


def reply_to(message: Message, update: list[np.ndarray], **metrics: Any) -> Message:
    sent = message.content[keys.ARRAYS]
    arrays = ArrayRecord(
        {name: a.numpy() + u for (name, a), u in zip(sent.items(), update, strict=True)}
    )
    metrics = {keys.NUM_EXAMPLES: 10, **metrics}
    return Message.reply(
        message, RecordDict({keys.ARRAYS: arrays, keys.METRICS: MetricRecord(metrics)})
    )


def run_round(
    strategy,
    updates,
    *,
    nodes: int | None = None,
    server_round: int = 1,
    template: ArrayRecord = GLOBAL,
    **metrics,
):
    grid = NodesOnly(nodes or len(updates))
    messages = strategy.configure_train(server_round, template, ConfigRecord(), grid)
    replies = [reply_to(m, u, **metrics) for m, u in zip(messages, updates, strict=False)]
    for reply in replies:
        problem = strategy.check_reply(server_round, reply, stage="train", arrays=template)
        assert problem is None, problem
    return messages, strategy.aggregate_train(server_round, replies)


def flat(record: ArrayRecord) -> np.ndarray:
    return np.concatenate(
        [record[name].numpy().ravel() - GLOBAL[name].numpy().ravel() for name in GLOBAL]
    )


def test_clip_update_scales_only_long_updates():
    long, short = direction(0, 5.0), direction(1, 0.3)
    clipped, norm = clip_update(long, 1.0)
    assert norm == pytest.approx(5.0) and l2_norm(clipped) == pytest.approx(1.0)
    assert np.allclose(
        np.concatenate([c.ravel() for c in clipped]) * 5.0,
        np.concatenate([x.ravel() for x in long]),
    )
    unchanged, norm = clip_update(short, 1.0)
    assert norm == pytest.approx(0.3) and all(
        np.array_equal(a, b) for a, b in zip(unchanged, short, strict=True)
    )


def test_without_noise_the_result_is_the_unweighted_mean_of_clipped_updates():
    updates = [direction(i, norm) for i, norm in enumerate([0.2, 0.5, 3.0, 10.0])]
    strategy = CentralDp(fedavg(), noise_multiplier=0.0, clipping=1.0, delta=None)
    grid = NodesOnly(4)
    messages = strategy.configure_train(1, GLOBAL, ConfigRecord(), grid)
    # Very different example counts: DP averages with equal weights all the same.
    replies = [
        reply_to(m, u, **{keys.NUM_EXAMPLES: 10**i})
        for i, (m, u) in enumerate(zip(messages, updates, strict=True))
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    expected = np.mean(
        [np.concatenate([x.ravel() for x in clip_update(u, 1.0)[0]]) for u in updates], axis=0
    )
    np.testing.assert_allclose(flat(arrays), expected, atol=1e-12)
    assert metrics[keys.NUM_EXAMPLES] == 1111  # the metrics are the wrapped strategy's
    assert metrics[CLIPPING_NORM] == 1.0 and DP_EPSILON not in metrics


@pytest.mark.parametrize(("clip_on", "nodes"), [("server", 10), ("server", 4), ("client", 10)])
def test_noise_std_is_noise_multiplier_times_norm_over_sampled_nodes(clip_on, nodes):
    noise_multiplier, norm = 0.8, 2.0
    strategy = CentralDp(
        fedavg(),
        noise_multiplier=noise_multiplier,
        clipping=norm,
        clip_on=clip_on,
        seed=7,
        delta=None,
    )
    updates = [direction(i, 1.0 if clip_on == "client" else 3.0) for i in range(nodes)]
    extra = {CLIPPING_NORM: norm} if clip_on == "client" else {}
    _, (arrays, _) = run_round(strategy, updates, **extra)
    clipped = [clip_update(u, norm)[0] for u in updates]
    mean = np.mean([np.concatenate([x.ravel() for x in c]) for c in clipped], axis=0)
    residual = flat(arrays) - mean
    expected_std = noise_multiplier * norm / nodes
    # The sample std of 20,000 normal values has a relative standard error of 0.5%: allow
    # 4 standard errors (2%). The mean has a standard error of std / sqrt(20,000).
    assert residual.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(residual.mean()) < 4 * expected_std / math.sqrt(residual.size)
    # Gaussian, not e.g. uniform: the excess kurtosis is 0 (standard error ~0.035).
    kurtosis = np.mean((residual - residual.mean()) ** 4) / residual.var() ** 2 - 3
    assert abs(kurtosis) < 0.15


def test_each_round_reports_the_epsilon_spent_so_far():
    strategy = CentralDp(
        fedavg(fraction_train=0.25), noise_multiplier=1.1, clipping=1.0, delta=1e-5, seed=0
    )
    updates = [direction(i, 0.5) for i in range(5)]
    epsilons = []
    for server_round in (1, 2, 3):
        messages, (_, metrics) = run_round(strategy, updates, nodes=20, server_round=server_round)
        assert len(messages) == 5  # 25% of 20 nodes: sampling rate 0.25
        assert metrics[DP_DELTA] == 1e-5
        epsilons.append(metrics[DP_EPSILON])
    reference = [
        compute_epsilon(noise_multiplier=1.1, sampling_rate=0.25, rounds=r, delta=1e-5)
        for r in (1, 2, 3)
    ]
    assert epsilons == pytest.approx(reference, rel=1e-9)
    assert strategy.accountant is not None and strategy.accountant.rounds == 3


def test_client_side_clipping_asks_nodes_to_clip_and_rejects_nodes_that_did_not():
    strategy = CentralDp(
        fedavg(),
        noise_multiplier=1.0,
        clipping=AdaptiveClipping(initial_norm=0.7),
        clip_on="client",
        delta=None,
    )
    messages = strategy.configure_train(1, GLOBAL, ConfigRecord({"lr": 0.1}), NodesOnly(2))
    config = messages[0].content[keys.CONFIG]
    assert config[CLIPPING_NORM] == 0.7 and config[REPORT_NORM_BIT] is True
    assert config["lr"] == 0.1
    missing = reply_to(messages[0], direction(0, 0.1))
    problem = strategy.check_reply(1, missing, stage="train", arrays=GLOBAL)
    assert "dp_clipping_mod" in problem
    wrong_norm = reply_to(messages[0], direction(0, 0.1), **{CLIPPING_NORM: 0.5, NORM_BIT: 1})
    assert "did not clip" in strategy.check_reply(1, wrong_norm, stage="train", arrays=GLOBAL)
    no_bit = reply_to(messages[0], direction(0, 0.1), **{CLIPPING_NORM: 0.7})
    assert NORM_BIT in strategy.check_reply(1, no_bit, stage="train", arrays=GLOBAL)
    good = reply_to(messages[0], direction(0, 0.1), **{CLIPPING_NORM: 0.7, NORM_BIT: 1})
    assert strategy.check_reply(1, good, stage="train", arrays=GLOBAL) is None


def test_node_side_dp_metrics_do_not_leak_into_the_history():
    strategy = CentralDp(
        fedavg(),
        noise_multiplier=0.0,
        clipping=AdaptiveClipping(initial_norm=1.0),
        clip_on="client",
        delta=None,
        seed=0,
    )
    extra = {CLIPPING_NORM: 1.0, NORM_BIT: 1}
    _, (_, metrics) = run_round(strategy, [direction(i, 0.5) for i in range(3)], **extra)
    assert NORM_BIT not in metrics  # the unnoised fraction would bypass the count noise


def test_adaptive_clipping_converges_to_the_target_quantile():
    # Update norms are log-normal: ln(norm) ~ N(0, 0.5^2); its q-quantile is exp(0.5 z_q).
    rng = np.random.default_rng(3)
    for target in (0.5, 0.8):
        policy = AdaptiveClipping(initial_norm=0.05, target_quantile=target, learning_rate=0.2)
        strategy = CentralDp(fedavg(), noise_multiplier=0.5, clipping=policy, delta=None, seed=5)
        norms = []
        for server_round in range(1, 121):
            sizes = np.exp(0.5 * rng.standard_normal(30))
            updates = [direction(int(rng.integers(1000)), float(s), SMALL) for s in sizes]
            _, (_, metrics) = run_round(
                strategy, updates, server_round=server_round, template=SMALL
            )
            norms.append(metrics[CLIPPING_NORM])
        settled = float(np.exp(np.mean(np.log(norms[-50:]))))
        fraction_below = 0.5 * math.erfc(-math.log(settled) / 0.5 / math.sqrt(2))
        # Over 30 seeds the settled fraction deviated from the target by 0.014 (std), at
        # most 0.028: allow 0.06 (4 standard deviations).
        assert abs(fraction_below - target) < 0.06, (target, settled, fraction_below)
        assert norms[0] == 0.05 and norms[-1] > 0.5


def test_adaptive_split_of_the_noise():
    # Releasing the count with std sigma_b leaves z_update for the mean; both together
    # are as private as multiplier z: z^-2 = z_update^-2 + (2 sigma_b)^-2.
    z_update = update_noise_multiplier(1.0, 2.0)
    assert z_update**-2 + 4.0**-2 == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="clipped_count_stddev"):
        update_noise_multiplier(1.0, 0.5)
    assert (
        next_clipping_norm(1.0, unclipped_fraction=0.9, target_quantile=0.5, learning_rate=0.2)
        < 1.0
    )
    assert (
        next_clipping_norm(1.0, unclipped_fraction=0.1, target_quantile=0.5, learning_rate=0.2)
        > 1.0
    )


def test_validation():
    with pytest.raises(TypeError, match="Strategy"):
        CentralDp(object(), noise_multiplier=1.0, clipping=1.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="clip_on"):
        CentralDp(fedavg(), noise_multiplier=1.0, clipping=1.0, clip_on="both")
    with pytest.raises(ConfigError, match="noise_multiplier"):
        CentralDp(fedavg(), noise_multiplier=-1.0, clipping=1.0)
    with pytest.raises(ConfigError):
        FixedClipping(0.0)
    with pytest.raises(ConfigError):
        AdaptiveClipping(target_quantile=1.0)
    policy = AdaptiveClipping(initial_norm=0.3)
    strategy = CentralDp(fedavg(), noise_multiplier=1.0, clipping=policy, delta=None)
    assert strategy.clipping is not policy  # the wrapper owns a copy of the state
