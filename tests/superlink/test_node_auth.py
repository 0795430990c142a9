"""Node authentication against a real SuperLink on 127.0.0.1: signed Fleet requests from
allow-listed keys pass; unknown keys, bad signatures, replays, stale timestamps, unsigned
requests and node-id spoofing are refused, logged and audited; a key keeps its node id."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from glade.digest import content_id
from glade.keypairs import PrivateKey
from glade.superlink import SuperLink
from glade.superlink.node_auth import AUDIT_ACTION, NonceCache
from glade.superlink.state import NodeKey
from glade.transport.grpc_options import channel
from glade.transport.object_wire import ObjectStub, encode_chunk
from glade.transport.objects import node_metadata
from glade.transport.signing import (
    SIGNATURE_KEY,
    RequestSigner,
    SigningInterceptor,
    request_digest,
)
from glade.transport.v1 import fleet_pb2 as fpb
from glade.transport.v1 import fleet_pb2_grpc, run_pb2

HEARTBEAT = "/glade.v1.Fleet/Heartbeat"


class SignedNode:
    """Fleet stubs that sign with ``key`` (``clock``: the signing time)."""

    def __init__(self, address: str, key: PrivateKey, clock: Callable[[], float] = time.time):
        self.key = key
        self.raw_channel = channel(address)
        signed = grpc.intercept_channel(
            self.raw_channel, SigningInterceptor(RequestSigner(key, clock=clock))
        )
        self.stub = fleet_pb2_grpc.FleetStub(signed)
        self.objects = ObjectStub(signed, "glade.v1.Fleet")
        self.plain = fleet_pb2_grpc.FleetStub(self.raw_channel)  # signs nothing

    def register(self, node_id: int = 0, name: str = "n") -> int:
        request = fpb.RegisterRequest(node_id=node_id, name=name)
        return int(self.stub.Register(request, timeout=5).node_id)

    def close(self) -> None:
        self.raw_channel.close()


@pytest.fixture
def auth_link(start_link: Callable[..., SuperLink], tmp_path: Path) -> SuperLink:
    return start_link(node_auth=True, database=str(tmp_path / "state.db"))


@pytest.fixture
def node_for(auth_link: SuperLink) -> Iterator[Callable[..., SignedNode]]:
    """``node_for(key, allow=True, clock=time.time)``: signed stubs (the key allow-listed)."""
    made: list[SignedNode] = []

    def make(key: PrivateKey, *, allow: bool = True, **options: Any) -> SignedNode:
        if allow:
            allow_key(auth_link, key)
        node = SignedNode(auth_link.addresses["fleet"], key, **options)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


def allow_key(link: SuperLink, key: PrivateKey, name: str = "") -> None:
    name = name or key.public_key.fingerprint[-8:]
    link.state.add_node_key(
        NodeKey(public_key=key.public_key.raw, name=name, added_at=time.time(), added_by="t")
    )


def _refused(call: Callable[[], Any], code: grpc.StatusCode, match: str) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    assert match in info.value.details(), info.value.details()
    return str(info.value.details())


def _audit(link: SuperLink) -> list[Any]:
    return [e for e in link.state.list_audit(limit=1000) if e.action == AUDIT_ACTION]


def test_an_allowed_key_registers_and_keeps_its_node_id(start_link, tmp_path):
    database = str(tmp_path / "state.db")
    link = start_link(node_auth=True, database=database)
    key = PrivateKey.generate()
    allow_key(link, key, "hospital-a")
    node = SignedNode(link.addresses["fleet"], key)
    try:
        node_id = node.register()
        assert link.state.get_node_key(key.public_key.raw).node_id == node_id
        assert node.register(node_id=12345) == node_id  # the key decides, not the request
        heartbeat = node.stub.Heartbeat(fpb.HeartbeatRequest(node_id=node_id), timeout=5)
        assert heartbeat.known
    finally:
        node.close()
    link.stop(grace=0.5)

    again = start_link(node_auth=True, database=database)  # same state, new process life
    node = SignedNode(again.addresses["fleet"], key)
    try:
        assert node.register() == node_id
    finally:
        node.close()
    assert _audit(again) == []


def test_unknown_key_is_refused_logged_and_audited(auth_link, node_for, caplog):
    stranger = node_for(PrivateKey.generate(), allow=False)
    with caplog.at_level(logging.WARNING, logger="glade.superlink.node_auth"):
        details = _refused(
            stranger.register, grpc.StatusCode.UNAUTHENTICATED, "not on the SuperLink's allow-list"
        )
    fingerprint = stranger.key.public_key.fingerprint
    assert fingerprint in details and "glade node add" in details
    assert any(fingerprint in r.getMessage() for r in caplog.records), caplog.text
    (entry,) = _audit(auth_link)
    assert entry.actor == f"node:{fingerprint}" and entry.result == "denied"
    assert entry.target == "/glade.v1.Fleet/Register" and "allow-list" in entry.detail
    assert auth_link.state.list_nodes() == []


def test_unsigned_requests_are_refused(auth_link, node_for):
    node = node_for(PrivateKey.generate())
    _refused(
        lambda: node.plain.Register(fpb.RegisterRequest(name="x"), timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
        "--auth-key",
    )
    (entry,) = _audit(auth_link)
    assert entry.actor == "anonymous" and "not signed" in entry.detail
    assert auth_link.state.list_nodes() == []


def test_a_bad_signature_is_refused(auth_link, node_for):
    node = node_for(PrivateKey.generate())
    node_id = node.register()
    signer = RequestSigner(node.key)
    request = fpb.HeartbeatRequest(node_id=node_id)
    # signed for other content (another node id), then sent with this request
    other = request_digest(fpb.HeartbeatRequest(node_id=node_id + 1))
    metadata = signer.metadata(HEARTBEAT, other)
    _refused(
        lambda: node.plain.Heartbeat(request, metadata=metadata, timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
        "signature does not match",
    )
    # a signature by another key, with this key's name on it
    forged = dict(signer.metadata(HEARTBEAT, request_digest(request)))
    impostor = RequestSigner(PrivateKey.generate())
    forged[SIGNATURE_KEY] = dict(impostor.metadata(HEARTBEAT, request_digest(request)))[
        SIGNATURE_KEY
    ]
    _refused(
        lambda: node.plain.Heartbeat(request, metadata=list(forged.items()), timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
        "signature does not match",
    )
    # a signature for another method
    metadata = signer.metadata("/glade.v1.Fleet/Unregister", request_digest(request))
    _refused(
        lambda: node.plain.Heartbeat(request, metadata=metadata, timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
        "signature does not match",
    )
    assert len(_audit(auth_link)) == 3


def test_a_replayed_request_is_refused(auth_link, node_for):
    node = node_for(PrivateKey.generate())
    node_id = node.register()
    request = fpb.HeartbeatRequest(node_id=node_id)
    metadata = RequestSigner(node.key).metadata(HEARTBEAT, request_digest(request))
    assert node.plain.Heartbeat(request, metadata=metadata, timeout=5).known
    _refused(
        lambda: node.plain.Heartbeat(request, metadata=metadata, timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
        "replayed",
    )
    (entry,) = _audit(auth_link)
    assert "replayed" in entry.detail


@pytest.mark.parametrize("skew", [-120.0, 120.0])
def test_a_timestamp_outside_the_window_is_refused(auth_link, node_for, skew):
    key = PrivateKey.generate()
    node_for(key).register()
    late = node_for(key, allow=False, clock=lambda: time.time() + skew)
    _refused(late.register, grpc.StatusCode.UNAUTHENTICATED, "check the SuperNode's clock")
    (entry,) = _audit(auth_link)
    assert "60 s" in entry.detail


def test_a_node_cannot_speak_for_another_node(auth_link, node_for):
    alice, mallory = node_for(PrivateKey.generate()), node_for(PrivateKey.generate())
    alice_id, mallory_id = alice.register(), mallory.register()
    assert alice_id != mallory_id
    _refused(
        lambda: mallory.stub.Heartbeat(fpb.HeartbeatRequest(node_id=alice_id), timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
        f"belongs to node {mallory_id}, not to node {alice_id}",
    )
    _refused(
        lambda: mallory.stub.Unregister(fpb.UnregisterRequest(node_id=alice_id), timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
        "not to node",
    )
    has = run_pb2.HasObjectsRequest(object_ids=["ab" * 32])
    _refused(
        lambda: mallory.objects.HasObjects(has, metadata=node_metadata(alice_id), timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
        "not to node",
    )
    chunk = encode_chunk(content_id(b"x"), 0, 1, b"x")
    _refused(
        lambda: mallory.objects.PushObject(
            iter([chunk]), metadata=node_metadata(alice_id), timeout=5
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "not to node",
    )
    assert auth_link.state.get_node(alice_id) is not None  # still there
    assert {e.actor for e in _audit(auth_link)} == {f"node:{mallory.key.public_key.fingerprint}"}


def test_every_kind_of_call_passes_when_signed(auth_link, node_for):
    node = node_for(PrivateKey.generate())
    node_id = node.register()
    meta = node_metadata(node_id)
    data = b"payload" * 100
    object_id = content_id(data)
    chunk = encode_chunk(object_id, 0, len(data), data)
    pushed = node.objects.PushObject(iter([chunk]), metadata=meta, timeout=5)  # stream-unary
    assert pushed.object_id == object_id
    has = node.objects.HasObjects(run_pb2.HasObjectsRequest(object_ids=[object_id]), metadata=meta)
    assert list(has.missing) == []
    pulled = node.objects.PullObject(  # unary-stream
        run_pb2.PullObjectRequest(object_id=object_id), metadata=meta, timeout=5
    )
    assert b"".join(bytes(c.data) for c in pulled) == data
    empty = node.stub.PullMessages(
        fpb.PullMessagesRequest(node_id=node_id, wait_s=0.0, max_messages=1), timeout=5
    )
    assert list(empty.messages) == []
    node.stub.Unregister(fpb.UnregisterRequest(node_id=node_id), timeout=5)
    assert auth_link.state.get_node(node_id) is None
    assert node.register() == node_id  # rejoins as itself after leaving
    assert _audit(auth_link) == []


def test_a_key_not_bound_yet_must_register_first(auth_link, node_for):
    node = node_for(PrivateKey.generate())
    _refused(
        lambda: node.stub.Heartbeat(fpb.HeartbeatRequest(node_id=77), timeout=5),
        grpc.StatusCode.NOT_FOUND,
        "register",
    )


def test_a_removed_key_is_refused_at_once(auth_link, node_for):
    key = PrivateKey.generate()
    allow_key(auth_link, key, "gone")
    node = node_for(key, allow=False)
    node_id = node.register()
    auth_link.state.remove_node_key("gone")
    _refused(
        lambda: node.stub.Heartbeat(fpb.HeartbeatRequest(node_id=node_id), timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
        "allow-list",
    )


def test_signed_requests_pass_a_superlink_without_node_auth(start_link):
    link = start_link()  # insecure: node auth off by default
    assert not link.config.node_auth_enabled
    node = SignedNode(link.addresses["fleet"], PrivateKey.generate())
    try:
        assert node.register(node_id=555) == 555  # no key binding: the request decides
    finally:
        node.close()


def test_node_auth_defaults_follow_tls(tmp_path):
    from glade_testing import superlink_config

    assert not superlink_config().node_auth_enabled  # insecure
    assert superlink_config(node_auth=True).node_auth_enabled
    with pytest.raises(ValueError, match="node_auth_window_s"):
        superlink_config(node_auth_window_s=0)


def test_the_nonce_cache_is_bounded_and_never_lets_a_replay_through():
    cache = NonceCache(window_s=60.0, max_entries=3)
    now = 1000.0
    for i in range(3):
        assert cache.add(f"n{i}", now + i, now=now) == ""
    assert "replayed" in cache.add("n1", now + 1, now=now)
    assert cache.add("n3", now + 3, now=now) == ""  # n0 (signed at 1000) is dropped
    assert len(cache) == 3
    assert "older than the replay cache" in cache.add("n0", now, now=now)  # no replay of n0
    assert cache.add("n4", now + 4, now=now) == ""
    # entries leave once out of the window
    assert cache.add("late", now + 200, now=now + 200) == ""
    assert len(cache) == 1
