"""End to end: softmax regression on scikit-learn's digits still learns with DP and SecAgg+.

Accuracy is measured on the union of the nodes' test splits (no node trains on them). The
numbers these seeded runs reach are stated in docs/privacy.md; the assertions leave room.
"""

from __future__ import annotations

import numpy as np
import pytest

from glade import ServerApp
from glade.privacy import (
    DP_EPSILON,
    LDP_EPSILON,
    AdaptiveClipping,
    CentralDp,
    SecAggPlus,
    compute_epsilon,
)
from glade.simulation import run_simulation
from glade.strategies import FedAvg, Result

pytest.importorskip("sklearn")
privacy_apps = pytest.importorskip("privacy_apps")


def train(
    client_app,
    wrap,
    *,
    nodes: int,
    rounds: int,
    fraction: float = 1.0,
    run_config: dict | None = None,
) -> Result:
    x_test, y_test = privacy_apps.held_out(nodes)
    server = ServerApp()

    @server.main()
    def main(grid, context):
        strategy = wrap(
            FedAvg(
                fraction_train=fraction,
                fraction_evaluate=0.0,
                min_available_nodes=nodes,
                seed=3,
            )
        )
        return strategy.start(
            grid,
            initial_arrays=privacy_apps.init_model(),
            num_rounds=rounds,
            train_config={"lr": 0.5},
            evaluate_fn=lambda _, arrays: {
                "accuracy": privacy_apps.accuracy(arrays, x_test, y_test)
            },
        )

    result = run_simulation(
        server,
        client_app,
        num_supernodes=nodes,
        backend="inline",
        seed=1,
        run_config=run_config,
        raise_on_error=True,
    )
    assert result.status == "completed"
    return result.return_value


def accuracy(result: Result) -> float:
    return result.history.metrics["centralized"][result.num_rounds]["accuracy"]


def test_central_dp_learns_and_reports_its_epsilon():
    pytest.importorskip("dp_accounting")
    baseline = train(privacy_apps.plain_app, lambda s: s, nodes=50, rounds=30, fraction=0.2)
    private = train(
        privacy_apps.plain_app,
        lambda s: CentralDp(s, noise_multiplier=1.0, clipping=0.5, seed=0),
        nodes=50,
        rounds=30,
        fraction=0.2,
    )
    assert private.history.metrics["centralized"][0]["accuracy"] < 0.2  # untrained
    assert accuracy(private) >= 0.75  # 0.81
    assert accuracy(private) <= accuracy(baseline)  # 0.90 without DP
    epsilons = [private.history.metrics["train"][r][DP_EPSILON] for r in range(1, 31)]
    assert epsilons == sorted(epsilons)
    expected = compute_epsilon(noise_multiplier=1.0, sampling_rate=0.2, rounds=30, delta=1e-5)
    assert epsilons[-1] == pytest.approx(expected) and 8 < expected < 10  # 8.94


def test_client_side_adaptive_clipping_learns():
    pytest.importorskip("dp_accounting")
    result = train(
        privacy_apps.clipping_app,
        lambda s: CentralDp(
            s,
            noise_multiplier=1.0,
            clipping=AdaptiveClipping(initial_norm=0.5),
            clip_on="client",
            seed=0,
        ),
        nodes=50,
        rounds=30,
        fraction=0.2,
    )
    assert accuracy(result) >= 0.75  # 0.82
    norms = [m["dp-clipping-norm"] for m in result.history.metrics["train"].values()]
    assert norms[0] == 0.5 and norms[-1] < 0.4  # learned: the median update norm is smaller


def test_secagg_learns_as_well_as_fedavg():
    plain = train(privacy_apps.plain_app, lambda s: s, nodes=10, rounds=20)
    secure = train(
        privacy_apps.secagg_app,
        lambda s: SecAggPlus(s, num_shares=5, reconstruction_threshold=3),
        nodes=10,
        rounds=20,
    )
    assert accuracy(secure) == pytest.approx(accuracy(plain), abs=0.01) and accuracy(plain) > 0.9
    for name in plain.arrays:
        np.testing.assert_allclose(
            secure.arrays[name].numpy(), plain.arrays[name].numpy(), atol=1e-4
        )


def test_central_dp_over_secagg_equals_central_dp_alone():
    """Distributed DP: nodes clip, SecAgg+ hides each update, the server noises the sum."""
    pytest.importorskip("dp_accounting")

    def dp(strategy):
        return CentralDp(strategy, noise_multiplier=1.0, clipping=0.5, clip_on="client", seed=0)

    alone = train(privacy_apps.clipping_app, dp, nodes=20, rounds=10, fraction=0.5)
    secure = train(
        privacy_apps.secagg_clipping_app,
        lambda s: dp(SecAggPlus(s, num_shares=5, reconstruction_threshold=3, weighted=False)),
        nodes=20,
        rounds=10,
        fraction=0.5,
    )
    assert accuracy(secure) == pytest.approx(accuracy(alone), abs=0.01)
    assert accuracy(secure) > 0.6
    assert secure.history.metrics["train"][10][DP_EPSILON] == pytest.approx(
        alone.history.metrics["train"][10][DP_EPSILON]
    )


def test_nodes_dropping_out_of_secagg_still_count_as_sampled():
    pytest.importorskip("dp_accounting")
    result = train(
        privacy_apps.secagg_clipping_app,
        lambda s: CentralDp(
            SecAggPlus(s, num_shares=5, reconstruction_threshold=3, weighted=False),
            noise_multiplier=1.0,
            clipping=0.5,
            clip_on="client",
            seed=0,
        ),
        nodes=20,
        rounds=3,
        fraction=0.5,
        run_config={"drop-stage": "secagg-setup", "drop-partitions": "0,1,2,3,4,5"},
    )
    replies = result.history.replies["train"]
    assert all(3 <= n < 10 for n in replies.values())  # 10 sampled, some dropped out
    expected = compute_epsilon(noise_multiplier=1.0, sampling_rate=0.5, rounds=3, delta=1e-5)
    assert result.history.metrics["train"][3][DP_EPSILON] == pytest.approx(expected)


def test_local_dp_still_learns():
    result = train(privacy_apps.local_dp_app, lambda s: s, nodes=10, rounds=20)
    assert accuracy(result) >= 0.65  # 0.70 at epsilon 20 per round (0.94 without)
    assert result.history.metrics["train"][20][LDP_EPSILON] == 20.0
