"""The hand-written ObjectChunk codec agrees with protobuf and refuses malformed bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glade.errors import SerdeError
from glade.transport.object_wire import decode_chunk, encode_chunk, iter_encoded_chunks
from glade.transport.v1 import message_pb2 as pb

IDS = st.text(alphabet="0123456789abcdef", min_size=0, max_size=64)


@settings(max_examples=60, deadline=None)
@given(IDS, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=300))
def test_encode_matches_protobuf_and_decodes_back(
    object_id: str, offset: int, total: int, data: bytes
) -> None:
    encoded = encode_chunk(object_id, offset, total, data)
    reference = pb.ObjectChunk(object_id=object_id, offset=offset, total_size=total, data=data)
    assert encoded == reference.SerializeToString(deterministic=True)
    assert pb.ObjectChunk.FromString(encoded) == reference
    raw = decode_chunk(reference.SerializeToString())
    assert (raw.object_id, raw.offset, raw.total_size, bytes(raw.data)) == (
        object_id,
        offset,
        total,
        data,
    )


def test_decode_skips_unknown_fields_and_any_order() -> None:
    reference = pb.ObjectChunk(object_id="ab", offset=3, total_size=9, data=b"xyz")
    fields = reference.SerializeToString()
    unknown = b"\x28\x05" + b"\x32\x02hi" + b"\x3d\x00\x00\x00\x00" + b"\x39" + b"\x00" * 8
    raw = decode_chunk(unknown + fields[::-1][::-1])
    assert (raw.object_id, raw.offset, raw.total_size, bytes(raw.data)) == ("ab", 3, 9, b"xyz")
    reordered = b"\x22\x03xyz" + b"\x18\x09" + b"\x0a\x02ab" + b"\x10\x03"
    assert bytes(decode_chunk(reordered).data) == b"xyz"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x0a\x10ab",  # truncated length-delimited field
        b"\x10\xff\xff\xff",  # truncated varint
        b"\x10" + b"\xff" * 11 + b"\x01",  # overlong varint
        b"\x0b",  # group start: unsupported wire type
        b"\x12\x01x",  # offset sent as bytes
        b"\x0a\x02\xff\xfe",  # id not text
    ],
)
def test_malformed_chunks_raise_serde_errors(garbage: bytes) -> None:
    with pytest.raises(SerdeError):
        decode_chunk(garbage)


def test_iter_encoded_chunks_covers_the_object() -> None:
    data = bytes(range(256)) * 10
    chunks = [
        pb.ObjectChunk.FromString(c)
        for c in iter_encoded_chunks(data, object_id="a", chunk_size=1000)
    ]
    assert [c.offset for c in chunks] == [0, 1000, 2000]
    assert b"".join(c.data for c in chunks) == data
    assert all(c.total_size == len(data) for c in chunks)
    (empty,) = list(iter_encoded_chunks(b"", object_id="a", chunk_size=10))
    assert pb.ObjectChunk.FromString(empty) == pb.ObjectChunk(object_id="a")
