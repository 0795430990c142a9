"""Faults on a real deployment: a SuperNode killed mid-round or restarted, the SuperLink
restarted, the SuperLink unreachable; SIGTERM stops each service within 5 s."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from glade_testing import one_json_document, run_glade, wait_for

from glade.cli.remote import run_status
from glade.superlink.client import ControlClient

STOP_LIMIT_S = 5.0


def _wait(predicate, timeout: float, what: str):
    value = wait_for(predicate, timeout, interval=0.1)
    assert value, f"timed out waiting for {what}"
    return value


def _finished(deployment, run_id: int, timeout: float):
    with ControlClient(deployment.addresses["control"]) as control:

        def done():
            run = control.get_run(run_id)[0]
            return run if run.status == "finished" else None

        return _wait(done, timeout, f"run {run_id} to finish\n{deployment.logs()}")


def _online(deployment) -> set[int]:
    with ControlClient(deployment.addresses["control"]) as control:
        return {n.node_id for n in control.list_nodes() if n.online}


def _submit(project: Path, config: str) -> int:
    done = run_glade("run", ".", "dev", "--detach", "-c", config, cwd=project)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.parametrize(
    ("min_nodes", "outcome"), [(2, "completed"), pytest.param(3, "failed", marks=pytest.mark.slow)]
)
def test_a_supernode_killed_mid_round(deploy, fault_app, tmp_path, min_nodes, outcome):
    deployment = deploy(num_nodes=3)
    deployment.add_to(fault_app)
    marker = tmp_path / "busy"
    run_id = _submit(
        fault_app,
        f"min-nodes={min_nodes} node-wait=3.0 slow-partition=2 slow-seconds=60.0 marker='{marker}'",
    )
    _wait(marker.exists, 60, "node 2 to be busy in round 1")
    deployment.nodes[2].kill()  # the SuperNode and its ClientApp process, mid-round
    run = _finished(deployment, run_id, timeout=60)
    assert run.sub_status == outcome, run.reason + deployment.logs()
    history = json.loads(run.history_json)
    assert history["failures"]["train"]["1"] == 1  # the lost node, answered NODE_UNAVAILABLE
    log = run_glade("log", str(run_id), "dev", cwd=fault_app).stdout
    if outcome == "completed":  # the other rounds went on with the remaining nodes
        assert history["replies"]["train"] == {"1": 2, "2": 2, "3": 2}
        assert "FINAL [3.0, 3.0, 3.0, 3.0]" in log
    else:  # the strategy needs 3 nodes: a clear reason once its wait times out
        assert "at least 3 nodes" in run.reason and "only 2 are connected" in run.reason


def test_a_restarted_supernode_rejoins_as_itself(deploy, fault_app):
    deployment = deploy(num_nodes=2)
    deployment.add_to(fault_app)
    before = dict(deployment.ids)
    took = deployment.nodes[1].terminate()
    assert took < STOP_LIMIT_S
    output = deployment.nodes[1].stderr
    assert "SuperNode" in output and "stopped" in output
    assert _wait(lambda: _online(deployment) == {before[0]}, 10, "node 1 to leave")
    deployment.start_node(1)  # at once: the long-poll it cancelled leases nothing meanwhile
    assert deployment.ids == before
    assert _online(deployment) == set(before.values())
    run = _finished(deployment, _submit(fault_app, "num-server-rounds=2"), timeout=60)
    assert run.sub_status == "completed", run.reason + deployment.logs()
    assert json.loads(run.history_json)["replies"]["train"] == {"1": 2, "2": 2}


def test_a_restarted_superlink_keeps_its_runs_and_the_nodes_come_back(deploy, fault_app, tmp_path):
    deployment = deploy(num_nodes=2)
    deployment.add_to(fault_app)
    ids = set(deployment.ids.values())
    finished = _finished(deployment, _submit(fault_app, "num-server-rounds=1"), timeout=60)
    assert finished.sub_status == "completed", finished.reason
    marker = tmp_path / "busy"
    running = _submit(fault_app, f"slow-partition=0 slow-seconds=60.0 marker='{marker}'")
    _wait(marker.exists, 60, "the second run to be in a round")

    assert deployment.link is not None
    assert deployment.link.terminate() < STOP_LIMIT_S
    deployment.start_superlink(same_ports=True)
    assert _wait(lambda: _online(deployment) == ids, 20, "the nodes to reconnect")

    listed = one_json_document(run_glade("ls", "dev", "--format", "json", cwd=fault_app).stdout)[
        "runs"
    ]
    status = {r["run_id"]: (r["status"], r["reason"]) for r in listed}
    assert status[finished.run_id] == ("completed", "")
    assert status[running][0] == "failed" and "SuperLink" in status[running][1]
    log = run_glade("log", str(finished.run_id), "dev", cwd=fault_app)
    assert f"run {finished.run_id} finished: completed" in log.stdout
    stop = run_glade("stop", str(finished.run_id), "dev", cwd=fault_app)
    assert stop.returncode == 0 and "already finished (completed)" in stop.stdout
    # and the federation works again, without anybody restarting the nodes
    again = _finished(deployment, _submit(fault_app, "num-server-rounds=1"), timeout=60)
    assert again.sub_status == "completed", again.reason + deployment.logs()
    with ControlClient(deployment.addresses["control"]) as control:
        assert run_status(control.get_run(running)[0]) == "failed"


def test_an_unreachable_superlink_or_a_missing_insecure_flag_is_one_clear_error(fault_app):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens here once the socket is closed
    pyproject = fault_app / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + f'\n[tool.glade.federations.dev]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
        + '\n[tool.glade.federations.tls]\naddress = "127.0.0.1:1"\n'
    )
    for args in (("run", ".", "dev"), ("ls", "dev"), ("log", "1", "dev"), ("stop", "1", "dev")):
        done = run_glade(*args, cwd=fault_app)
        assert done.returncode == 4, (args, done.stderr)
        assert f"cannot reach the SuperLink of federation 'dev' at 127.0.0.1:{port}" in done.stderr
        assert "Traceback" not in done.stderr
    done = run_glade("run", ".", "tls", cwd=fault_app)
    assert done.returncode == 2 and "insecure = true" in done.stderr
    done = run_glade("ls", "local", cwd=fault_app)
    assert done.returncode == 2 and "is a local simulation" in done.stderr
