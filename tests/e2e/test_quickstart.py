"""The NumPy quickstart through the real CLI: ``glade new`` + ``glade run`` (local backend)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

TIME_LIMIT_S = 30.0  # the quickstart's promise, worker start-up included


@pytest.fixture
def quickstart(tmp_path, start_glade) -> Path:
    proc = start_glade("new", "quickstart", "--framework", "numpy", cwd=tmp_path)
    assert proc.wait(60) == 0, proc.stderr
    assert (tmp_path / "quickstart" / "quickstart" / "client_app.py").is_file()
    return tmp_path


def test_quickstart_reaches_90_percent_in_under_30_s(quickstart, start_glade):
    started = time.monotonic()
    proc = start_glade("run", "quickstart", "--format", "json", cwd=quickstart)
    code = proc.wait(120)
    took = time.monotonic() - started
    assert code == 0, proc.stderr
    doc = json.loads(proc.stdout)  # exactly one JSON document, nothing else on stdout
    assert doc["status"] == "completed", doc["reason"]
    evaluate = doc["history"]["metrics"]["evaluate"]
    assert sorted(evaluate, key=int) == [str(r) for r in range(1, 11)]
    assert evaluate["10"]["accuracy"] >= 0.90, evaluate
    assert set(doc["history"]["metrics"]["train"]) == set(evaluate)
    assert all(n == 0 for n in doc["history"]["failures"]["evaluate"].values())
    assert took < TIME_LIMIT_S, f"the quickstart took {took:.1f} s"
    assert "'local' backend" in proc.stderr  # the default backend: worker processes
    assert proc.descendants, "the local backend should have started worker processes"
    assert proc.living_descendants() == []


def test_ctrl_c_stops_within_2_s_with_exit_130_and_no_orphans(quickstart, start_glade):
    proc = start_glade(
        "run",
        "quickstart",
        "--run-config",
        "num-server-rounds=1000000",
        "--format",
        "json",
        cwd=quickstart,
    )
    proc.wait_for_stderr("round 2/1000000", timeout=90)
    assert proc.descendants
    sent = time.monotonic()
    proc.popen.send_signal(signal.SIGINT)
    code = proc.wait(10)
    took = time.monotonic() - sent
    assert code == 130, proc.stderr
    assert took < 2.0, f"stopping took {took:.2f} s"
    doc = json.loads(proc.stdout)
    assert doc["status"] == "stopped"
    assert len(doc["history"]["metrics"]["train"]) >= 2
    assert "Stopped" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.living_descendants() == []
