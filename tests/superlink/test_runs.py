"""Run lifecycles through real ServerApp processes: outcomes, limits, restarts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from glade_testing import read_ready_file, wait_for
from sl_harness import Control, FakeNode, echo_app, link_config, make_bundle

from glade.superlink import SuperLink
from glade.superlink.sqlite_state import SqliteState
from glade.transport.v1 import control_pb2 as cpb
from glade.transport.v1 import run_pb2

BROKEN_IMPORT = "import glade_no_such_module_anywhere\n"


def _serverapp_pid(control: Control, run_id: int, timeout: float = 20) -> int:
    """The pid of the run's ServerApp process, once the SuperLink has logged it."""
    found = wait_for(lambda: re.findall(r"pid (\d+)", control.log(run_id)), timeout)
    assert found, control.log(run_id)
    return int(found[0])


def test_a_crashing_serverapp_fails_its_run_not_the_superlink(
    link: SuperLink, control: Control
) -> None:
    run_id = control.start(make_bundle(echo_app()), mode="crash")
    run = control.wait(run_id)
    assert run.sub_status == "failed"
    assert "exited with code 1" in run.reason and "boom on purpose" in run.reason
    log = control.log(run_id)
    assert "Traceback" in log and "RuntimeError: boom on purpose" in log
    # the SuperLink carries on
    again = control.start(make_bundle(echo_app()), mode="exit", code=0)
    assert control.wait(again).sub_status == "completed"


def test_an_import_error_fails_the_run_with_the_reason(control: Control) -> None:
    run_id = control.start(make_bundle(echo_app(BROKEN_IMPORT)))
    run = control.wait(run_id)
    assert run.sub_status == "failed" and "exited with code 2" in run.reason
    assert "glade_no_such_module_anywhere" in run.reason


def test_a_nonzero_exit_fails_the_run(control: Control) -> None:
    run = control.wait(control.start(make_bundle(echo_app()), mode="exit", code=7))
    assert run.sub_status == "failed" and "exited with code 7" in run.reason


def test_a_hanging_serverapp_fails_after_the_run_timeout(start_link) -> None:
    link = start_link(run_timeout_s=1.5)
    control = Control(link.addresses["control"])
    started = time.monotonic()
    run = control.wait(control.start(make_bundle(echo_app()), mode="hang"))
    assert 1.4 < time.monotonic() - started < 8
    assert run.sub_status == "failed" and "timeout of 1.5s" in run.reason
    assert "mode=hang" in run.reason  # the end of its log
    control.close()


def test_two_runs_at_once(link: SuperLink, control: Control) -> None:
    nodes = [FakeNode(link.addresses["fleet"]).serve() for _ in range(2)]
    try:
        config = {"min-nodes": 2, "rounds": 4}
        first = control.start(make_bundle(echo_app()), **config)
        second = control.start(make_bundle(echo_app()), **config, size=20)
        runs = [control.wait(first), control.wait(second)]
        assert [r.sub_status for r in runs] == ["completed", "completed"]
        # both ran at the same time, each with its own replies
        assert runs[0].started_at < runs[1].finished_at and runs[1].started_at < runs[0].finished_at
        assert "total=90.0" in control.log(first) and "total=380.0" in control.log(second)
        assert "total=380.0" not in control.log(first)
    finally:
        for node in nodes:
            node.close()


def test_runs_beyond_the_limit_wait_in_the_queue(start_link) -> None:
    link = start_link(max_concurrent_runs=1)
    control = Control(link.addresses["control"])
    first = control.start(make_bundle(echo_app()), mode="hang")
    second = control.start(make_bundle(echo_app()), mode="exit", code=0)
    third = control.start(make_bundle(echo_app()), mode="exit", code=0)
    control.wait_status(first, run_pb2.RUN_STATUS_RUNNING)
    time.sleep(0.3)
    assert control.run(second).status == run_pb2.RUN_STATUS_PENDING
    # a pending run can be stopped before it ever starts
    assert control.stub.StopRun(cpb.StopRunRequest(run_id=third)).stopped
    assert control.wait(third).sub_status == "stopped"
    control.stub.StopRun(cpb.StopRunRequest(run_id=first))
    assert control.wait(first).sub_status == "stopped"
    assert control.wait(second).sub_status == "completed"
    assert control.run(third).started_at == 0.0
    control.close()


LINK_MAIN = """
import sys, time
from pathlib import Path
from glade.superlink import SuperLink, SuperLinkConfig
config = SuperLinkConfig(
    control_address="127.0.0.1:0", fleet_address="127.0.0.1:0",
    serverappio_address="127.0.0.1:0", database=sys.argv[1], object_dir=Path(sys.argv[2]),
    ready_file=Path(sys.argv[3]))
SuperLink(config).start()
time.sleep(3600)
"""


def test_restart_keeps_finished_runs_and_fails_running_ones(tmp_path: Path) -> None:
    database, objects, ready = tmp_path / "state.db", tmp_path / "objects", tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", LINK_MAIN, str(database), str(objects), str(ready)]
    )
    serverapp_pid = 0
    try:
        control = Control(read_ready_file(ready, proc=proc, what="the SuperLink")["control"])
        done = control.start(make_bundle(echo_app()), mode="exit", code=0)
        assert control.wait(done).sub_status == "completed"
        hanging = control.start(make_bundle(echo_app()), mode="hang")
        serverapp_pid = _serverapp_pid(control, hanging)
        control.close()
        proc.send_signal(signal.SIGKILL)  # a crash: no chance to clean up
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if serverapp_pid and psutil.pid_exists(serverapp_pid):
            os.killpg(serverapp_pid, signal.SIGKILL)
    link = SuperLink(link_config(tmp_path, database=str(database), object_dir=objects))
    link.start()
    try:
        control = Control(link.addresses["control"])
        runs = {r.run_id: r for r in control.stub.ListRuns(cpb.ListRunsRequest()).runs}
        assert runs[done].sub_status == "completed"
        assert "finished: completed" in control.log(done)
        assert runs[hanging].status == run_pb2.RUN_STATUS_FINISHED
        assert runs[hanging].sub_status == "failed"
        assert "SuperLink restarted" in runs[hanging].reason
        assert "SuperLink restarted" in control.log(hanging)
        # and it runs new work
        new = control.start(make_bundle(echo_app()), mode="exit", code=0)
        assert new > hanging and control.wait(new).sub_status == "completed"
        control.close()
    finally:
        link.stop()


def test_stopping_the_superlink_ends_active_runs_quickly(start_link, tmp_path: Path) -> None:
    link = start_link(database=str(tmp_path / "state.db"))
    control = Control(link.addresses["control"])
    run_id = control.start(make_bundle(echo_app()), mode="hang")
    pid = _serverapp_pid(control, run_id)
    control.close()
    started = time.monotonic()
    link.stop()
    assert time.monotonic() - started < 5
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    state = SqliteState(tmp_path / "state.db")
    run = state.get_run(run_id)
    state.close()
    assert run is not None and run.sub_status == "failed" and "SuperLink stopped" in run.reason


@pytest.mark.parametrize("limit", [0, -1])
def test_config_rejects_bad_limits(tmp_path: Path, limit: int) -> None:
    from glade.errors import ConfigError

    with pytest.raises(ConfigError):
        link_config(tmp_path, max_concurrent_runs=limit)
