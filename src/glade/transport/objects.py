"""Client side of the object RPCs: upload what the peer lacks, download and verify by hash.

Both the ServerApp process (over ServerAppIO) and the SuperNode (over Fleet) move arrays
this way, and ``glade run`` uploads app bundles over Control. Each object streams in
bounded chunks (:func:`~glade.transport.chunks.iter_chunks`), so no object is limited by
gRPC's message size and no side holds more than the object itself plus one chunk.

Small objects (up to :data:`SMALL_OBJECT` bytes) may travel *inline*, whole, in the
``inline_objects`` of a message batch or push request: :func:`send_objects` pushes the
large ones and returns the small ones to attach; :func:`receive_objects` takes a received
``MessageBatch`` and returns every object it refers to (inline ones checked, the rest
pulled). A small model thus needs no object calls at all.

``stub`` is a generated stub (FleetStub, ServerAppIoStub, ControlStub) or, faster for large
objects, an :class:`~glade.transport.object_wire.ObjectStub` for the same service.

Credentials travel as gRPC ``metadata`` (``glade-node-id`` on Fleet; ``glade-run-id`` and
``glade-run-token`` on ServerAppIO). Failed calls raise the Glade exception for their
status (:func:`~glade.transport.status.error_from_rpc`); an unreachable peer raises
:class:`~glade.errors.TransportError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import grpc

from glade.array import Array
from glade.errors import SerdeError
from glade.message import Message
from glade.transport.chunks import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_OBJECT_SIZE,
    Allocate,
    ChunkAssembler,
    iter_chunks,
)
from glade.transport.codec import ObjectSource
from glade.transport.object_wire import iter_encoded_chunks
from glade.transport.status import error_from_rpc
from glade.transport.v1 import message_pb2 as pb
from glade.transport.v1 import run_pb2

__all__ = [
    "NODE_ID_KEY",
    "RUN_ID_KEY",
    "RUN_TOKEN_KEY",
    "MAX_INLINE_BYTES",
    "SMALL_OBJECT",
    "Metadata",
    "missing_objects",
    "node_metadata",
    "object_infos",
    "pull_object",
    "inline_objects",
    "pull_objects",
    "push_object",
    "push_objects",
    "push_unnamed",
    "upload_unhashed",
    "receive_objects",
    "send_objects",
    "split_inline",
    "run_metadata",
]

Metadata = Sequence[tuple[str, str]]
"""gRPC call metadata: (key, value) pairs."""

SMALL_OBJECT = 64 * 1024
"""Objects up to this size travel inline, or are pushed without a HasObjects round trip."""
MAX_INLINE_BYTES = 1024 * 1024
"""At most this many bytes of inline objects per request or batch."""

_OBJECT_ID = re.compile(r"[0-9a-f]{64}")

NODE_ID_KEY = "glade-node-id"
RUN_ID_KEY = "glade-run-id"
RUN_TOKEN_KEY = "glade-run-token"


def node_metadata(node_id: int) -> Metadata:
    """Credentials of a SuperNode's object calls on the Fleet API."""
    return ((NODE_ID_KEY, str(node_id)),)


def run_metadata(run_id: int, token: str) -> Metadata:
    """Credentials of a ServerApp process's object calls on the ServerAppIO API."""
    return ((RUN_ID_KEY, str(run_id)), (RUN_TOKEN_KEY, token))


def missing_objects(
    stub: Any, object_ids: Iterable[str], *, metadata: Metadata = (), timeout: float | None = None
) -> list[str]:
    """The ids among ``object_ids`` that the peer does not hold yet (HasObjects)."""
    ids = list(dict.fromkeys(object_ids))
    if not ids:
        return []
    try:
        response = stub.HasObjects(
            run_pb2.HasObjectsRequest(object_ids=ids), metadata=metadata, timeout=timeout
        )
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from exc
    return list(response.missing)


def push_objects(
    stub: Any,
    objects: Mapping[str, ObjectSource],
    *,
    metadata: Metadata = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timeout: float | None = None,
) -> list[str]:
    """Upload the objects the peer lacks (HasObjects, then one PushObject stream each).

    ``objects`` maps object id (hex SHA-256) -> Array or bytes; the ids are trusted here and
    verified by the receiver. Objects of at most ``SMALL_OBJECT`` bytes are sent without
    asking first (asking costs more than sending). Returns the ids that were uploaded.
    """
    small = [oid for oid, source in objects.items() if _size(source) <= SMALL_OBJECT]
    large = [oid for oid in objects if oid not in set(small)]
    missing = small + missing_objects(stub, large, metadata=metadata, timeout=timeout)
    for object_id in missing:
        push_object(
            stub,
            object_id,
            objects[object_id],
            metadata=metadata,
            chunk_size=chunk_size,
            timeout=timeout,
        )
    return missing


def push_object(
    stub: Any,
    object_id: str,
    source: ObjectSource,
    *,
    metadata: Metadata = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timeout: float | None = None,
) -> None:
    """Upload one object in one PushObject stream (whether or not the peer has it)."""
    chunks: Iterable[Any]
    if getattr(stub, "raw_chunks", False):  # an ObjectStub: serialized without extra copies
        chunks = iter_encoded_chunks(source, object_id=object_id, chunk_size=chunk_size)
    else:
        chunks = iter_chunks(source, object_id=object_id, chunk_size=chunk_size)
    try:
        response = stub.PushObject(chunks, metadata=metadata, timeout=timeout)
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from exc
    if response.object_id != object_id:
        raise SerdeError(f"the peer stored object {response.object_id!r} when sent {object_id!r}")


def push_unnamed(
    stub: Any,
    source: ObjectSource,
    *,
    metadata: Metadata = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timeout: float | None = None,
) -> str:
    """Upload one object without hashing it first; returns the id the peer named it by.

    The chunks carry an empty object id: the receiver hashes the bytes as they arrive (it
    would to verify them anyway) and stores the object under that hash. One SHA-256 pass
    fewer for a sender that has not hashed the object yet (a SuperNode's reply), at the
    price of asking whether the peer has it already. The returned id is trusted: the
    sender's Arrays can be given it (see :meth:`glade.Array.digest`).
    """
    chunks: Iterable[Any]
    if getattr(stub, "raw_chunks", False):
        chunks = iter_encoded_chunks(source, object_id="", chunk_size=chunk_size)
    else:
        chunks = iter_chunks(source, object_id="", chunk_size=chunk_size)
    try:
        response = stub.PushObject(chunks, metadata=metadata, timeout=timeout)
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from exc
    object_id = str(response.object_id)
    if not _OBJECT_ID.fullmatch(object_id) or response.size != _size(source):
        raise SerdeError(
            f"the peer stored an unnamed upload of {_size(source)} bytes as {object_id!r} "
            f"({response.size} bytes)"
        )
    return object_id


def upload_unhashed(
    stub: Any,
    messages: Iterable[Message],
    *,
    metadata: Metadata = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timeout: float | None = None,
    push: Callable[[Array], str] | None = None,
) -> list[str]:
    """Upload, unnamed (:func:`push_unnamed`), the large arrays of ``messages`` that were
    not hashed yet, and give each the id the peer named it by; returns those ids.

    Encoding the messages afterwards (:func:`~glade.transport.codec.message_to_proto`)
    hashes nothing large, and :func:`send_objects` finds these objects on the peer already.
    ``push(array)``, if given, uploads one array instead of :func:`push_unnamed` (e.g. over
    a bulk port) and returns the id the peer named it by.
    """
    uploaded: list[str] = []
    seen: set[int] = set()
    for message in messages:
        for record in message.content.array_records.values() if message.content else ():
            for array in record.values():
                if array.nbytes <= SMALL_OBJECT or array._digest is not None:
                    continue
                if id(array) in seen:
                    continue
                seen.add(id(array))
                if push is not None:
                    object_id = push(array)
                else:
                    object_id = push_unnamed(
                        stub, array, metadata=metadata, chunk_size=chunk_size, timeout=timeout
                    )
                array._digest = object_id  # what the peer computed from these very bytes
                uploaded.append(object_id)
    return uploaded


def split_inline(
    objects: Mapping[str, ObjectSource],
    *,
    limit: int = SMALL_OBJECT,
    budget: int = MAX_INLINE_BYTES,
) -> tuple[list[pb.ObjectChunk], dict[str, ObjectSource]]:
    """Split ``objects`` into whole-object chunks to send inline and the rest."""
    inline: list[pb.ObjectChunk] = []
    rest: dict[str, ObjectSource] = {}
    for object_id, source in objects.items():
        size = _size(source)
        if size <= limit and size <= budget:
            inline.extend(iter_chunks(source, object_id=object_id, chunk_size=max(size, 1)))
            budget -= size
        else:
            rest[object_id] = source
    return inline, rest


def send_objects(
    stub: Any,
    objects: Mapping[str, ObjectSource],
    *,
    metadata: Metadata = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timeout: float | None = None,
) -> list[pb.ObjectChunk]:
    """Upload the large objects the peer lacks; returns the small ones to send inline.

    Put the returned chunks in the ``inline_objects`` of the request that carries the
    messages (PushMessages).
    """
    inline, rest = split_inline(objects)
    push_objects(stub, rest, metadata=metadata, chunk_size=chunk_size, timeout=timeout)
    return inline


def inline_objects(
    chunks: Iterable[pb.ObjectChunk], *, max_size: int = DEFAULT_MAX_OBJECT_SIZE
) -> dict[str, memoryview]:
    """The objects sent whole in ``chunks``, each verified against its id."""
    out: dict[str, memoryview] = {}
    for chunk in chunks:
        if chunk.object_id in out:
            continue
        assembler = ChunkAssembler(chunk.object_id, max_size=max_size)
        if not assembler.add(chunk):
            raise SerdeError(f"inline object {chunk.object_id} is not whole: send it in one chunk")
        out[chunk.object_id] = assembler.finish()
    return out


def receive_objects(
    stub: Any,
    batch: run_pb2.MessageBatch,
    *,
    metadata: Metadata = (),
    max_size: int = DEFAULT_MAX_OBJECT_SIZE,
    timeout: float | None = None,
    allocate: Allocate | None = None,
) -> dict[str, memoryview]:
    """Every object a received MessageBatch refers to: inline ones checked, others pulled
    (into buffers from ``allocate``, if given: see :class:`~glade.transport.chunks.Allocate`)."""
    found = inline_objects(batch.inline_objects, max_size=max_size)
    rest = [info.object_id for info in batch.objects if info.object_id not in found]
    found.update(
        pull_objects(
            stub, rest, metadata=metadata, max_size=max_size, timeout=timeout, allocate=allocate
        )
    )
    return found


def pull_object(
    stub: Any,
    object_id: str,
    *,
    metadata: Metadata = (),
    max_size: int = DEFAULT_MAX_OBJECT_SIZE,
    timeout: float | None = None,
    allocate: Allocate | None = None,
) -> memoryview:
    """Download one object (PullObject stream) and verify it; returns its read-only bytes.

    Raises :class:`~glade.errors.SerdeError` if the bytes do not hash to ``object_id`` or the
    object is larger than ``max_size``. ``allocate`` makes the buffer (default: private memory).
    """
    assembler = ChunkAssembler(object_id, max_size=max_size, allocate=allocate)
    request = run_pb2.PullObjectRequest(object_id=object_id)
    try:
        for chunk in stub.PullObject(request, metadata=metadata, timeout=timeout):
            assembler.add(chunk)
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from exc
    return assembler.finish()


def pull_objects(
    stub: Any,
    object_ids: Iterable[str],
    *,
    metadata: Metadata = (),
    max_size: int = DEFAULT_MAX_OBJECT_SIZE,
    timeout: float | None = None,
    allocate: Allocate | None = None,
) -> dict[str, memoryview]:
    """Download and verify several objects (each once); returns id -> bytes."""
    return {
        object_id: pull_object(
            stub,
            object_id,
            metadata=metadata,
            max_size=max_size,
            timeout=timeout,
            allocate=allocate,
        )
        for object_id in dict.fromkeys(object_ids)
    }


def object_infos(objects: Mapping[str, ObjectSource]) -> list[pb.ObjectInfo]:
    """ObjectInfo (id, size) entries for a message batch."""
    return [pb.ObjectInfo(object_id=oid, size=_size(src)) for oid, src in objects.items()]


def _size(source: ObjectSource) -> int:
    if isinstance(source, bytes | bytearray):
        return len(source)
    if isinstance(source, memoryview):
        return source.nbytes
    return source.nbytes
