"""gRPC plumbing: the exception -> status table, its interceptor, options, channels, servers."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import grpc
import pytest

from glade.errors import (
    AccessDeniedError,
    ConfigError,
    InvalidArgumentError,
    InvalidStateError,
    LimitExceededError,
    NotFoundError,
    RecordError,
    SerdeError,
    TransportError,
)
from glade.transport.grpc_options import MAX_MESSAGE_BYTES, bind, channel, create_server
from glade.transport.status import (
    StatusInterceptor,
    error_from_rpc,
    status_for,
)
from glade.transport.v1 import run_pb2

RAISES = {
    "not-found": (NotFoundError("no run 7"), grpc.StatusCode.NOT_FOUND),
    "denied": (AccessDeniedError("bad token"), grpc.StatusCode.PERMISSION_DENIED),
    "invalid": (InvalidArgumentError("bad field"), grpc.StatusCode.INVALID_ARGUMENT),
    "serde": (SerdeError("hash mismatch"), grpc.StatusCode.INVALID_ARGUMENT),
    "record": (RecordError("bad record"), grpc.StatusCode.INVALID_ARGUMENT),
    "config": (ConfigError("bad config"), grpc.StatusCode.INVALID_ARGUMENT),
    "state": (InvalidStateError("run finished"), grpc.StatusCode.FAILED_PRECONDITION),
    "limit": (LimitExceededError("too big"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    "bug": (KeyError("oops"), grpc.StatusCode.INTERNAL),
}


def _raise(kind: str) -> None:
    if kind in RAISES:
        raise RAISES[kind][0]


def _unary(request: run_pb2.HasObjectsRequest, context: grpc.ServicerContext) -> object:
    _raise(request.object_ids[0])
    return run_pb2.HasObjectsResponse(missing=list(request.object_ids))


def _server_stream(request: run_pb2.HasObjectsRequest, context: object) -> Iterator[object]:
    yield run_pb2.HasObjectsResponse(missing=["first"])
    _raise(request.object_ids[0])


def _client_stream(requests: Iterator[run_pb2.HasObjectsRequest], context: object) -> object:
    seen = []
    for request in requests:
        seen += request.object_ids
        _raise(request.object_ids[0])
    return run_pb2.HasObjectsResponse(missing=seen)


def _abort(request: run_pb2.HasObjectsRequest, context: grpc.ServicerContext) -> object:
    context.abort(grpc.StatusCode.ABORTED, "handler aborted itself")


@pytest.fixture(scope="module")
def stub() -> Iterator[dict[str, grpc.UnaryUnaryMultiCallable]]:
    def handler(kind, fn):
        return kind(
            fn,
            request_deserializer=run_pb2.HasObjectsRequest.FromString,
            response_serializer=run_pb2.HasObjectsResponse.SerializeToString,
        )

    server = create_server(max_workers=4, interceptors=[StatusInterceptor()])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "t.T",
                {
                    "Unary": handler(grpc.unary_unary_rpc_method_handler, _unary),
                    "ServerStream": handler(grpc.unary_stream_rpc_method_handler, _server_stream),
                    "ClientStream": handler(grpc.stream_unary_rpc_method_handler, _client_stream),
                    "Abort": handler(grpc.unary_unary_rpc_method_handler, _abort),
                },
            )
        ]
    )
    port = bind(server, "127.0.0.1:0")
    server.start()
    chan = channel(f"127.0.0.1:{port}")
    ser = run_pb2.HasObjectsRequest.SerializeToString
    de = run_pb2.HasObjectsResponse.FromString
    yield {
        "unary": chan.unary_unary("/t.T/Unary", request_serializer=ser, response_deserializer=de),
        "raw": chan.unary_unary("/t.T/Unary"),
        "raw_stream": chan.stream_unary("/t.T/ClientStream"),
        "server_stream": chan.unary_stream(
            "/t.T/ServerStream", request_serializer=ser, response_deserializer=de
        ),
        "client_stream": chan.stream_unary(
            "/t.T/ClientStream", request_serializer=ser, response_deserializer=de
        ),
        "abort": chan.unary_unary("/t.T/Abort", request_serializer=ser, response_deserializer=de),
    }
    chan.close()
    server.stop(None)


def _req(kind: str) -> run_pb2.HasObjectsRequest:
    return run_pb2.HasObjectsRequest(object_ids=[kind])


@pytest.mark.parametrize("kind", sorted(RAISES))
def test_each_exception_becomes_its_status_in_every_call_shape(stub, kind: str) -> None:
    exc, code = RAISES[kind]
    calls = [
        lambda: stub["unary"](_req(kind), timeout=5),
        lambda: list(stub["server_stream"](_req(kind), timeout=5)),
        lambda: stub["client_stream"](iter([_req(kind)]), timeout=5),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == code
        if code != grpc.StatusCode.INTERNAL:
            assert info.value.details() == str(exc)
    # and the server is still serving
    assert list(stub["unary"](_req("fine"), timeout=5).missing) == ["fine"]


def test_garbage_bytes_are_invalid_argument_not_internal(stub) -> None:
    for call in (
        lambda: stub["raw"](b"\xff\xff\xff garbage", timeout=5),
        lambda: stub["raw_stream"](iter([b"\x0a\x05ok", b"\xff\xfe"]), timeout=5),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed request" in info.value.details()


def test_handlers_may_still_abort_themselves(stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub["abort"](_req("x"), timeout=5)
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert info.value.details() == "handler aborted itself"


def test_oversized_messages_are_refused_by_the_limit(stub) -> None:
    big = run_pb2.HasObjectsRequest(object_ids=["x" * (MAX_MESSAGE_BYTES + 10)])
    with pytest.raises(grpc.RpcError) as info:
        stub["unary"](big, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert list(stub["unary"](_req("after"), timeout=5).missing) == ["after"]


def test_error_from_rpc_maps_back_to_glade_exceptions(stub) -> None:
    for kind, expected in [
        ("not-found", NotFoundError),
        ("denied", AccessDeniedError),
        ("invalid", InvalidArgumentError),
        ("state", InvalidStateError),
        ("limit", LimitExceededError),
        ("bug", TransportError),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            stub["unary"](_req(kind), timeout=5)
        error = error_from_rpc(info.value)
        assert type(error) is expected
        if kind != "bug":
            assert str(error) == str(RAISES[kind][0])


def test_unreachable_peer_is_a_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with channel(f"127.0.0.1:{port}") as chan:
        call = chan.unary_unary("/t.T/Unary")
        with pytest.raises(grpc.RpcError) as info:
            call(b"", timeout=2)
    error = error_from_rpc(info.value, peer=f"127.0.0.1:{port}")
    assert isinstance(error, TransportError) and f"127.0.0.1:{port}" in str(error)


def test_status_for_unknown_exceptions_is_none() -> None:
    assert status_for(RuntimeError("x")) is None
    assert status_for(NotFoundError("x")) == grpc.StatusCode.NOT_FOUND


def test_addresses_tls_seam_and_taken_ports() -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        channel("no-port")
    with pytest.raises(ConfigError, match="TLS"):
        channel("127.0.0.1:1", insecure=False)
    server = create_server(max_workers=1)
    with pytest.raises(ConfigError, match="TLS"):
        bind(server, "127.0.0.1:0", insecure=False)
    port = bind(server, "127.0.0.1:0")
    other = create_server(max_workers=1)
    with pytest.raises(TransportError, match="cannot listen"):
        bind(other, f"127.0.0.1:{port}")
    server.stop(None)
    other.stop(None)


def test_the_interceptor_wraps_a_method_once_while_its_handler_stays_the_same() -> None:
    class Details:
        method = "/glade.v1.Fleet/Heartbeat"
        invocation_metadata = ()

    def behavior(request: bytes, context: object) -> bytes:
        return request

    first = grpc.unary_unary_rpc_method_handler(behavior)
    interceptor = StatusInterceptor()
    wrapped = interceptor.intercept_service(lambda d: first, Details)
    assert interceptor.intercept_service(lambda d: first, Details) is wrapped
    other = grpc.unary_unary_rpc_method_handler(behavior)  # e.g. an inner interceptor's new one
    rewrapped = interceptor.intercept_service(lambda d: other, Details)
    assert rewrapped is not wrapped
    assert rewrapped.unary_unary(b"x", None) == b"x"
