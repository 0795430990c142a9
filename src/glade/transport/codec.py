"""Convert messages and contexts to and from the ``glade.v1`` protobuf wire format.

Arrays never travel inside the protobuf: an ``ArrayRef`` (dtype, shape, nbytes, object id)
takes their place and the arrays themselves are returned as *objects*, keyed by object id (the
hex SHA-256 of their bytes), to be sent in chunks (:mod:`glade.transport.chunks`) or stored.
Arrays with equal bytes share one object, even when their dtypes or shapes differ.

Anything that cannot be encoded or decoded raises :class:`~glade.errors.SerdeError`.

>>> import numpy as np
>>> from glade import ArrayRecord, Message, RecordDict
>>> msg = Message(RecordDict({"arrays": ArrayRecord([np.arange(3.0)])}), dst_node_id=1)
>>> proto, objects = message_to_proto(msg)
>>> back = message_from_proto(proto, objects)
>>> back.content["arrays"]["0"] == msg.content["arrays"]["0"]
True
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import DecodeError

from glade.array import Array
from glade.context import Context
from glade.errors import SerdeError
from glade.message import Error, Message, Metadata
from glade.transport._record_codec import (
    ENCODE_ERRORS,
    ObjectSource,
    RecordDecoder,
    records_to_proto,
    user_config_from_proto,
    user_config_to_proto,
)
from glade.transport.v1 import message_pb2 as pb

__all__ = [
    "ENVELOPE_MAGIC",
    "ObjectSource",
    "context_from_proto",
    "context_to_proto",
    "message_from_bytes",
    "message_from_proto",
    "message_to_bytes",
    "message_to_proto",
]

ENVELOPE_MAGIC = b"GLDE"
"""First bytes of :func:`message_to_bytes` output."""
_ENVELOPE_VERSION = 1
_PREFIX_LEN = len(ENVELOPE_MAGIC) + 1 + 8  # magic, version byte, header length (u64 LE)


# -- protobuf ------------------------------------------------------------------------------
def message_to_proto(msg: Message) -> tuple[pb.Message, dict[str, Array]]:
    """Encode ``msg``; returns the protobuf and the arrays it references, by object id."""
    proto = pb.Message()
    objects: dict[str, Array] = {}
    _metadata_to_proto(msg.metadata, proto.metadata)
    if msg.error is not None:
        try:
            proto.error.code = msg.error.code
            proto.error.reason = msg.error.reason
        except ENCODE_ERRORS as exc:
            raise SerdeError(f"cannot encode the message error {msg.error!r}: {exc}") from exc
    else:
        assert msg.content is not None
        records_to_proto(msg.content, proto.content, objects, where="content")
    return proto, objects


def message_from_proto(
    proto: pb.Message, objects: Mapping[str, ObjectSource], *, verify: bool = False
) -> Message:
    """Decode a protobuf message; its arrays are looked up in ``objects`` by object id.

    Arrays are zero-copy views of the objects. With ``verify``, every object is hashed and
    checked against its id (leave it off for objects verified on arrival, as by
    :class:`~glade.transport.chunks.ChunkAssembler`).
    """
    if not isinstance(proto, pb.Message):
        raise SerdeError(f"expected a glade.v1.Message, got {type(proto).__name__}")
    if not proto.HasField("metadata"):
        raise SerdeError("message has no metadata")
    metadata = _metadata_from_proto(proto.metadata)
    body = proto.WhichOneof("body")
    if body == "error":
        error = Error(code=proto.error.code, reason=proto.error.reason)
        return Message(error=error, metadata=metadata)
    if body == "content":
        decoder = RecordDecoder(objects, verify=verify)
        return Message(decoder.records(proto.content, where="content"), metadata=metadata)
    raise SerdeError(f"message {metadata.message_id!r} has neither content nor error")


def context_to_proto(ctx: Context) -> tuple[pb.Context, dict[str, Array]]:
    """Encode ``ctx``; returns the protobuf and the arrays of its state, by object id."""
    proto = pb.Context()
    objects: dict[str, Array] = {}
    _set_fields(proto, "Context", run_id=ctx.run_id, node_id=ctx.node_id)
    user_config_to_proto(ctx.node_config, proto.node_config, where="node_config")
    user_config_to_proto(ctx.run_config, proto.run_config, where="run_config")
    records_to_proto(ctx.state, proto.state, objects, where="state")
    return proto, objects


def context_from_proto(
    proto: pb.Context, objects: Mapping[str, ObjectSource], *, verify: bool = False
) -> Context:
    """Decode a protobuf context; its state's arrays are looked up in ``objects``."""
    if not isinstance(proto, pb.Context):
        raise SerdeError(f"expected a glade.v1.Context, got {type(proto).__name__}")
    decoder = RecordDecoder(objects, verify=verify)
    return Context(
        run_id=proto.run_id,
        node_id=proto.node_id,
        node_config=user_config_from_proto(proto.node_config, where="node_config"),
        run_config=user_config_from_proto(proto.run_config, where="run_config"),
        state=decoder.records(proto.state, where="state"),
    )


def _set_fields(proto: object, kind: str, **values: object) -> None:
    for name, value in values.items():
        try:
            setattr(proto, name, value)
        except ENCODE_ERRORS as exc:
            raise SerdeError(f"cannot encode {kind}.{name}={value!r}: {exc}") from exc


def _metadata_to_proto(md: Metadata, out: pb.Metadata) -> None:
    names = (
        "run_id",
        "message_id",
        "src_node_id",
        "dst_node_id",
        "reply_to_message_id",
        "group_id",
        "message_type",
        "ttl",
        "created_at",
    )
    _set_fields(out, "Metadata", **{name: getattr(md, name) for name in names})


def _metadata_from_proto(md: pb.Metadata) -> Metadata:
    try:
        return Metadata(
            run_id=md.run_id,
            message_id=md.message_id,
            src_node_id=md.src_node_id,
            dst_node_id=md.dst_node_id,
            reply_to_message_id=md.reply_to_message_id,
            group_id=md.group_id,
            message_type=md.message_type,
            ttl=md.ttl,
            created_at=md.created_at,
        )
    except (TypeError, ValueError) as exc:
        raise SerdeError(f"invalid message metadata: {exc}") from exc


# -- self-contained envelope ---------------------------------------------------------------
def message_to_bytes(msg: Message) -> bytes:
    """Encode ``msg`` with its arrays into one self-contained byte string (storage, tests).

    Layout: ``b"GLDE"``, a version byte, the header length (u64 little-endian), a
    ``glade.v1.MessageEnvelope`` header, then the objects' bytes in the header's order.
    """
    proto, objects = message_to_proto(msg)
    infos = [pb.ObjectInfo(object_id=oid, size=array.nbytes) for oid, array in objects.items()]
    header = pb.MessageEnvelope(message=proto, objects=infos).SerializeToString()
    prefix = ENVELOPE_MAGIC + bytes([_ENVELOPE_VERSION]) + len(header).to_bytes(8, "little")
    return b"".join([prefix, header, *(array.memoryview() for array in objects.values())])


def message_from_bytes(data: bytes | bytearray | memoryview, *, verify: bool = True) -> Message:
    """Decode the output of :func:`message_to_bytes`; arrays are zero-copy views of ``data``.

    With ``verify`` (the default) every array's bytes are checked against their SHA-256 id.
    """
    try:
        view = memoryview(data).cast("B")
    except TypeError as exc:
        raise SerdeError(f"expected a flat bytes-like object: {exc}") from None
    if len(view) < _PREFIX_LEN or view[: len(ENVELOPE_MAGIC)] != ENVELOPE_MAGIC:
        raise SerdeError("not a Glade message envelope (bad magic bytes)")
    if view[4] != _ENVELOPE_VERSION:
        raise SerdeError(
            f"unsupported envelope version {view[4]} (this Glade reads {_ENVELOPE_VERSION})"
        )
    end = _PREFIX_LEN + int.from_bytes(view[5:_PREFIX_LEN], "little")
    if end > len(view):
        raise SerdeError(f"truncated envelope: the header needs {end} bytes, got {len(view)}")
    try:
        envelope = pb.MessageEnvelope.FromString(view[_PREFIX_LEN:end])
    except DecodeError as exc:
        raise SerdeError(f"corrupt envelope header: {exc}") from None
    objects: dict[str, memoryview] = {}
    pos = end
    for info in envelope.objects:
        if pos + info.size > len(view):
            raise SerdeError(f"truncated envelope: object {info.object_id!r} is cut short")
        objects[info.object_id] = view[pos : pos + info.size]
        pos += info.size
    if pos != len(view):
        raise SerdeError(f"envelope has {len(view) - pos} unexpected trailing bytes")
    if not envelope.HasField("message"):
        raise SerdeError("envelope holds no message")
    return message_from_proto(envelope.message, objects, verify=verify)
