"""SuperNodes moving a round's arrays over the SuperLink's bulk port (plain and mutual TLS)."""

from __future__ import annotations

from pathlib import Path

import pytest
from glade_testing import start_mutual_tls_superlink, start_superlink, wait_for
from sn_harness import run_and_wait

from glade.array import Array
from glade.superlink.client import ControlClient
from glade.supernode.connection import GrpcConnection
from glade.transport.bulk import MIN_BULK_BYTES
from glade.transport.tls import create_dev_certificates

SIZE = MIN_BULK_BYTES // 4 + 1000  # float32s: just above the bulk threshold


def _expected(partition: int) -> float:
    return float(sum(range(SIZE)) + partition * SIZE)


def test_a_round_moves_its_arrays_over_the_bulk_port(start_node, make_app) -> None:
    link = start_superlink(bulk=True)
    try:
        bulk_node = start_node(link.addresses["fleet"], partition=1)
        grpc_node = start_node(link.addresses["fleet"], partition=2, bulk=False)
        assert bulk_node.wait_registered(10) and grpc_node.wait_registered(10)
        with ControlClient(link.addresses["control"]) as control:
            run, results, log = run_and_wait(control, make_app(), {"size": SIZE, "nodes": 2})
        assert run.sub_status == "completed", log
        ok = results[0]["ok"]
        assert ok[str(bulk_node.node_id)][0] == pytest.approx(_expected(1), rel=1e-6)
        assert ok[str(grpc_node.node_id)][0] == pytest.approx(_expected(2), rel=1e-6)
        assert link.bulk is not None
        assert wait_for(lambda: link.bulk.transfers == 2, 5)  # the model down, the reply up
    finally:
        link.stop(grace=1.0)


def test_bulk_transfers_speak_tls_with_client_certificates(
    tmp_path: Path, start_node, make_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_uploads = _node_uploads(monkeypatch)
    certs = create_dev_certificates(tmp_path / "certs")
    link = start_mutual_tls_superlink(certs)
    try:
        node = start_node(
            link.addresses["fleet"],
            insecure=False,
            root_certificates=certs.ca_cert,
            ssl_certfile=certs.client_cert,
            ssl_keyfile=certs.client_key,
        )
        assert node.wait_registered(10)
        with ControlClient(link.addresses["control"], root_certificates=certs.ca_cert) as c:
            run, results, log = run_and_wait(c, make_app(), {"size": SIZE})
        assert run.sub_status == "completed", log
        assert results[0]["ok"][str(node.node_id)][0] == pytest.approx(_expected(0), rel=1e-6)
        assert node_uploads == []  # the ClientApp process's upload spoke mutual TLS too
        assert link.bulk is not None
        assert wait_for(lambda: link.bulk.transfers == 2, 5)
    finally:
        link.stop(grace=1.0)


def _node_uploads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the arrays the node itself uploads (not its ClientApp process)."""
    sizes: list[int] = []
    original = GrpcConnection._push_unnamed

    def counting(self: GrpcConnection, node_id: int, array: Array) -> str:
        sizes.append(array.nbytes)
        return original(self, node_id, array)

    monkeypatch.setattr(GrpcConnection, "_push_unnamed", counting)
    return sizes


def test_the_clientapp_process_uploads_its_large_reply_itself(
    start_node, make_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_uploads = _node_uploads(monkeypatch)
    link = start_superlink(bulk=True)
    try:
        node = start_node(link.addresses["fleet"], partition=3)
        assert node.wait_registered(10)
        with ControlClient(link.addresses["control"]) as control:
            run, results, log = run_and_wait(control, make_app(), {"size": SIZE, "rounds": 2})
        assert run.sub_status == "completed", log
        for result in results:
            assert result["ok"][str(node.node_id)][0] == pytest.approx(_expected(3), rel=1e-6)
        assert node_uploads == []  # the node passed the replies' ids on, never their bytes
        assert link.bulk is not None
        assert wait_for(lambda: link.bulk.transfers == 4, 5)  # 2 rounds: model down, reply up
    finally:
        link.stop(grace=1.0)


def test_a_refused_clientapp_upload_leaves_the_reply_to_the_node(
    start_node, make_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_uploads = _node_uploads(monkeypatch)

    def forged(self: GrpcConnection, node_id: int, size: int) -> tuple[bytes, int, int] | None:
        real = self._open_ticket(node_id, "", True, size)  # for the port
        assert real is not None
        return bytes(32), real[1], size  # the bulk port refuses this one

    monkeypatch.setattr(GrpcConnection, "upload_ticket", forged)
    link = start_superlink(bulk=True)
    try:
        node = start_node(link.addresses["fleet"], partition=1)
        assert node.wait_registered(10)
        with ControlClient(link.addresses["control"]) as control:
            run, results, log = run_and_wait(control, make_app(), {"size": SIZE})
        assert run.sub_status == "completed", log
        assert results[0]["ok"][str(node.node_id)][0] == pytest.approx(_expected(1), rel=1e-6)
        assert node_uploads == [SIZE * 4]  # the node moved the reply after all
        assert link.bulk is not None
        assert wait_for(lambda: link.bulk.transfers == 2, 5)
    finally:
        link.stop(grace=1.0)


def test_with_node_authentication_the_clientapp_uploads_with_a_signed_ticket(
    tmp_path: Path, start_node, make_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from glade.keypairs import PrivateKey, create_key_pair
    from glade.superlink.state import NodeKey

    node_uploads = _node_uploads(monkeypatch)
    link = start_superlink(bulk=True, node_auth=True, database=str(tmp_path / "state.db"))
    try:
        private, _ = create_key_pair(tmp_path / "keys", "node")
        raw = PrivateKey.read(private).public_key.raw
        link.state.add_node_key(NodeKey(public_key=raw, name="node", added_at=time.time()))
        node = start_node(link.addresses["fleet"], partition=2, auth_key=private)
        assert node.wait_registered(10)
        with ControlClient(link.addresses["control"]) as control:
            run, results, log = run_and_wait(control, make_app(), {"size": SIZE})
        assert run.sub_status == "completed", log
        assert results[0]["ok"][str(node.node_id)][0] == pytest.approx(_expected(2), rel=1e-6)
        assert node_uploads == []  # the ClientApp's upload went through on the node's ticket
        assert link.bulk is not None
        assert wait_for(lambda: link.bulk.transfers == 2, 5)
    finally:
        link.stop(grace=1.0)
