"""The signing protocol: client and server interceptors on a real gRPC server on 127.0.0.1,
for the four kinds of call, and the parsing of signature metadata."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from glade.errors import AuthenticationError
from glade.keypairs import PrivateKey
from glade.transport._record_codec import user_config_to_proto
from glade.transport.grpc_options import bind, channel, create_server
from glade.transport.signing import (
    EMPTY_DIGEST,
    NODE_KEY_KEY,
    NONCE_KEY,
    SIGNATURE_KEY,
    TIMESTAMP_KEY,
    ReceivedCall,
    RequestSigner,
    SigningInterceptor,
    VerifyingInterceptor,
    parse_call,
    request_digest,
    signed_bytes,
)
from glade.transport.status import StatusInterceptor
from glade.transport.v1 import fleet_pb2 as fpb

SERVICE = "test.Signed"


def _echo_handlers() -> grpc.GenericRpcHandler:
    def unary(request: bytes, context: Any) -> bytes:
        return request

    def server_stream(request: bytes, context: Any) -> Iterator[bytes]:
        yield request
        yield request

    def client_stream(requests: Iterator[bytes], context: Any) -> bytes:
        return b"".join(requests)

    def both(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        yield from requests

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "U": grpc.unary_unary_rpc_method_handler(unary),
            "S": grpc.unary_stream_rpc_method_handler(server_stream),
            "C": grpc.stream_unary_rpc_method_handler(client_stream),
            "B": grpc.stream_stream_rpc_method_handler(both),
        },
    )


class Recorder:
    """A policy that checks each signature and remembers the calls."""

    def __init__(self) -> None:
        self.calls: list[ReceivedCall] = []
        self.lock = threading.Lock()

    def __call__(self, call: ReceivedCall) -> None:
        signed = parse_call(call.method, call.metadata, call.digest)
        if not signed.signature_ok():
            raise AuthenticationError("bad signature")
        with self.lock:
            self.calls.append(call)


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    srv = create_server(
        max_workers=4, interceptors=[StatusInterceptor(), VerifyingInterceptor(recorder)]
    )
    srv.add_generic_rpc_handlers((_echo_handlers(),))
    port = bind(srv, "127.0.0.1:0")
    srv.start()
    yield f"127.0.0.1:{port}", recorder
    srv.stop(None)


def _signed_channel(address: str, key: PrivateKey) -> tuple[grpc.Channel, grpc.Channel]:
    raw = channel(address)
    return raw, grpc.intercept_channel(raw, SigningInterceptor(RequestSigner(key)))


def test_all_four_kinds_of_call_are_signed_over_the_bytes_on_the_wire(server):
    address, recorder = server
    key = PrivateKey.generate()
    raw, signed = _signed_channel(address, key)
    try:
        body = b"some request bytes"
        assert signed.unary_unary(f"/{SERVICE}/U")(body, timeout=5) == body
        assert list(signed.unary_stream(f"/{SERVICE}/S")(body, timeout=5)) == [body, body]
        assert signed.stream_unary(f"/{SERVICE}/C")(iter([b"a", b"b"]), timeout=5) == b"ab"
        assert list(signed.stream_stream(f"/{SERVICE}/B")(iter([b"x"]), timeout=5)) == [b"x"]
        # an unsigned call is refused before the handler runs
        with pytest.raises(grpc.RpcError) as info:
            raw.unary_unary(f"/{SERVICE}/U")(body, timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "not signed" in info.value.details()
    finally:
        raw.close()
    digests = [c.digest for c in recorder.calls]
    expected = hashlib.sha256(body).digest()
    assert digests == [expected, expected, EMPTY_DIGEST, EMPTY_DIGEST]
    assert [c.method for c in recorder.calls] == [f"/{SERVICE}/{m}" for m in "USCB"]
    assert recorder.calls[0].request == body
    assert recorder.calls[2].request is None


def test_protobuf_requests_hash_as_serialized_by_the_stub(server):
    address, recorder = server
    request = fpb.RegisterRequest(node_id=7, name="node")
    user_config_to_proto({f"k{i}": i * 0.5 for i in range(60)}, request.node_config, where="c")
    raw, signed = _signed_channel(address, PrivateKey.generate())
    try:
        call = signed.unary_unary(
            f"/{SERVICE}/U", request_serializer=fpb.RegisterRequest.SerializeToString
        )
        echoed = call(request, timeout=5)
    finally:
        raw.close()
    assert fpb.RegisterRequest.FromString(echoed) == request
    assert recorder.calls[0].digest == request_digest(request)


def test_signed_bytes_bind_every_part():
    digest = hashlib.sha256(b"x").digest()
    base = signed_bytes("/a/B", "10.000", "ab" * 16, digest)
    assert base.startswith(b"glade-fleet-v1\n/a/B\n10.000\n")
    assert base.endswith(digest)
    variants = [
        signed_bytes("/a/C", "10.000", "ab" * 16, digest),
        signed_bytes("/a/B", "10.001", "ab" * 16, digest),
        signed_bytes("/a/B", "10.000", "cd" * 16, digest),
        signed_bytes("/a/B", "10.000", "ab" * 16, EMPTY_DIGEST),
    ]
    assert len({base, *variants}) == 5


def test_parse_call_reads_good_metadata_and_refuses_bad_metadata():
    key = PrivateKey.generate()
    signer = RequestSigner(key, clock=lambda: 1234.5)
    metadata = dict(signer.metadata("/s/M", EMPTY_DIGEST))
    call = parse_call("/s/M", metadata, EMPTY_DIGEST)
    assert call.public_key == key.public_key and call.timestamp == 1234.5
    assert call.signature_ok()
    assert not parse_call("/s/Other", metadata, EMPTY_DIGEST).signature_ok()
    assert metadata[NONCE_KEY] != dict(signer.metadata("/s/M", EMPTY_DIGEST))[NONCE_KEY]
    broken = {
        NODE_KEY_KEY: "not base64!",
        TIMESTAMP_KEY: "yesterday",
        NONCE_KEY: "short",
        SIGNATURE_KEY: b"\x00" * 10,
    }
    for name, value in broken.items():
        with pytest.raises(AuthenticationError, match="malformed"):
            parse_call("/s/M", {**metadata, name: value}, EMPTY_DIGEST)
    for name in broken:
        rest = {k: v for k, v in metadata.items() if k != name}
        with pytest.raises(AuthenticationError, match=f"no {name}"):
            parse_call("/s/M", rest, EMPTY_DIGEST)


def test_signing_and_verifying_cost_per_request():
    """Not a limit: prints the cost (see the report); fails only if absurdly slow."""
    key = PrivateKey.generate()
    signer = RequestSigner(key)
    request = fpb.HeartbeatRequest(node_id=42)
    n = 300
    start = time.perf_counter()
    for _ in range(n):
        metadata = dict(signer.metadata("/glade.v1.Fleet/Heartbeat", request_digest(request)))
    signing = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for _ in range(n):
        call = parse_call("/glade.v1.Fleet/Heartbeat", metadata, request_digest(request))
        assert call.signature_ok()
    verifying = (time.perf_counter() - start) / n
    print(f"sign {signing * 1e6:.0f} us, verify {verifying * 1e6:.0f} us per request")
    assert signing < 0.05 and verifying < 0.05
