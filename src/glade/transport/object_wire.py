"""Object chunks on the wire without extra copies: a hand-written ``ObjectChunk`` codec.

The generated protobuf code copies a chunk's bytes several times (into the message, out of
it, into the serialized form). For large models those copies dominate, so the object RPCs
use this codec instead; the bytes on the wire are exactly ``glade.v1.ObjectChunk``:

- :func:`encode_chunk` builds a serialized chunk with one copy of the data;
- :func:`decode_chunk` parses one into a :class:`RawChunk` whose ``data`` is a zero-copy
  view of the received buffer (it duck-types ``ObjectChunk`` for the assemblers);
- :class:`ObjectStub` is a client stub for the three object RPCs of a service using the
  codec, usable wherever the helpers of :mod:`glade.transport.objects` take a stub;
- :class:`RawObjectsInterceptor` makes a server's PushObject/PullObject handlers use it.

>>> raw = decode_chunk(encode_chunk("ab" * 32, 5, 10, b"hello"))
>>> raw.object_id == "ab" * 32, raw.offset, raw.total_size, bytes(raw.data)
(True, 5, 10, b'hello')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from glade.array import Array
from glade.errors import SerdeError
from glade.transport.v1 import message_pb2 as pb
from glade.transport.v1 import run_pb2

__all__ = [
    "ObjectStub",
    "RawChunk",
    "RawObjectsInterceptor",
    "decode_chunk",
    "encode_chunk",
    "iter_encoded_chunks",
]


class RawChunk:
    """A parsed ``ObjectChunk``; ``data`` is a read-only view of the received bytes."""

    __slots__ = ("data", "object_id", "offset", "total_size")

    def __init__(self, object_id: str, offset: int, total_size: int, data: memoryview) -> None:
        self.object_id = object_id
        self.offset = offset
        self.total_size = total_size
        self.data = data


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_chunk(object_id: str, offset: int, total_size: int, data: Any) -> bytes:
    """A serialized ``ObjectChunk`` (fields in number order, defaults omitted)."""
    key = object_id.encode()
    size = memoryview(data).nbytes
    header = [b"\x0a", _varint(len(key)), key] if key else []
    if offset:
        header += [b"\x10", _varint(offset)]
    if total_size:
        header += [b"\x18", _varint(total_size)]
    if size:
        header += [b"\x22", _varint(size)]
        return b"".join([*header, data])
    return b"".join(header)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise SerdeError("truncated or overlong varint in an ObjectChunk")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def decode_chunk(data: bytes) -> RawChunk:
    """Parse a serialized ``ObjectChunk`` (any field order, unknown fields skipped)."""
    buf = memoryview(data).toreadonly()
    pos, fields = 0, {1: b"", 2: 0, 3: 0, 4: buf[0:0]}
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        number, kind = tag >> 3, tag & 7
        if kind == 0:
            value, pos = _read_varint(buf, pos)
            fields[number] = value
        elif kind == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise SerdeError("truncated ObjectChunk")
            fields[number] = buf[pos : pos + length]
            pos += length
        elif kind in (1, 5):
            pos += 8 if kind == 1 else 4
        else:
            raise SerdeError(f"unsupported wire type {kind} in an ObjectChunk")
    if pos != len(buf):
        raise SerdeError("truncated ObjectChunk")
    object_id, offset, total, payload = fields[1], fields[2], fields[3], fields[4]
    if not isinstance(object_id, memoryview | bytes) or not isinstance(payload, memoryview):
        raise SerdeError("malformed ObjectChunk: wrong field types")
    if not isinstance(offset, int) or not isinstance(total, int):
        raise SerdeError("malformed ObjectChunk: wrong field types")
    try:
        oid = bytes(object_id).decode("ascii")
    except UnicodeDecodeError:
        raise SerdeError("malformed ObjectChunk: the object id is not text") from None
    return RawChunk(oid, offset, total, payload)


def iter_encoded_chunks(
    source: Array | bytes | bytearray | memoryview, *, object_id: str, chunk_size: int
) -> Iterator[bytes]:
    """``source`` as serialized ObjectChunks of at most ``chunk_size`` bytes of data."""
    view = source.memoryview() if isinstance(source, Array) else memoryview(source).cast("B")
    total = len(view)
    for offset in range(0, max(total, 1), chunk_size):
        yield encode_chunk(object_id, offset, total, view[offset : offset + chunk_size])


def _serialize_chunk(chunk: bytes | pb.ObjectChunk | RawChunk) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, RawChunk):
        return encode_chunk(chunk.object_id, chunk.offset, chunk.total_size, chunk.data)
    serialized: bytes = chunk.SerializeToString()
    return serialized


class ObjectStub:
    """HasObjects / PushObject / PullObject of ``service`` ("glade.v1.Fleet", ...) on ``channel``.

    PushObject takes serialized chunks (or ObjectChunks); PullObject yields RawChunks.
    """

    raw_chunks = True

    def __init__(self, channel: grpc.Channel, service: str) -> None:
        self.HasObjects = channel.unary_unary(
            f"/{service}/HasObjects",
            request_serializer=run_pb2.HasObjectsRequest.SerializeToString,
            response_deserializer=run_pb2.HasObjectsResponse.FromString,
        )
        self.PushObject = channel.stream_unary(
            f"/{service}/PushObject",
            request_serializer=_serialize_chunk,
            response_deserializer=run_pb2.PushObjectResponse.FromString,
        )
        self.PullObject = channel.unary_stream(
            f"/{service}/PullObject",
            request_serializer=run_pb2.PullObjectRequest.SerializeToString,
            response_deserializer=decode_chunk,
        )


class RawObjectsInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Serves PushObject/PullObject with this codec (handlers get/yield raw chunks)."""

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return None
        if method.endswith("/PushObject") and handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                handler.stream_unary,
                request_deserializer=decode_chunk,
                response_serializer=handler.response_serializer,
            )
        if method.endswith("/PullObject") and handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                handler.unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=_serialize_chunk,
            )
        return handler
