"""The SuperLink's bulk port: tickets, transfers both ways (plain TCP and TLS), refusals,
and the SuperNode connection's fallback to gRPC."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from glade_testing import start_mutual_tls_superlink, start_superlink, wait_for

from glade import Array
from glade.digest import content_id
from glade.errors import LimitExceededError, NotFoundError, SerdeError
from glade.superlink import SuperLink
from glade.superlink.bulk import Tickets
from glade.supernode.connection import GrpcConnection
from glade.transport.bulk import MAGIC, MIN_BULK_BYTES, BulkClient, BulkError, client_context
from glade.transport.chunks import iter_chunks
from glade.transport.tls import DevCertificates, channel_credentials, create_dev_certificates
from glade.transport.v1 import fleet_pb2 as fpb

SIZE = MIN_BULK_BYTES + 12345  # not a multiple of the block size


def _data(seed: int, nbytes: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)


def _store(link: SuperLink, data: np.ndarray) -> str:
    object_id, _ = link.store.put_chunks(iter_chunks(data.data.cast("B"), chunk_size=1 << 20))
    return object_id


def _connect(link: SuperLink, certs: DevCertificates | None = None, **options) -> GrpcConnection:
    tls = {}
    if certs is not None:
        tls = {
            "credentials": channel_credentials(root_certificates=certs.ca_cert),
            "bulk_context": client_context(certs.ca_cert),
        }
    return GrpcConnection(
        link.addresses["fleet"],
        chunk_size=1 << 20,
        max_object_size=1 << 30,
        rpc_timeout_s=10.0,
        **tls,
        **options,
    )


@pytest.fixture
def link() -> Iterator[SuperLink]:
    link = start_superlink(bulk=True)
    yield link
    link.stop(grace=0.5)


@pytest.fixture
def conn(link: SuperLink) -> Iterator[GrpcConnection]:
    conn = _connect(link)
    yield conn
    conn.close()


def _node(conn: GrpcConnection) -> int:
    return conn.register(node_id=0, name="bulk-test", node_config={}).node_id


def _ticket(
    conn: GrpcConnection, node_id: int, object_id: str = "", **fields
) -> fpb.OpenBulkResponse:
    request = fpb.OpenBulkRequest(node_id=node_id, object_id=object_id, **fields)
    return conn._stub.OpenBulk(request, timeout=5)


def _refused(port: int, hello: bytes) -> bool:
    """Whether the bulk port closes a connection that sent ``hello`` without a byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(hello)
            return sock.recv(16) == b""
        except ConnectionResetError:
            return True


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_an_object_goes_down_and_up_over_the_bulk_port(tmp_path: Path, tls: bool) -> None:
    certs = create_dev_certificates(tmp_path / "certs") if tls else None
    options = {}
    if certs is not None:
        options = {
            "insecure": False,
            "ssl_certfile": certs.server_cert,
            "ssl_keyfile": certs.server_key,
            "node_auth": False,
            "user_auth": False,
        }
    link = start_superlink(bulk=True, **options)
    conn = _connect(link, certs)
    try:
        node_id = _node(conn)
        data = _data(1)
        object_id = _store(link, data)
        got = conn._pull_object(node_id, object_id, SIZE)
        assert bytes(got) == data.tobytes()
        assert got.readonly
        assert link.bulk is not None
        assert wait_for(lambda: link.bulk.transfers == 1, 5)

        reply = Array(_data(2, 4 * (SIZE // 4)).view(np.float32))  # unnamed: the SuperLink names it
        stored = conn._push_unnamed(node_id, reply)
        assert stored == content_id(reply.memoryview())
        assert link.store.read_bytes(stored) == reply.memoryview().tobytes()
        assert wait_for(lambda: link.bulk.transfers == 2, 5)
        assert list((link.store.root / "tmp").iterdir()) == []
    finally:
        conn.close()
        link.stop(grace=0.5)


def test_small_objects_and_a_superlink_without_bulk_port_keep_grpc(conn, link) -> None:
    node_id = _node(conn)
    small = _data(3, MIN_BULK_BYTES - 1)
    object_id = _store(link, small)
    assert bytes(conn._pull_object(node_id, object_id, small.size)) == small.tobytes()
    assert link.bulk is not None and link.bulk.transfers == 0

    plain = start_superlink(bulk=False)  # an empty ticket, then gRPC for good
    other = _connect(plain)
    try:
        node = _node(other)
        assert _ticket(other, node, upload=True, size=SIZE).ticket == b""
        data = _data(4)
        assert other._push_unnamed(node, Array(data)) == content_id(data)
        assert other._bulk_paused_until > time.monotonic()  # not asked again for a while
    finally:
        other.close()
        plain.stop(grace=0.5)


def test_a_connection_without_a_valid_ticket_is_closed_at_once(conn, link) -> None:
    node_id = _node(conn)
    object_id = _store(link, _data(5))
    port = link.bulk.port
    assert _refused(port, MAGIC + b"\0" * 32)  # never issued
    good = _ticket(conn, node_id, object_id).ticket
    assert _refused(port, b"HTTP" + good)  # wrong protocol
    assert _refused(port, MAGIC + good[:-1] + bytes([good[-1] ^ 1]))  # a forged ticket
    link.bulk._handshake_timeout = 0.3
    started = time.monotonic()
    assert _refused(port, MAGIC)  # then nothing: closed after the handshake timeout
    assert time.monotonic() - started < 3
    assert link.bulk.transfers == 0


def test_a_ticket_is_used_once_and_only_before_it_expires(conn, link) -> None:
    node_id = _node(conn)
    data = _data(6)
    object_id = _store(link, data)
    ticket = _ticket(conn, node_id, object_id).ticket
    with socket.create_connection(("127.0.0.1", link.bulk.port), timeout=5) as sock:
        sock.sendall(MAGIC + ticket)
        head = sock.recv(10, socket.MSG_WAITALL)
        assert head == b"OK" + struct.pack(">Q", SIZE)
    assert _refused(link.bulk.port, MAGIC + ticket)  # used already

    link.bulk.tickets.ttl_s = 0.0
    expired = _ticket(conn, node_id, object_id).ticket
    assert _refused(link.bulk.port, MAGIC + expired)


def test_tickets_expire_are_bounded_and_bound_to_their_grant() -> None:
    now = [100.0]
    tickets = Tickets(ttl_s=60.0, max_open=2, clock=lambda: now[0])
    a = tickets.issue(7, "ab" * 32, upload=False, size=10)
    b = tickets.issue(8, "", upload=True, size=20)
    assert len(a) == len(b) == 32 and a != b
    with pytest.raises(LimitExceededError):
        tickets.issue(9, "", upload=True, size=1)
    grant = tickets.redeem(a)
    assert grant is not None and (grant.node_id, grant.object_id, grant.upload) == (
        7,
        "ab" * 32,
        False,
    )
    assert tickets.redeem(a) is None
    now[0] += 61
    assert tickets.redeem(b) is None
    assert tickets.issue(9, "", upload=True, size=1)  # expired ones do not count


def test_tickets_go_to_registered_nodes_for_stored_objects_within_limits(conn, link) -> None:
    node_id = _node(conn)
    with pytest.raises(NotFoundError):
        conn._open_ticket(node_id + 1000, "ab" * 32, False, 0)
    with pytest.raises(NotFoundError):
        conn._open_ticket(node_id, "ab" * 32, False, 0)  # not stored
    with pytest.raises(LimitExceededError):
        conn._open_ticket(node_id, "", True, link.store.max_object_size + 1)
    assert link.bulk.tickets._open == {}


def test_hash_mismatches_are_detected_both_ways(conn, link) -> None:
    node_id = _node(conn)
    data = _data(8)
    object_id = _store(link, data)
    path = link.store.path(object_id)
    path.chmod(0o600)
    with open(path, "r+b") as f:  # the stored bytes rot
        f.seek(SIZE // 2)
        f.write(b"\xff\x00\xff")
    client = BulkClient("127.0.0.1", conn._open_ticket)
    with pytest.raises(SerdeError, match="does not match"):
        client.pull(node_id, object_id, max_size=1 << 30)

    wrong = content_id(b"something else")
    with pytest.raises(BulkError, match="hash to"):
        client.push(node_id, _data(9).data.cast("B"), object_id=wrong)
    assert not link.store.has(wrong)
    assert list((link.store.root / "tmp").iterdir()) == []


def test_the_node_falls_back_to_grpc_when_the_bulk_port_is_unreachable(conn, link, caplog) -> None:
    node_id = _node(conn)
    data = _data(10)
    object_id = _store(link, data)
    link.bulk.stop()  # tickets are still handed out: a firewall in between
    with caplog.at_level(logging.WARNING, logger="glade.supernode.connection"):
        assert bytes(conn._pull_object(node_id, object_id, SIZE)) == data.tobytes()
        reply = _data(11)
        assert conn._push_unnamed(node_id, Array(reply)) == content_id(reply)
    warnings = [r for r in caplog.records if "bulk port failed" in r.getMessage()]
    assert len(warnings) == 1  # one line, then gRPC for a while
    assert link.bulk.transfers == 0


def test_too_many_bulk_connections_are_closed_at_once(conn, link) -> None:
    node_id = _node(conn)
    object_id = _store(link, _data(12))
    link.bulk._slots = threading.BoundedSemaphore(1)
    with socket.create_connection(("127.0.0.1", link.bulk.port), timeout=5) as held:
        held.sendall(MAGIC)  # holds the only slot while its handshake waits
        time.sleep(0.2)
        ticket = _ticket(conn, node_id, object_id).ticket
        assert _refused(link.bulk.port, MAGIC + ticket)


def test_under_mutual_tls_the_bulk_port_wants_a_client_certificate(tmp_path: Path) -> None:
    certs = create_dev_certificates(tmp_path / "certs")
    link = start_mutual_tls_superlink(certs)
    conn = GrpcConnection(
        link.addresses["fleet"],
        credentials=channel_credentials(
            root_certificates=certs.ca_cert, certfile=certs.client_cert, keyfile=certs.client_key
        ),
        bulk_context=client_context(certs.ca_cert, certs.client_cert, certs.client_key),
        chunk_size=1 << 20,
        max_object_size=1 << 30,
    )
    try:
        node_id = _node(conn)
        data = _data(13)
        object_id = _store(link, data)
        assert bytes(conn._pull_object(node_id, object_id, SIZE)) == data.tobytes()
        assert link.bulk is not None
        assert wait_for(lambda: link.bulk.transfers == 1, 5)
        anonymous = BulkClient(
            "127.0.0.1", conn._open_ticket, context=client_context(certs.ca_cert)
        )
        with pytest.raises((OSError, BulkError)):
            anonymous.pull(node_id, object_id, max_size=1 << 30)
        assert link.bulk.transfers == 1
    finally:
        conn.close()
        link.stop(grace=0.5)


def test_receive_hashed_fills_the_target_and_hashes_it_and_a_short_stream_fails() -> None:
    import socket as socket_module

    from glade.transport.bulk import BLOCK, BulkError, receive_hashed

    data = np.random.default_rng(3).integers(0, 256, 2 * BLOCK + 12_345, dtype=np.uint8)
    left, right = socket_module.socketpair()
    with left, right:
        sender = threading.Thread(target=lambda: left.sendall(data.tobytes()))
        sender.start()
        target = np.zeros(data.size, dtype=np.uint8)
        assert receive_hashed(right, target.data) == content_id(data.tobytes())
        sender.join()
        np.testing.assert_array_equal(target, data)
        left.sendall(b"x" * 100)
        left.shutdown(socket_module.SHUT_WR)
        with pytest.raises(BulkError, match="closed the connection at 100 of 200"):
            receive_hashed(right, np.zeros(200, dtype=np.uint8).data)
