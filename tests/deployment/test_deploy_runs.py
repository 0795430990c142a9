"""Runs on a real deployment (1 SuperLink + 3 SuperNodes) through the ``glade`` CLI: the
quickstart to completion, two runs at once, ``glade ls``, ``glade log``, ``glade stop``."""

from __future__ import annotations

import json
import time

from glade_testing import one_json_document, run_glade

from glade.cli.remote import run_status
from glade.superlink.client import ControlClient


def test_quickstart_runs_to_completion(shared_deployment, quickstart):
    shared_deployment.add_to(quickstart)
    plot = quickstart / "metrics.png"
    done = run_glade(
        "run",
        str(quickstart),
        "dev",
        "--format",
        "json",
        "--plot",
        str(plot),
        cwd=quickstart.parent,
    )
    assert done.returncode == 0, done.stderr + shared_deployment.logs()
    doc = one_json_document(done.stdout)
    assert doc["status"] == "completed", doc["reason"]
    evaluate = doc["history"]["metrics"]["evaluate"]
    assert sorted(evaluate, key=int) == [str(r) for r in range(1, 11)]
    assert evaluate["10"]["accuracy"] >= 0.90, evaluate
    assert all(n == 0 for n in doc["history"]["failures"]["evaluate"].values())
    assert set(doc["history"]["replies"]["evaluate"].values()) == {3}  # every node answered
    run_id = doc["run_id"]
    # the log was streamed to stderr while the run went on
    assert f"Run {run_id} submitted to federation 'dev'" in done.stderr
    assert f"[superlink] run {run_id} started" in done.stderr
    assert f"run {run_id} finished: completed" in done.stderr
    # --plot: the run's metrics per round, saved once it finished
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Saved the metric plot to {plot}" in done.stderr


def _ls(project, *args: str) -> dict:
    done = run_glade("ls", "dev", "--app", str(project), "--format", "json", *args, cwd=project)
    assert done.returncode == 0, done.stderr
    return one_json_document(done.stdout)


def _wait_status(deployment, run_id: int, wanted: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    with ControlClient(deployment.addresses["control"]) as control:
        while True:
            status = run_status(control.get_run(run_id)[0])
            if status in wanted or time.monotonic() > deadline:
                return status
            time.sleep(0.2)


def test_two_runs_at_once_with_ls_log_and_stop(shared_deployment, fault_app):
    shared_deployment.add_to(fault_app)
    cwd = fault_app
    long = run_glade("run", ".", "dev", "--detach", "-c", "num-server-rounds=100000", cwd=cwd)
    short = run_glade("run", ".", "dev", "--detach", "-c", "num-server-rounds=3", cwd=cwd)
    assert long.returncode == 0 and short.returncode == 0, long.stderr + short.stderr
    long_id, short_id = int(long.stdout.strip()), int(short.stdout.strip())
    assert f"glade log {long_id} dev --follow" in long.stderr

    # the short run completes while the long one runs alongside it
    status = _wait_status(shared_deployment, short_id, {"completed", "failed"}, timeout=120)
    doc = _ls(cwd, "--run-id", str(short_id))
    assert status == doc["status"] == "completed", doc["reason"] + shared_deployment.logs()
    assert doc["history"]["replies"]["train"] == {"1": 3, "2": 3, "3": 3}
    assert _wait_status(shared_deployment, long_id, {"running"}, timeout=0) == "running"

    # the table lists both; the JSON form too
    table = run_glade("ls", "dev", cwd=cwd)
    assert table.returncode == 0, table.stderr
    for run_id in (long_id, short_id):
        assert str(run_id) in table.stdout
    assert "completed" in table.stdout and "running" in table.stdout

    # glade log: the whole log of a finished run
    log = run_glade("log", str(short_id), "dev", cwd=cwd)
    assert log.returncode == 0, log.stderr
    assert f"[superlink] run {short_id} started" in log.stdout
    assert f"run {short_id} finished: completed" in log.stdout

    # glade stop: the long run ends as stopped, and says so in its log
    stop = run_glade("stop", str(long_id), "dev", cwd=cwd)
    assert stop.returncode == 0, stop.stderr
    assert f"Run {long_id} stopped." in stop.stdout
    assert _wait_status(shared_deployment, long_id, {"stopped"}, timeout=30) == "stopped"
    doc = _ls(cwd, "--run-id", str(long_id))
    assert doc["status"] == "stopped" and doc["reason"] == "stopped by a user"
    assert doc["history"]["replies"].get("train"), "it made progress before the stop"
    follow = run_glade("log", str(long_id), "dev", "--follow", cwd=cwd, timeout=30)
    assert f"run {long_id} finished: stopped" in follow.stdout


def test_run_detached_in_json_and_errors_for_unknown_runs(shared_deployment, quickstart):
    shared_deployment.add_to(quickstart)
    done = run_glade(
        "run",
        ".",
        "dev",
        "--detach",
        "--format",
        "json",
        "-c",
        "num-server-rounds=1",
        cwd=quickstart,
    )
    assert done.returncode == 0, done.stderr
    doc = one_json_document(done.stdout)
    assert doc["status"] in ("pending", "starting", "running") and doc["run_id"] > 0
    assert doc["app"].endswith("/q") and doc["run_config"]["num-server-rounds"] == 1
    for command in (("log", "424242", "dev"), ("stop", "424242", "dev")):
        bad = run_glade(*command, cwd=quickstart)
        assert bad.returncode == 1, bad.stderr
        assert "unknown run id 424242" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_glade("ls", "dev", "--run-id", "424242", cwd=quickstart)
    assert bad.returncode == 1 and "unknown run id 424242" in bad.stderr
    assert json.loads(run_glade("ls", "dev", "--format", "json", cwd=quickstart).stdout)["runs"]


def test_a_serverapp_that_cannot_be_imported_fails_its_run_with_the_reason(
    shared_deployment, quickstart
):
    shared_deployment.add_to(quickstart)
    text = (quickstart / "pyproject.toml").read_text()
    (quickstart / "pyproject.toml").write_text(text.replace("q.server_app:app", "q.nowhere:app"))
    done = run_glade("run", ".", "dev", "--format", "json", cwd=quickstart)
    assert done.returncode == 1, done.stderr
    doc = one_json_document(done.stdout)
    assert doc["status"] == "failed"
    assert "exited with code 2" in doc["reason"] and "q.nowhere" in doc["reason"]
    assert f"Error: run {doc['run_id']} failed" in done.stderr and "Traceback" not in done.stderr
