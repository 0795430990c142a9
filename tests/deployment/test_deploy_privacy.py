"""The privacy tools work unchanged on a real deployment (1 SuperLink + 3 SuperNodes):
SecAgg+ gives the plain weighted mean (within its quantisation bound), and central DP with
client-side clipping clips, adds noise and reports the privacy spent."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dep_harness import Deployment
from glade_testing import app_files, one_json_document, run_glade, write_files

NODES = 3
ROUNDS = 2
SIZE = 8
CLIPPING_RANGE = 1.0  # SecAgg+: above every update value (at most 0.3 + 0.07)
QUANTIZATION_BITS = 24
DP_CLIPPING = 0.1  # central DP: below every update's norm, so every update is clipped

# The strategy is picked by run config "mode"; the final arrays go to "save-to".
SERVER = f"""
import numpy as np

from glade import ArrayRecord, ServerApp
from glade.privacy import CentralDp, SecAggPlus
from glade.strategies import FedAvg

app = ServerApp()


@app.main()
def main(grid, context):
    cfg = context.run_config
    fedavg = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes={NODES},
        min_available_nodes={NODES},
    )
    if cfg["mode"] == "secagg":
        strategy = SecAggPlus(
            fedavg,
            num_shares={NODES},
            reconstruction_threshold=2,
            clipping_range={CLIPPING_RANGE},
            quantization_bits={QUANTIZATION_BITS},
            timeout=60.0,
            seed=3,
        )
    else:
        strategy = CentralDp(
            fedavg, noise_multiplier=0.5, clipping={DP_CLIPPING}, clip_on="client", seed=3
        )
    result = strategy.start(
        grid,
        initial_arrays=ArrayRecord({{"w": np.zeros({SIZE})}}),
        num_rounds={ROUNDS},
        timeout=60.0,
        node_wait_timeout=30.0,
    )
    np.savez(cfg["save-to"], **{{k: v.numpy() for k, v in result.arrays.items()}})
"""

# Every node adds a fixed offset of its partition and reports partition + 1 examples.
CLIENT = """
import numpy as np

from glade import ArrayRecord, ClientApp, MetricRecord, RecordDict, keys
from glade.privacy import dp_clipping_mod, secaggplus_mod


def train(msg, context):
    pid = int(context.node_config["partition-id"])
    w = msg.content[keys.ARRAYS]["w"].numpy()
    offset = 0.1 * (pid + 1) + 0.01 * np.arange(w.size)
    metrics = MetricRecord({keys.NUM_EXAMPLES: pid + 1})
    return RecordDict({keys.ARRAYS: ArrayRecord({"w": w + offset}), keys.METRICS: metrics})


secagg_app = ClientApp(mods=[secaggplus_mod])
secagg_app.train()(train)
dp_app = ClientApp(mods=[dp_clipping_mod])
dp_app.train()(train)
"""


def _offset(pid: int) -> np.ndarray:
    return 0.1 * (pid + 1) + 0.01 * np.arange(SIZE)


def _project(root: Path, mode: str) -> Path:
    files = app_files(
        "privapp",
        server=SERVER,
        client=CLIENT,
        client_ref=f"privapp.client:{mode}_app",
        config={"mode": mode, "save-to": ""},
    )
    project: Path = write_files(root / f"privapp-{mode}", files)
    return project


def _run(deployment: Deployment, project: Path, saved: Path) -> dict[str, Any]:
    deployment.add_to(project)
    done = run_glade("run", ".", "dev", "--format", "json", "-c", f"save-to='{saved}'", cwd=project)
    assert done.returncode == 0, done.stderr + deployment.logs()
    doc: dict[str, Any] = one_json_document(done.stdout)
    assert doc["status"] == "completed", doc["reason"] + deployment.logs()
    assert doc["history"]["replies"]["train"] == {str(r): NODES for r in range(1, ROUNDS + 1)}
    return doc


def test_secaggplus_gives_the_weighted_mean(shared_deployment: Deployment, tmp_path: Path) -> None:
    saved = tmp_path / "secagg.npz"
    _run(shared_deployment, _project(tmp_path, "secagg"), saved)
    weights = np.arange(1, NODES + 1)
    mean = sum(w * _offset(p) for p, w in enumerate(weights)) / weights.sum()
    expected = ROUNDS * mean  # FedAvg from zeros: every round adds the same mean update
    final = np.load(saved)
    assert final.files == ["w"]
    bound = ROUNDS * CLIPPING_RANGE / (2**QUANTIZATION_BITS - 1) + 1e-12
    np.testing.assert_allclose(final["w"], expected, rtol=0, atol=bound)
    # weighted by the examples: the unweighted mean is far from it
    unweighted = ROUNDS * np.mean([_offset(p) for p in range(NODES)], axis=0)
    assert np.abs(final["w"] - unweighted).min() > 0.03


def test_central_dp_with_client_clipping_reports_epsilon(
    shared_deployment: Deployment, tmp_path: Path
) -> None:
    saved = tmp_path / "dp.npz"
    doc = _run(shared_deployment, _project(tmp_path, "dp"), saved)
    train = doc["history"]["metrics"]["train"]
    epsilons = [train[str(r)]["dp-epsilon"] for r in range(1, ROUNDS + 1)]
    assert all(eps > 0 and math.isfinite(eps) for eps in epsilons), train
    assert epsilons[0] < epsilons[1], "the budget spent grows with the rounds"
    assert all(
        train[str(r)]["dp-clipping-norm"] == pytest.approx(DP_CLIPPING)
        for r in range(1, ROUNDS + 1)
    )
    # every update (norm > 0.5) was clipped to 0.1 before the noise (std 0.5 * 0.1 / 3)
    final = np.load(saved)["w"]
    plain = ROUNDS * np.mean([_offset(p) for p in range(NODES)], axis=0)
    assert np.linalg.norm(plain) > 1.0
    assert np.linalg.norm(final) < 0.5
    assert not np.allclose(final, 0.0)
