"""Construction: every option is validated with an error naming it; reprs, defaults, config."""

from __future__ import annotations

import doctest
import importlib
from typing import Any

import numpy as np
import pytest
from strat_helpers import NodesOnly

from glade import ArrayRecord, ConfigError, ConfigRecord, keys
from glade.strategies import (
    CLIENT_LR_KEY,
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedTrimmedAvg,
    FedXgbBagging,
    FedYogi,
    Krum,
    QFedAvg,
)


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (FedAvgM, {"server_momentum": 1.0}, "server_momentum"),
        (FedAvgM, {"server_momentum": -0.1}, "server_momentum"),
        (FedAvgM, {"server_learning_rate": 0.0}, "server_learning_rate"),
        (FedAdam, {"eta": -1.0}, "eta"),
        (FedAdam, {"eta_l": 0.0}, "eta_l"),
        (FedAdam, {"beta_1": 1.0}, "beta_1"),
        (FedAdam, {"beta_2": 1.5}, "beta_2"),
        (FedAdam, {"tau": 0.0}, "tau"),
        (FedYogi, {"tau": float("inf")}, "tau"),
        (FedYogi, {"beta_2": "0.9"}, "beta_2"),
        (FedAdagrad, {"eta": float("nan")}, "eta"),
        (FedAdagrad, {"beta_1": True}, "beta_1"),
        (FedTrimmedAvg, {"beta": 0.5}, "beta"),
        (FedTrimmedAvg, {"beta": -0.01}, "beta"),
        (Krum, {"num_byzantine": -1}, "num_byzantine"),
        (Krum, {"num_byzantine": 1, "num_selected": 0}, "num_selected"),
        (Krum, {"num_byzantine": 1.0}, "num_byzantine"),
        (Krum, {"num_byzantine": 2, "min_train_nodes": 6}, "min_train_nodes >= 7"),
        (Bulyan, {"num_byzantine": 1, "min_train_nodes": 6}, "min_train_nodes >= 7"),
        (Bulyan, {"num_byzantine": None}, "num_byzantine"),
        (QFedAvg, {"q": -1.0}, "q must"),
        (QFedAvg, {"client_learning_rate": 0.0}, "client_learning_rate"),
        (QFedAvg, {"loss_key": ""}, "loss_key"),
        (FedMedian, {"fraction_train": 0.0}, "fraction_train"),
    ],
)
def test_bad_options_are_config_errors_naming_the_option(
    cls: type, kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        cls(**kwargs)
    assert issubclass(ConfigError, ValueError)


def test_unknown_options_are_type_errors() -> None:
    with pytest.raises(TypeError, match="momentum"):
        FedAdam(momentum=0.9)


def test_robust_strategies_default_their_minimum_node_count() -> None:
    assert Krum(num_byzantine=2).required_nodes("train") == 7
    assert Krum(num_byzantine=1, num_selected=6).required_nodes("train") == 7
    assert Bulyan(num_byzantine=2).required_nodes("train") == 11
    assert Krum(num_byzantine=0, min_train_nodes=10).min_train_nodes == 10


def test_reprs_name_the_strategy_options() -> None:
    assert "Momentum(lr=0.5, momentum=0.8)" in repr(
        FedAvgM(server_learning_rate=0.5, server_momentum=0.8)
    )
    assert "Adam(eta=0.01, beta_1=0.9, beta_2=0.99, tau=0.001)" in repr(FedAdam())
    assert "beta=0.1" in repr(FedTrimmedAvg(beta=0.1))
    assert "num_byzantine=1, num_selected=2" in repr(Krum(num_byzantine=1, num_selected=2))
    assert "q=2.0" in repr(QFedAvg(q=2.0))
    assert repr(Bulyan(num_byzantine=1)).startswith("Bulyan(")
    assert "sum_trees=True" in repr(FedXgbBagging(sum_trees=True))


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (FedAdam(eta_l=0.05, min_available_nodes=1, min_train_nodes=1), 0.05),
        (FedYogi(eta_l=0.2, min_available_nodes=1, min_train_nodes=1), 0.2),
        (FedAdagrad(min_available_nodes=1, min_train_nodes=1), None),
        (QFedAvg(client_learning_rate=0.3, min_available_nodes=1, min_train_nodes=1), 0.3),
    ],
)
def test_client_learning_rate_travels_in_the_train_config(
    strategy: FedAvg, expected: float | None
) -> None:
    config = ConfigRecord({"epochs": 2})
    (message,) = strategy.configure_train(
        1, ArrayRecord({"w": np.zeros(1)}), config, NodesOnly([5])
    )
    sent = message.content[keys.CONFIG]
    assert sent.get(CLIENT_LR_KEY) == expected and sent["epochs"] == 2
    assert CLIENT_LR_KEY not in config  # the caller's config is not changed


def test_custom_server_optimizers_must_be_server_optimizers() -> None:
    with pytest.raises(TypeError, match="ServerOptimizer"):
        FedAvg(server_optimizer=object())  # type: ignore[arg-type]


MODULES = [
    "glade.strategies.robust",
    "glade.strategies.options",
    "glade.strategies.aggregate",
    "glade.strategies.fedavgm",
    "glade.strategies.fedopt",
    "glade.strategies.fedprox",
    "glade.strategies.fedmedian",
    "glade.strategies.fedtrimmedavg",
    "glade.strategies.krum",
    "glade.strategies.bulyan",
    "glade.strategies.qfedavg",
    "glade.strategies.fedxgb",
    "glade.strategies.checkpoint",
]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(module)
    failures, tried = doctest.testmod(mod, globs={"np": np, **vars(mod)}, report=False)
    assert tried > 0 and failures == 0
