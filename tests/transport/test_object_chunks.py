"""Objects streamed as ObjectChunks and reassembled/verified by a ChunkAssembler."""

from __future__ import annotations

import itertools
import random
import tracemalloc

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_strategies import arrays

from glade import Array, SerdeError
from glade.digest import content_id
from glade.transport import ChunkAssembler, assemble_chunks, iter_chunks
from glade.transport.v1 import message_pb2 as pb

SETTINGS = settings(max_examples=40, deadline=None)


def _sha(data: bytes) -> str:
    return content_id(data)


def _over_the_wire(chunks: list[pb.ObjectChunk]) -> list[pb.ObjectChunk]:
    return [pb.ObjectChunk.FromString(c.SerializeToString()) for c in chunks]


@pytest.mark.parametrize(("size", "chunk_size"), [(1000, 100), (1000, 333), (1000, 4096), (0, 7)])
def test_round_trip_whether_or_not_the_chunk_size_divides(size: int, chunk_size: int) -> None:
    data = np.random.default_rng(size).bytes(size)
    chunks = _over_the_wire(list(iter_chunks(data, chunk_size=chunk_size)))
    assert len(chunks) == max(1, -(-size // chunk_size))
    assert [c.offset for c in chunks] == list(range(0, max(size, 1), chunk_size))
    assert all(len(c.data) <= chunk_size and c.total_size == size for c in chunks)
    assert all(c.object_id == _sha(data) for c in chunks)
    out = assemble_chunks(chunks, object_id=_sha(data))
    assert out.readonly and bytes(out) == data


@SETTINGS
@given(st.binary(max_size=3000), st.integers(1, 700), st.randoms(use_true_random=False))
def test_any_order_with_duplicates(data: bytes, chunk_size: int, rnd: random.Random) -> None:
    chunks = list(iter_chunks(data, chunk_size=chunk_size))
    chunks += rnd.sample(chunks, k=len(chunks) // 2)  # repeats
    rnd.shuffle(chunks)
    assembler = ChunkAssembler(_sha(data))
    done = [assembler.add(c) for c in chunks]
    first_seen: dict[int, int] = {}
    for i, chunk in enumerate(chunks):
        first_seen.setdefault(chunk.offset, i)
    # complete exactly when the last distinct piece arrives, and from then on
    assert done.index(True) == max(first_seen.values()) and all(done[done.index(True) :])
    assert bytes(assembler.finish()) == data


@SETTINGS
@given(st.binary(min_size=1, max_size=2000), st.data())
def test_overlapping_unaligned_chunkings_combine(data: bytes, draw: st.DataObject) -> None:
    """Chunks cut at different places by two senders (e.g. after a retry) still assemble."""
    object_id = _sha(data)
    chunks = []
    for _ in range(2):
        cuts = sorted(
            draw.draw(st.sets(st.integers(1, len(data) - 1), max_size=6)) if len(data) > 1 else []
        )
        bounds = [0, *cuts, len(data)]
        chunks += [
            pb.ObjectChunk(object_id=object_id, offset=a, total_size=len(data), data=data[a:b])
            for a, b in itertools.pairwise(bounds)
        ]
    chunks = draw.draw(st.permutations(chunks))
    assembler = ChunkAssembler(object_id)
    for chunk in chunks:
        assembler.add(chunk)
    assert assembler.received == len(data)
    assert bytes(assembler.finish()) == data


@SETTINGS
@given(arrays(), st.integers(1, 64))
def test_arrays_round_trip_as_chunks(array: Array, chunk_size: int) -> None:
    chunks = _over_the_wire(list(iter_chunks(array, chunk_size=chunk_size)))
    assembler = ChunkAssembler(array.digest)
    for chunk in chunks:
        assembler.add(chunk)
    back = assembler.finish_array(dtype=array.dtype, shape=array.shape)
    assert back == array and back.dtype == array.dtype


def test_bfloat16_array_round_trip() -> None:
    array = Array(np.linspace(-2, 2, 1001).astype(ml_dtypes.bfloat16).reshape(7, 11, 13))
    chunks = list(iter_chunks(array, chunk_size=1000))
    assembler = ChunkAssembler(array.digest)
    for chunk in reversed(chunks):
        assembler.add(chunk)
    assert assembler.finish_array(dtype="bfloat16", shape=(7, 11, 13)) == array


# -- corruption ----------------------------------------------------------------------------
def _chunks(size: int = 1000, chunk_size: int = 300) -> tuple[bytes, list[pb.ObjectChunk]]:
    data = np.random.default_rng(0).bytes(size)
    return data, list(iter_chunks(data, chunk_size=chunk_size))


def test_corrupted_chunk_fails_the_hash() -> None:
    data, chunks = _chunks()
    flipped = bytearray(chunks[1].data)
    flipped[5] ^= 0x01
    chunks[1].data = bytes(flipped)
    assembler = ChunkAssembler(_sha(data))
    for chunk in chunks:
        assembler.add(chunk)
    with pytest.raises(SerdeError, match="does not match its bytes"):
        assembler.finish()


def test_wrong_object_id_fails_the_hash() -> None:
    data, _ = _chunks()
    other = _sha(b"something else")
    with pytest.raises(SerdeError, match="does not match its bytes"):
        assemble_chunks(iter_chunks(data, object_id=other), object_id=other)


def test_conflicting_repeat_is_refused() -> None:
    data, chunks = _chunks()
    assembler = ChunkAssembler(_sha(data))
    assembler.add(chunks[0])
    assembler.add(chunks[0])  # an identical repeat is fine
    bad = pb.ObjectChunk()
    bad.CopyFrom(chunks[0])
    bad.offset = 10
    with pytest.raises(SerdeError, match="different bytes"):
        assembler.add(bad)


@pytest.mark.parametrize("how", ["missing", "short"])
def test_truncated_object_is_incomplete(how: str) -> None:
    data, chunks = _chunks()
    if how == "missing":
        chunks.pop(1)
    else:
        chunks[-1].data = chunks[-1].data[:-1]
    assembler = ChunkAssembler(_sha(data))
    assert not any(assembler.add(c) for c in chunks)
    with pytest.raises(SerdeError, match="incomplete"):
        assembler.finish()
    with pytest.raises(SerdeError, match="incomplete: 0 of unknown"):
        ChunkAssembler(_sha(data)).finish()


def test_bad_chunk_headers_are_refused() -> None:
    data, chunks = _chunks()
    oid = _sha(data)
    with pytest.raises(SerdeError, match="more than the 999 allowed"):
        ChunkAssembler(oid, max_size=999).add(chunks[0])
    assembler = ChunkAssembler(oid)
    assembler.add(chunks[0])
    with pytest.raises(SerdeError, match="disagree on its size"):
        assembler.add(pb.ObjectChunk(object_id=oid, offset=0, total_size=2000, data=b"x"))
    with pytest.raises(SerdeError, match="beyond"):
        assembler.add(pb.ObjectChunk(object_id=oid, offset=999, total_size=1000, data=b"xy"))
    with pytest.raises(SerdeError, match="sent to the assembler of"):
        assembler.add(pb.ObjectChunk(object_id=_sha(b""), offset=0, total_size=1000))
    with pytest.raises(SerdeError, match="invalid object id"):
        ChunkAssembler("ABC")


def test_finished_assembler_takes_nothing_more() -> None:
    data, chunks = _chunks()
    assembler = ChunkAssembler(_sha(data))
    for chunk in chunks:
        assembler.add(chunk)
    assembler.finish()
    with pytest.raises(SerdeError, match="already finished"):
        assembler.finish()
    with pytest.raises(SerdeError, match="already finished"):
        assembler.add(chunks[0])


def test_finish_array_with_a_wrong_layout() -> None:
    data, chunks = _chunks(size=12)
    assembler = ChunkAssembler(_sha(data))
    for chunk in chunks:
        assembler.add(chunk)
    with pytest.raises(SerdeError, match="do not match dtype/shape"):
        assembler.finish_array(dtype="float64", shape=(2,))


@SETTINGS
@given(
    st.builds(
        pb.ObjectChunk,
        object_id=st.just(_sha(b"abc")),
        offset=st.integers(0, 2**64 - 1),
        total_size=st.integers(0, 2**64 - 1),
        data=st.binary(max_size=16),
    )
)
def test_random_chunk_headers_never_crash(chunk: pb.ObjectChunk) -> None:
    assembler = ChunkAssembler(_sha(b"abc"), max_size=1024)
    try:
        if assembler.add(chunk):
            assert bytes(assembler.finish()) == b"abc"
    except SerdeError:
        pass


def test_invalid_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        next(iter_chunks(b"abc", chunk_size=0))
    with pytest.raises(TypeError, match="cannot chunk"):
        next(iter_chunks(np.zeros((4, 4))[:, ::2], object_id=_sha(b"")))  # type: ignore[arg-type]


# -- memory --------------------------------------------------------------------------------
def test_assembly_holds_one_copy_of_the_object() -> None:
    size, chunk_size = 32 * 1024 * 1024, 1024 * 1024
    array = Array(np.random.default_rng(1).integers(0, 255, size, dtype=np.uint8))
    object_id = array.digest
    tracemalloc.start()
    try:
        assembler = ChunkAssembler(object_id)
        for chunk in iter_chunks(array, object_id=object_id, chunk_size=chunk_size):
            assembler.add(chunk)
        back = assembler.finish_array(dtype="uint8", shape=(size,))
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert back == array
    assert size <= current < size + chunk_size  # the result is the only full copy left
    assert peak < size + 4 * chunk_size  # never a second full copy on the way


class _RecordingBuffer:
    """A ReceiveBuffer that records its writes (like a shared-memory buffer written with pwrite)."""

    def __init__(self, nbytes: int) -> None:
        self.array = np.zeros(nbytes, dtype=np.uint8)
        self.written = 0
        self.closed = False

    def write(self, offset: int, data: np.ndarray) -> None:
        assert not self.closed
        self.array[offset : offset + data.size] = data
        self.written += data.size

    def close(self) -> None:
        self.closed = True


@SETTINGS
@given(st.binary(min_size=1, max_size=3000), st.integers(1, 700), st.randoms(use_true_random=False))
def test_an_allocated_buffer_gets_each_byte_once_in_any_order(
    data: bytes, chunk_size: int, rnd: random.Random
) -> None:
    chunks = list(iter_chunks(data, chunk_size=chunk_size))
    chunks += rnd.sample(chunks, k=len(chunks) // 2)  # repeats
    rnd.shuffle(chunks)
    made: list[_RecordingBuffer] = []

    def allocate(nbytes: int) -> _RecordingBuffer:
        made.append(_RecordingBuffer(nbytes))
        return made[-1]

    assembler = ChunkAssembler(_sha(data), allocate=allocate)
    for chunk in chunks:
        assembler.add(chunk)
    out = assembler.finish()
    (buffer,) = made
    assert bytes(out) == data and out.readonly and buffer.closed
    assert buffer.written == len(data)  # repeats are compared, not written again


def test_allocate_may_decline_and_a_wrong_buffer_is_refused() -> None:
    data = bytes(range(256)) * 10
    declined = ChunkAssembler(_sha(data), allocate=lambda nbytes: None)
    for chunk in iter_chunks(data, chunk_size=100):
        declined.add(chunk)
    assert bytes(declined.finish()) == data
    wrong = _RecordingBuffer(10)
    assembler = ChunkAssembler(_sha(data), allocate=lambda nbytes: wrong)
    with pytest.raises(ValueError, match="returned a uint8"):
        assembler.add(next(iter_chunks(data, chunk_size=100)))
    assert wrong.closed


def test_a_corrupted_object_closes_its_allocated_buffer() -> None:
    data = b"x" * 5000
    buffer = _RecordingBuffer(len(data))
    object_id = _sha(b"y" * 5000)
    assembler = ChunkAssembler(object_id, allocate=lambda nbytes: buffer)
    for chunk in iter_chunks(data, object_id=object_id, chunk_size=1000):
        assembler.add(chunk)
    with pytest.raises(SerdeError, match="does not match"):
        assembler.finish()
    assert buffer.closed
