"""Helpers the three servicers share: ids, credentials from gRPC metadata, object RPCs."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import grpc

from glade.errors import AccessDeniedError, InvalidArgumentError, NotFoundError
from glade.superlink.garbage import GarbageCollector
from glade.superlink.object_store import ObjectStore, check_object_id
from glade.transport.v1 import message_pb2 as pb
from glade.transport.v1 import run_pb2

__all__ = ["ObjectRpcs", "check_id", "metadata_value"]

_MAX_ID = (1 << 63) - 1
MAX_IDS_PER_REQUEST = 10_000


def check_id(value: int, what: str) -> int:
    """``value`` if it can be a stored id; else NotFoundError naming ``what``."""
    if not 0 < value <= _MAX_ID:
        raise NotFoundError(f"unknown {what} {value}")
    return value


def metadata_value(context: grpc.ServicerContext, key: str) -> str:
    """The value of gRPC metadata ``key`` (AccessDeniedError if it is missing)."""
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    raise AccessDeniedError(f"missing gRPC metadata {key!r}: object calls carry credentials")


def metadata_id(context: grpc.ServicerContext, key: str, what: str) -> int:
    raw = metadata_value(context, key)
    if not raw.isdigit():
        raise AccessDeniedError(f"gRPC metadata {key!r} must be a {what} id, got {raw!r}")
    return check_id(int(raw), what)


class ObjectRpcs:
    """PushObject / PullObject / HasObjects over the store; each uploader pins what it sends."""

    def __init__(self, store: ObjectStore, garbage: GarbageCollector) -> None:
        self.store = store
        self.garbage = garbage

    def has(
        self, request: run_pb2.HasObjectsRequest, owner: Hashable
    ) -> run_pb2.HasObjectsResponse:
        ids = list(request.object_ids)
        if len(ids) > MAX_IDS_PER_REQUEST:
            raise InvalidArgumentError(f"at most {MAX_IDS_PER_REQUEST} object ids per request")
        for object_id in ids:
            check_object_id(object_id)
        self.garbage.pin(owner, ids)  # present ones are about to be referenced
        return run_pb2.HasObjectsResponse(missing=self.store.missing(ids))

    def push(self, chunks: Iterator[pb.ObjectChunk], owner: Hashable) -> run_pb2.PushObjectResponse:
        """Store an uploaded object; an unnamed one (empty ids) is named by its hash."""
        object_id, size = self.store.put_chunks(_pinning(chunks, self.garbage, owner))
        self.garbage.pin(owner, [object_id])  # an unnamed one gets its pin now
        return run_pb2.PushObjectResponse(object_id=object_id, size=size)

    def pull(self, request: run_pb2.PullObjectRequest) -> Iterator[bytes]:
        """Serialized chunks (served with ``RawObjectsInterceptor``)."""
        check_object_id(request.object_id)
        return self.store.read_encoded(request.object_id, offset=request.offset)


def _pinning(chunks: Iterator[Any], garbage: GarbageCollector, owner: Hashable) -> Iterator[Any]:
    first = True
    for chunk in chunks:
        if first and chunk.object_id:  # before the object lands: GC may run meanwhile
            garbage.pin(owner, [chunk.object_id])
        first = False
        yield chunk
