"""Fixtures for the end-to-end deployment tests (real processes; see dep_harness.py)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dep_harness import Deployment
from glade_testing import app_files, run_glade, write_files

# A quick app for fault tests (NumPy only): FedAvg over "w" (+1 per round on every node);
# the node with partition-id == slow-partition writes a marker file and sleeps in its
# slow-round, so a test can act while a round is in flight.
FAULT_SERVER = """
import numpy as np

from glade import ArrayRecord, ServerApp
from glade.strategies import FedAvg

app = ServerApp()


@app.main()
def main(grid, context):
    cfg = context.run_config
    n = int(cfg["min-nodes"])
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=n,
        min_available_nodes=n,
    )
    result = strategy.start(
        grid,
        initial_arrays=ArrayRecord({"w": np.zeros(4, dtype=np.float32)}),
        num_rounds=int(cfg["num-server-rounds"]),
        timeout=float(cfg["round-timeout"]),
        node_wait_timeout=float(cfg["node-wait"]),
    )
    print("FINAL", result.arrays["w"].numpy().tolist(), flush=True)
"""

FAULT_CLIENT = """
import os
import time
from pathlib import Path

from glade import ArrayRecord, ClientApp, MetricRecord, RecordDict, keys

app = ClientApp()


@app.train()
def train(msg, context):
    cfg = context.run_config
    partition = int(context.node_config["partition-id"])
    server_round = int(msg.content[keys.CONFIG][keys.SERVER_ROUND])
    if partition == cfg["slow-partition"] and server_round == cfg["slow-round"]:
        Path(cfg["marker"]).write_text(str(os.getpid()))
        time.sleep(float(cfg["slow-seconds"]))
    arrays = {k: v.numpy() + 1.0 for k, v in msg.content[keys.ARRAYS].items()}
    metrics = MetricRecord({keys.NUM_EXAMPLES: 10})
    return RecordDict({keys.ARRAYS: ArrayRecord(arrays), keys.METRICS: metrics})
"""

FAULT_CONFIG = {
    "num-server-rounds": 3,
    "min-nodes": 2,
    "round-timeout": 60.0,
    "node-wait": 30.0,
    "slow-partition": -1,
    "slow-round": 1,
    "slow-seconds": 0.0,
    "marker": "",
}


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """``deploy(num_nodes=3, node_ids=None)``: a started deployment, stopped at the end."""
    started: list[Deployment] = []

    def start(**options: Any) -> Deployment:
        root = tmp_path / f"deployment-{len(started)}"
        deployment = Deployment(root=root, **options)
        started.append(deployment)
        return deployment.start()

    yield start
    for deployment in started:
        deployment.stop()


@pytest.fixture(scope="module")
def shared_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One SuperLink + 3 SuperNodes for the tests of a module."""
    deployment = Deployment(root=tmp_path_factory.mktemp("shared")).start()
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def quickstart_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The NumPy quickstart project, made once per module by ``glade new``."""
    root = tmp_path_factory.mktemp("template")
    done = run_glade("new", "q", "--framework", "numpy", cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr
    return root / "q"


@pytest.fixture
def quickstart(quickstart_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the quickstart project (tests add federations to it)."""
    return Path(shutil.copytree(quickstart_template, tmp_path / "q"))


@pytest.fixture
def fault_app(tmp_path: Path) -> Path:
    files = app_files("faultapp", server=FAULT_SERVER, client=FAULT_CLIENT, config=FAULT_CONFIG)
    return write_files(tmp_path / "faultapp", files)


@pytest.fixture(autouse=True)
def _forget_imported_apps() -> Iterator[None]:
    """Tests that import an app in this process (the simulation side) leave no trace."""
    before = set(sys.modules)
    path = list(sys.path)
    yield
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("q", "faultapp"):
            del sys.modules[name]
    sys.path[:] = path
