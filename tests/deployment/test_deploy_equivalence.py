"""The same app and seed give the same final arrays on a deployment as in simulation."""

from __future__ import annotations

import numpy as np
from glade_testing import one_json_document, run_glade

from glade.project import ProjectConfig
from glade.simulation import run_simulation

# The template's ServerApp, unchanged, plus saving its final arrays (run config "save-to").
SAVING_SERVER = '''
"""The quickstart's ServerApp, saving its final arrays where run config 'save-to' says."""

import numpy as np

from glade import ServerApp
from q.server_app import app as template_app

app = ServerApp()


@app.main()
def main(grid, context):
    arrays = template_app(grid, context)
    if context.run_config["save-to"]:
        np.savez(context.run_config["save-to"], **{k: v.numpy() for k, v in arrays.items()})
    return arrays
'''

NODES = 3
SEED = 7
# fraction-train=1: the template's FedAvg samples without a seed, so every node trains.
RUN_CONFIG = {"num-server-rounds": 3, "fraction-train": 1.0}


def _saving_project(project):
    (project / "q" / "saving_server.py").write_text(SAVING_SERVER)
    text = (project / "pyproject.toml").read_text()
    text = text.replace("q.server_app:app", "q.saving_server:app")
    text = text.replace("[tool.glade.app.config]\n", '[tool.glade.app.config]\nsave-to = ""\n')
    (project / "pyproject.toml").write_text(text)


def test_same_final_arrays_as_the_simulation(quickstart, deploy, tmp_path):
    _saving_project(quickstart)
    simulated = run_simulation(
        "q.saving_server:app",
        "q.client_app:app",
        num_supernodes=NODES,
        seed=SEED,
        app_dir=quickstart,
        backend="local",
        backend_config={"num_workers": 1},
        run_config={**ProjectConfig.from_dir(quickstart).run_config, **RUN_CONFIG},
    )
    assert simulated.status == "completed", simulated.reason
    # The deployment's nodes join with the simulation's node ids and partitions, so that
    # the strategy samples and orders them the same way.
    deployment = deploy(num_nodes=NODES, node_ids=simulated.node_ids)
    assert [deployment.ids[i] for i in range(NODES)] == simulated.node_ids
    deployment.add_to(quickstart)
    saved = tmp_path / "deployed.npz"
    overrides = " ".join(f"{k}={v}" for k, v in RUN_CONFIG.items())
    done = run_glade(
        "run",
        ".",
        "dev",
        "--format",
        "json",
        "-c",
        f"{overrides} save-to='{saved}'",
        cwd=quickstart,
    )
    assert done.returncode == 0, done.stderr + deployment.logs()
    assert one_json_document(done.stdout)["status"] == "completed"
    deployed = np.load(saved)
    expected = {k: v.numpy() for k, v in simulated.return_value.items()}
    assert sorted(deployed.files) == sorted(expected) == ["bias", "weights"]
    for name, array in expected.items():
        np.testing.assert_array_equal(deployed[name], array)
    assert not np.array_equal(expected["weights"], np.zeros_like(expected["weights"]))
