"""Stopping ``glade run`` with signals, including an app that refuses to stop."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from glade_testing import app_files, write_files

SERVER_APP = """
import time

from glade import RunEvent, ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    grid.report(RunEvent(kind="round-started", server_round=1, num_rounds=1))
    grid.report(RunEvent(kind="round-finished", server_round=1, num_rounds=1))
    while True:
        try:
            time.sleep(0.05)
        except KeyboardInterrupt:
            if not context.run_config["stubborn"]:
                raise
"""

CLIENT_APP = """
from glade import ClientApp

app = ClientApp()
"""


def _project(root: Path) -> Path:
    files = app_files(
        "sleepy",
        server=SERVER_APP,
        client=CLIENT_APP,
        config={"stubborn": False},
        version="0.1.0",
        modules=("server_app", "client_app"),
        federations={"local": {"num-supernodes": 2, "backend": "inline"}},
    )
    return write_files(root, files)


def _stop(proc, signum: int) -> float:
    proc.wait_for_stderr("round 1/1", timeout=60)
    sent = time.monotonic()
    proc.popen.send_signal(signum)
    proc.wait(10)
    return time.monotonic() - sent


def test_sigterm_stops_a_run_with_exit_143(tmp_path, start_glade):
    project = _project(tmp_path / "app")
    proc = start_glade("run", str(project), "--format", "json", cwd=tmp_path)
    took = _stop(proc, signal.SIGTERM)
    assert proc.popen.returncode == 143, proc.stderr
    assert took < 2.0
    doc = json.loads(proc.stdout)
    assert doc["status"] == "stopped" and isinstance(doc["run_id"], int)


def test_an_app_that_ignores_ctrl_c_is_killed_within_2_s(tmp_path, start_glade):
    project = _project(tmp_path / "app")
    proc = start_glade(
        "run", str(project), "--run-config", "stubborn=true", "--format", "json", cwd=tmp_path
    )
    took = _stop(proc, signal.SIGINT)
    assert proc.popen.returncode == 130, proc.stderr
    assert took < 2.0, f"stopping took {took:.2f} s"
    doc = json.loads(proc.stdout)  # still exactly one JSON document
    assert doc["status"] == "stopped"
    assert "did not shut down" in doc["reason"]
    assert "did not shut down" in proc.stderr
    assert proc.living_descendants() == []
