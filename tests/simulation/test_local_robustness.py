"""The local backend under failure: crashes, hangs, bad apps, Ctrl-C, a dying parent."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from glade_testing import living, wait_for
from sim_harness import HERE, SPEC, StartBackend, make_nodes

from glade import AppLoadError, ArrayRecord, ErrorCode, Message, RecordDict, keys
from glade.simulation import ClientAppSpec
from glade.simulation.local import LocalBackend


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _model() -> RecordDict:
    return RecordDict({keys.ARRAYS: ArrayRecord({"w": np.zeros(100_000, dtype=np.float32)})})


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
def test_a_crashed_worker_fails_its_pending_messages_and_is_restarted(
    start_backend: StartBackend,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    pidfd: bool,
) -> None:
    if not pidfd:  # as on macOS: exits are seen by end of file and polling
        monkeypatch.setattr("glade.simulation.process._pidfd_open", lambda pid: None)
    harness = start_backend(nodes=4)  # worker 0: nodes 100, 102; worker 1: nodes 101, 103
    assert all(r.has_content for r in harness.to_all("train", _model()).values())
    old_pids = set(harness.backend.worker_pids())
    with caplog.at_level(logging.WARNING, logger="glade.simulation.local"):
        replies = harness.send(
            [(100, "query.crash", RecordDict()), (102, "train", _model()), (101, "train", _model())]
        )
    assert replies[100].error is not None
    assert replies[100].error.code == ErrorCode.CLIENT_APP_CRASHED
    assert "node 100" in replies[100].error.reason
    assert "exit code 3" in replies[100].error.reason
    assert replies[102].error is not None
    assert replies[102].error.code == ErrorCode.CLIENT_APP_CRASHED
    assert "node 102" in replies[102].error.reason
    assert replies[101].content[keys.METRICS]["calls"] == 2  # the other worker carries on
    assert "restarting" in caplog.text
    # The run goes on: worker 0 was restarted with fresh Contexts for its nodes.
    replies = harness.to_all("train", _model())
    calls = {node: r.content[keys.METRICS]["calls"] for node, r in replies.items()}
    assert calls == {100: 1, 101: 3, 102: 1, 103: 2}
    new_pids = set(harness.backend.worker_pids())
    assert len(new_pids - old_pids) == 1
    [crashed] = old_pids - new_pids
    assert crashed not in _children()  # reaped


def test_a_hanging_handler_times_out_and_shutdown_stays_quick(
    start_backend: StartBackend,
) -> None:
    before = _children()
    harness = start_backend(nodes=2)
    started = time.monotonic()
    replies = harness.send(
        [(100, "query.hang", RecordDict()), (101, "query.pid", RecordDict())], timeout=1.0
    )
    took = time.monotonic() - started
    assert sorted(replies) == [101]
    assert 0.9 < took < 5.0
    # More work for the stuck worker must not block the caller either.
    started = time.monotonic()
    harness.backend.submit([Message(_model(), dst_node_id=100) for _ in range(20)])
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    harness.backend.shutdown()
    assert time.monotonic() - started < 1.5
    assert _children() - before == set()


def test_shutdown_leaves_no_process_and_no_shared_memory(start_backend: StartBackend) -> None:
    before = _children()
    harness = start_backend(nodes=3)
    harness.to_all("train", _model())
    pids = harness.backend.worker_pids()
    run_dir = Path(harness.backend.run_dir)
    assert run_dir.is_dir() and set(pids) <= _children()
    harness.backend.shutdown()
    harness.backend.shutdown()  # idempotent
    assert _children() - before == set()
    assert not run_dir.exists()


def test_a_client_app_that_fails_to_import_fails_start(tmp_path: Path) -> None:
    (tmp_path / "broken_client_module.py").write_text(
        "raise RuntimeError('this module cannot be imported')\n"
    )
    before = _children()
    backend = LocalBackend(num_workers=2)
    spec = ClientAppSpec(ref="broken_client_module:app", app_dir=str(tmp_path))
    with pytest.raises(AppLoadError, match="this module cannot be imported"):
        backend.start(
            client_app=spec, nodes=make_nodes(3), run_id=1, run_config={}, on_replies=print
        )
    assert _children() - before == set()
    assert backend.run_dir is not None and not Path(backend.run_dir).exists()


def test_shutdown_during_start_ends_the_start_at_once(tmp_path: Path) -> None:
    (tmp_path / "slow_client_module.py").write_text("import time\ntime.sleep(60)\n")
    before = _children()
    backend = LocalBackend(num_workers=2)  # startup_timeout: 300 s
    spec = ClientAppSpec(ref="slow_client_module:app", app_dir=str(tmp_path))
    failed: list[BaseException] = []

    def start() -> None:
        try:
            backend.start(
                client_app=spec, nodes=make_nodes(2), run_id=1, run_config={}, on_replies=print
            )
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    assert wait_for(lambda: len(backend.worker_pids()) == 2, 30)  # importing, for a minute
    started = time.monotonic()
    backend.shutdown()
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - started < 5.0
    assert len(failed) == 1 and isinstance(failed[0], RuntimeError)
    assert "shut down" in str(failed[0])
    assert living(_children() - before, grace=3) == []
    assert backend.run_dir is not None and not Path(backend.run_dir).exists()


def test_shutdown_before_start_makes_start_fail_without_leftovers() -> None:
    backend = LocalBackend(num_workers=1)
    backend.shutdown()
    with pytest.raises(RuntimeError):
        backend.start(
            client_app=SPEC, nodes=make_nodes(1), run_id=1, run_config={}, on_replies=print
        )
    assert backend.run_dir is None and backend.worker_pids() == []


def test_a_missing_client_app_module_fails_start() -> None:
    backend = LocalBackend(num_workers=1)
    spec = ClientAppSpec(ref="no_such_client_module_xyz:app")
    with pytest.raises(AppLoadError, match="no_such_client_module_xyz"):
        backend.start(
            client_app=spec, nodes=make_nodes(1), run_id=1, run_config={}, on_replies=print
        )


def test_workers_ignore_ctrl_c(start_backend: StartBackend) -> None:
    harness = start_backend(nodes=2)
    for pid in harness.backend.worker_pids():
        os.kill(pid, signal.SIGINT)
    time.sleep(0.2)
    replies = harness.to_all("query.pid")
    assert sorted(r.content[keys.METRICS]["pid"] for r in replies.values()) == sorted(
        harness.backend.worker_pids()
    )


_ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys
    from glade.simulation import ClientAppSpec, NodeSpec
    from glade.simulation.local import LocalBackend

    backend = LocalBackend(num_workers=2)
    nodes = [NodeSpec(i + 1, {{}}) for i in range(2)]
    spec = ClientAppSpec(ref="sim_apps:app", app_dir={app_dir!r})
    backend.start(client_app=spec, nodes=nodes, run_id=1, run_config={{}},
                  on_replies=lambda replies: None)
    print(backend.run_dir, *backend.worker_pids(), flush=True)
    sys.stdin.read()  # until killed
    """
)


def test_workers_exit_and_clean_up_when_the_parent_dies(tmp_path: Path) -> None:
    script = tmp_path / "orphan_parent.py"
    script.write_text(_ORPHAN_SCRIPT.format(app_dir=str(HERE)))
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        run_dir, *pids = parent.stdout.readline().split()
        workers = [psutil.Process(int(pid)) for pid in pids]
        assert len(workers) == 2 and Path(run_dir).is_dir()
        parent.kill()  # no shutdown, no atexit: the workers are on their own
        parent.wait(10)
        _gone, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == []
        assert not Path(run_dir).exists()
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait(10)
        assert parent.stdin is not None and parent.stdout is not None
        parent.stdin.close()
        parent.stdout.close()


_MAIN_SCRIPT = textwrap.dedent(
    """
    from glade import ClientApp, Message, MetricRecord, RecordDict, ServerApp
    from glade.simulation import run_simulation

    client = ClientApp()


    @client.query()
    def answer(msg, context):  # defined in __main__: the workers import this script
        return RecordDict({"metrics": MetricRecord({"answer": 42})})


    server = ServerApp()


    @server.main()
    def main(grid, context):
        messages = [Message(RecordDict(), dst_node_id=n, message_type="query")
                    for n in grid.get_node_ids()]
        return [r.content["metrics"]["answer"] for r in grid.send_and_receive(messages)]


    if __name__ == "__main__":
        result = run_simulation(server, client, num_supernodes=3, backend="local",
                                backend_config={"num_workers": 2})
        print(result.status, result.return_value, result.reason)
    """
)


def test_a_client_app_defined_in_the_main_script(tmp_path: Path) -> None:
    script = tmp_path / "main_script.py"
    script.write_text(_MAIN_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:4] == ["completed", "[42,", "42,", "42]"], proc.stdout


def test_a_worker_that_cannot_be_restarted_fails_its_nodes_messages(
    start_backend: StartBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = start_backend(nodes=2)

    def no_more_processes(*args: object, **kwargs: object) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr("glade.simulation.local.WorkerProcess", no_more_processes)
    replies = harness.send([(100, "query.crash", RecordDict()), (101, "query.pid", RecordDict())])
    assert replies[100].error is not None and "exit code 3" in replies[100].error.reason
    assert replies[101].has_content
    replies = harness.to_all("query.pid")  # node 100's worker is gone for good
    assert replies[100].error is not None
    assert replies[100].error.code == ErrorCode.CLIENT_APP_CRASHED
    assert "could not be restarted" in replies[100].error.reason
    assert replies[101].has_content
