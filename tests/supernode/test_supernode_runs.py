"""SuperNodes running ClientApps for a real (in-process) SuperLink: results and failures."""

from __future__ import annotations

import time

import psutil
import pytest
from glade_testing import start_superlink, wait_for
from sn_harness import run_and_wait

from glade.digest import content_id
from glade.message import ErrorCode
from glade.superlink.client import ControlClient
from glade.supernode.connection import GrpcConnection

SIZE = 10
BASE = sum(range(SIZE))  # sum of the server's np.arange(SIZE)


def test_nodes_answer_rounds_and_keep_their_context(superlink, control, make_app, start_node):
    fleet = superlink.addresses["fleet"]
    nodes = [start_node(fleet, partition=p) for p in (0, 1)]
    assert all(n.wait_registered(10) for n in nodes)
    run, results, log = run_and_wait(control, make_app(), {"nodes": 2, "rounds": 3})
    assert run.sub_status == "completed", log
    assert [r["round"] for r in results] == [1, 2, 3]
    expected = {str(n.node_id): p for p, n in enumerate(nodes)}
    for r in results:
        assert r["errors"] == {}
        assert {node: total for node, (total, _) in r["ok"].items()} == {
            node: BASE + SIZE * p for node, p in expected.items()
        }
        assert {calls for _, calls in r["ok"].values()} == {r["round"]}  # state kept
    # each node ran one ClientApp process for the run, and ends it once the run is over
    assert all(n.active_runs() == [run.run_id] for n in nodes)
    assert wait_for(lambda: all(not n.active_runs() for n in nodes), timeout=10)


def test_a_raising_client_app_gives_error_replies_and_the_node_stays_up(
    superlink, control, make_app, start_node
):
    node = start_node(superlink.addresses["fleet"])
    bundle = make_app()
    run, results, log = run_and_wait(control, bundle, {"client-mode": "raise"})
    assert run.sub_status == "completed", log
    (code, reason) = results[0]["errors"][str(node.node_id)]
    assert code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert "ValueError: boom in the client" in reason
    run, results, log = run_and_wait(control, bundle, {"rounds": 2})
    assert [len(r["ok"]) for r in results] == [1, 1], log


def test_a_crashing_client_app_is_restarted_with_a_fresh_context(
    superlink, control, make_app, start_node
):
    node = start_node(superlink.addresses["fleet"])
    run, results, log = run_and_wait(control, make_app(), {"client-mode": "crash", "rounds": 2})
    assert run.sub_status == "completed", log
    code, reason = results[0]["errors"][str(node.node_id)]
    assert code == ErrorCode.CLIENT_APP_CRASHED and "exit code 3" in reason
    assert results[1]["ok"][str(node.node_id)] == [BASE, 1]


def test_a_client_app_that_cannot_load_answers_with_the_reason(
    superlink, control, make_app, start_node
):
    node = start_node(superlink.addresses["fleet"])
    broken = "import no_such_module_xyz\n"
    run, results, log = run_and_wait(control, make_app(client=broken), {"rounds": 2})
    assert run.sub_status == "completed", log
    for r in results:
        code, reason = r["errors"][str(node.node_id)]
        assert code == ErrorCode.LOAD_CLIENT_APP
        assert "no_such_module_xyz" in reason


class _TamperedBundles(GrpcConnection):
    """Hands out an app bundle whose bytes do not match its id."""

    def fetch_object(self, node_id, object_id, *, max_size):
        data = bytearray(super().fetch_object(node_id, object_id, max_size=max_size))
        data[-1] ^= 0xFF
        return memoryview(bytes(data))


def test_a_bundle_that_does_not_match_its_hash_is_refused(superlink, control, make_app, tmp_path):
    from glade.supernode import SuperNode, SuperNodeConfig

    fleet = superlink.addresses["fleet"]
    config = SuperNodeConfig(superlink=fleet, data_dir=tmp_path / "node", poll_wait_s=2.0)
    connection = _TamperedBundles(
        fleet, chunk_size=config.chunk_size, max_object_size=config.max_object_size
    )
    with SuperNode(config, connection=connection) as node:
        _, results, _ = run_and_wait(control, make_app())
        code, reason = results[0]["errors"][str(node.node_id)]
    assert code == ErrorCode.LOAD_CLIENT_APP
    assert "bad app bundle" in reason and "not the bundle id" in reason
    assert not list((tmp_path / "node" / "apps").glob("*")), "nothing unverified is cached"


def test_stop_is_prompt_even_with_a_busy_client_app(superlink, control, make_app, start_node):
    node = start_node(superlink.addresses["fleet"])
    control.upload_bundle(bundle := make_app())
    control.start_run(bundle.bundle_id, run_config={"client-mode": "sleep", "sleep": 60.0})
    assert wait_for(lambda: node.worker_pids(), timeout=30)
    workers = [psutil.Process(pid) for pid in node.worker_pids()]
    started = time.monotonic()
    node.stop(grace=3.0)
    assert time.monotonic() - started < 5.0
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


@pytest.mark.parametrize("size", [100_000])  # 400 kB: arrays travel as streamed objects
def test_large_arrays_travel_as_objects(superlink, control, make_app, start_node, size):
    nodes = [start_node(superlink.addresses["fleet"], partition=p) for p in (0, 1)]
    run, results, log = run_and_wait(control, make_app(), {"nodes": 2, "size": size})
    assert run.sub_status == "completed", log
    base = float(sum(range(size)))
    totals = sorted(total for total, _ in results[0]["ok"].values())
    assert totals == pytest.approx([base, base + size], rel=1e-6)
    assert len(nodes) == 2


def test_an_instruction_offered_again_while_in_progress_is_not_run_or_pulled_twice(
    make_app, start_node, monkeypatch
):
    """A lease shorter than the ClientApp's work: the SuperLink offers the instruction
    again, and the node, still working on it, neither downloads its arrays again nor runs it."""

    import numpy as np

    import glade.supernode.connection as connection

    pulled: list[str] = []
    real = connection.pull_object

    def counting(stub, object_id, **kwargs):
        pulled.append(object_id)
        return real(stub, object_id, **kwargs)

    monkeypatch.setattr(connection, "pull_object", counting)  # the in-process node's downloads
    link = start_superlink(message_lease_s=0.3)
    control = ControlClient(link.addresses["control"])
    try:
        node = start_node(link.addresses["fleet"], poll_wait_s=0.2)
        size = 100_000
        model = content_id(np.arange(size, dtype=np.float32).tobytes())
        config = {"size": size, "client-mode": "sleep", "sleep": 2.0}
        run, results, log = run_and_wait(control, make_app(), config)
        node.stop(grace=2.0)
    finally:
        control.close()
        link.stop(grace=1.0)
    assert run.sub_status == "completed", log
    assert results[0]["ok"][str(node.node_id)][1] == 1  # run once
    assert pulled.count(model) == 1
