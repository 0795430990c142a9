"""Message/Context <-> glade.v1 protobuf, and the self-contained byte envelope."""

from __future__ import annotations

import contextlib
import math

import ml_dtypes
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import (
    arrays,
    assert_same_context,
    assert_same_message,
    contexts,
    messages,
    strict,
)

from glade import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    ErrorCode,
    Message,
    MetricRecord,
    RecordDict,
    SerdeError,
)
from glade.digest import content_id
from glade.transport import (
    context_from_proto,
    context_to_proto,
    message_from_bytes,
    message_from_proto,
    message_to_bytes,
    message_to_proto,
)
from glade.transport.v1 import message_pb2 as pb

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _weights_message() -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord(
                {
                    "w": np.arange(6, dtype=np.float32).reshape(2, 3),
                    "b": np.ones(3, dtype=ml_dtypes.bfloat16),
                }
            ),
            "metrics": MetricRecord({"num-examples": 10, "loss": 0.25}),
            "config": ConfigRecord({"lr": 0.1, "layers": [b"a", b"b"], "on": True}),
        }
    )
    return Message(content, dst_node_id=3, group_id="1", run_id=12)


# -- round trips ---------------------------------------------------------------------------
@SETTINGS
@given(messages())
def test_message_round_trip_with_array_objects(msg: Message) -> None:
    proto, objects = message_to_proto(msg)
    assert all(oid == array.digest for oid, array in objects.items())
    assert_same_message(message_from_proto(proto, objects, verify=True), msg)


@SETTINGS
@given(messages())
def test_message_round_trip_over_the_wire(msg: Message) -> None:
    """Serialized protobuf plus objects as raw bytes, as a receiver gets them."""
    proto, objects = message_to_proto(msg)
    received = pb.Message.FromString(proto.SerializeToString())
    raw = {oid: array.tobytes() for oid, array in objects.items()}
    assert_same_message(message_from_proto(received, raw, verify=True), msg)


@SETTINGS
@given(messages())
def test_message_round_trip_through_bytes(msg: Message) -> None:
    assert_same_message(message_from_bytes(message_to_bytes(msg)), msg)


@SETTINGS
@given(contexts)
def test_context_round_trip(ctx: Context) -> None:
    proto, objects = context_to_proto(ctx)
    received = pb.Context.FromString(proto.SerializeToString())
    raw = {oid: memoryview(array.tobytes()) for oid, array in objects.items()}
    assert_same_context(context_from_proto(received, raw, verify=True), ctx)
    assert_same_context(context_from_proto(proto, objects), ctx)


@SETTINGS
@given(arrays())
def test_arrays_are_not_inlined_in_the_protobuf(array: Array) -> None:
    msg = Message(RecordDict({"a": ArrayRecord({"x": array})}))
    proto, objects = message_to_proto(msg)
    ref = proto.content.entries[0].array_record.entries[0].value
    assert (ref.dtype, tuple(ref.shape), ref.nbytes) == (array.dtype, array.shape, array.nbytes)
    assert ref.object_id == content_id(array.tobytes())
    assert list(objects) == [ref.object_id]
    assert objects[ref.object_id] is array


def test_order_and_exact_types_survive() -> None:
    msg = _weights_message()
    back = message_from_bytes(message_to_bytes(msg))
    assert list(back.content) == ["arrays", "metrics", "config"]
    assert list(back.content["arrays"]) == ["w", "b"]
    assert back.content["config"]["on"] is True
    assert back.content["arrays"]["b"].dtype == "bfloat16"
    assert strict(back.content) == strict(msg.content)


def test_equal_bytes_share_one_object_across_dtypes() -> None:
    arrays_ = ArrayRecord(
        {
            "f": np.zeros(4, np.float32),
            "i": np.zeros(4, np.int32),
            "m": np.zeros((2, 2), np.uint32),
        }
    )
    msg = Message(RecordDict({"a": arrays_, "again": arrays_.copy()}))
    proto, objects = message_to_proto(msg)
    assert len(objects) == 1
    back = message_from_proto(proto, objects, verify=True)
    assert strict(back.content) == strict(msg.content)


def test_special_floats_survive() -> None:
    msg = Message(RecordDict({"m": MetricRecord({"nan": math.nan, "inf": [-math.inf, 0.5]})}))
    back = message_from_bytes(message_to_bytes(msg)).content["m"]
    assert math.isnan(back["nan"]) and back["inf"] == [-math.inf, 0.5]


def test_error_message_round_trip() -> None:
    instruction = _weights_message()
    reply = Message.error_reply(
        instruction, Error(code=ErrorCode.CLIENT_APP_CRASHED, reason="Traceback: boom ✗")
    )
    back = message_from_bytes(message_to_bytes(reply))
    assert back.has_error and not back.has_content
    assert back.error == reply.error and back.error.code == ErrorCode.CLIENT_APP_CRASHED
    assert back.metadata.reply_to_message_id == instruction.metadata.message_id


def test_decoded_arrays_are_zero_copy_views() -> None:
    data = message_to_bytes(_weights_message())
    back = message_from_bytes(data)
    w = back.content["arrays"]["w"].numpy()
    assert np.shares_memory(w, np.frombuffer(data, dtype=np.uint8))
    assert not w.flags.writeable


# -- decoding errors -----------------------------------------------------------------------
def _proto_with_objects() -> tuple[pb.Message, dict[str, Array]]:
    return message_to_proto(_weights_message())


def _first_ref(proto: pb.Message) -> pb.ArrayRef:
    return proto.content.entries[0].array_record.entries[0].value


def test_missing_object_is_named() -> None:
    proto, objects = _proto_with_objects()
    missing = _first_ref(proto).object_id
    del objects[missing]
    with pytest.raises(SerdeError, match=f"{missing}.*missing"):
        message_from_proto(proto, objects)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("dtype", "float64", "does not take"),
        ("dtype", "float33", "unknown array dtype"),
        ("dtype", "object", "not a fixed-size numeric"),
        ("nbytes", 25, "does not take"),
        ("shape", [3, 3], "does not take"),
    ],
)
def test_inconsistent_array_reference(field: str, value: object, match: str) -> None:
    proto, objects = _proto_with_objects()
    ref = _first_ref(proto)
    if field == "shape":
        del ref.shape[:]
        ref.shape.extend(value)  # type: ignore[arg-type]
    else:
        setattr(ref, field, value)
    with pytest.raises(SerdeError, match=match):
        message_from_proto(proto, objects)


def test_object_of_the_wrong_size() -> None:
    proto, objects = _proto_with_objects()
    oid = _first_ref(proto).object_id
    raw = {k: v.tobytes() for k, v in objects.items()}
    raw[oid] = raw[oid][:-1]
    with pytest.raises(SerdeError, match=f"{oid}.* has 23 bytes"):
        message_from_proto(proto, raw)


def test_object_with_other_bytes_fails_verification() -> None:
    proto, objects = _proto_with_objects()
    oid = _first_ref(proto).object_id
    raw = {k: bytearray(v.tobytes()) for k, v in objects.items()}
    raw[oid][0] ^= 1
    assert message_from_proto(proto, raw).content["arrays"]["w"].nbytes == 24  # not checked
    with pytest.raises(SerdeError, match="does not match its bytes"):
        message_from_proto(proto, raw, verify=True)


def test_duplicate_and_empty_keys_are_refused() -> None:
    proto, objects = _proto_with_objects()
    proto.content.entries.add().CopyFrom(proto.content.entries[1])
    with pytest.raises(SerdeError, match="'metrics' twice"):
        message_from_proto(proto, objects)
    proto, objects = _proto_with_objects()
    proto.content.entries[1].key = ""
    with pytest.raises(SerdeError, match="invalid content"):
        message_from_proto(proto, objects)


def test_entries_without_a_value_are_refused() -> None:
    proto, objects = _proto_with_objects()
    proto.content.entries.add(key="nothing")
    with pytest.raises(SerdeError, match=r"content\['nothing'\] holds no record"):
        message_from_proto(proto, objects)
    proto, objects = _proto_with_objects()
    proto.content.entries[1].metric_record.entries.add(key="empty")
    with pytest.raises(SerdeError, match=r"\['empty'\] has no value"):
        message_from_proto(proto, objects)


def test_invalid_metadata_and_body() -> None:
    proto, objects = _proto_with_objects()
    proto.metadata.message_type = "Not A Type"
    with pytest.raises(SerdeError, match="invalid message metadata"):
        message_from_proto(proto, objects)
    proto.metadata.message_type = "train"
    proto.metadata.ttl = 0.0
    with pytest.raises(SerdeError, match="ttl"):
        message_from_proto(proto, objects)
    proto.ClearField("metadata")
    with pytest.raises(SerdeError, match="no metadata"):
        message_from_proto(proto, objects)
    proto, objects = _proto_with_objects()
    proto.ClearField("content")
    with pytest.raises(SerdeError, match="neither content nor error"):
        message_from_proto(proto, objects)
    with pytest.raises(SerdeError, match=r"expected a glade\.v1\.Message"):
        message_from_proto(pb.Context(), objects)  # type: ignore[arg-type]


@SETTINGS
@given(st.data())
def test_mutated_protobuf_decodes_or_raises_serde_error(data: st.DataObject) -> None:
    proto, objects = message_to_proto(data.draw(messages()))
    wire = bytearray(proto.SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        if wire:
            wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    try:
        mutated = pb.Message.FromString(bytes(wire))
    except DecodeError:
        return  # the gRPC layer rejects these before the codec sees them
    with contextlib.suppress(SerdeError):
        message_from_proto(mutated, objects, verify=True)


# -- encoding errors -----------------------------------------------------------------------
def test_unencodable_values_raise_serde_error() -> None:
    with pytest.raises(SerdeError, match=r"content\['m'\]"):
        message_to_proto(Message(RecordDict({"m": MetricRecord({"big": 2**70})})))
    with pytest.raises(SerdeError, match=r"Metadata\.run_id"):
        message_to_proto(Message(RecordDict(), run_id=-1))
    with pytest.raises(SerdeError, match=r"run_config\['x'\]"):
        context_to_proto(Context(run_id=1, node_id=1, run_config={"x": [1, 2]}))
    with pytest.raises(SerdeError, match=r"Context\.node_id"):
        context_to_proto(Context(run_id=1, node_id=2**64))


def test_records_mutated_after_validation_still_fail_cleanly() -> None:
    metrics = MetricRecord({"l": [1, 2]})
    metrics["l"].append("three")  # type: ignore[union-attr]
    with pytest.raises(SerdeError, match=r"content\['m'\]"):
        message_to_proto(Message(RecordDict({"m": metrics})))


def test_numpy_scalars_in_user_config_are_plain_values() -> None:
    ctx = Context(run_id=1, node_id=2, node_config={"partition-id": np.int64(3)})
    proto, objects = context_to_proto(ctx)
    assert context_from_proto(proto, objects).node_config == {"partition-id": 3}


# -- envelope ------------------------------------------------------------------------------
@SETTINGS
@given(st.binary(max_size=200))
def test_garbage_bytes_raise_serde_error(data: bytes) -> None:
    with pytest.raises(SerdeError):
        message_from_bytes(data)


@SETTINGS
@given(st.binary(max_size=200))
def test_garbage_after_the_magic_decodes_or_raises_serde_error(data: bytes) -> None:
    with contextlib.suppress(SerdeError):
        message_from_bytes(b"GLDE\x01" + data)


@SETTINGS
@given(messages(), st.data())
def test_truncated_envelope_raises_serde_error(msg: Message, data: st.DataObject) -> None:
    full = message_to_bytes(msg)
    cut = data.draw(st.integers(0, len(full) - 1))
    with pytest.raises(SerdeError):
        message_from_bytes(full[:cut])


def test_envelope_errors() -> None:
    full = message_to_bytes(_weights_message())
    with pytest.raises(SerdeError, match="trailing"):
        message_from_bytes(full + b"\x00")
    with pytest.raises(SerdeError, match="version 2"):
        message_from_bytes(full[:4] + b"\x02" + full[5:])
    with pytest.raises(SerdeError, match="bytes-like"):
        message_from_bytes(12345)  # type: ignore[arg-type]
    corrupted = bytearray(full)
    corrupted[-1] ^= 0xFF  # inside the last object's bytes
    with pytest.raises(SerdeError, match="does not match its bytes"):
        message_from_bytes(corrupted)
    assert message_from_bytes(corrupted, verify=False).has_content
