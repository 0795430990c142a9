"""Stream content-addressed objects in bounded ``ObjectChunk``s, and put them back together.

An object is a byte string addressed by the lowercase hex SHA-256 of its bytes (an array's
bytes, or any other blob such as an app bundle). The sender slices it with :func:`iter_chunks`;
the receiver feeds the chunks, in any order and possibly repeated, to a
:class:`ChunkAssembler`, which writes them into one preallocated buffer, hashes the bytes
as the contiguous prefix grows, and checks the hash against the object id at the end.

>>> import numpy as np
>>> from glade import Array
>>> array = Array(np.arange(1000, dtype=np.float32))
>>> assembler = ChunkAssembler(array.digest)
>>> for chunk in iter_chunks(array, chunk_size=1024):
...     _ = assembler.add(chunk)
>>> assembler.finish_array(dtype="float32", shape=(1000,)) == array
True
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import numpy as np

from glade import digest
from glade.array import Array
from glade.errors import SerdeError
from glade.transport.v1 import message_pb2 as pb

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_OBJECT_SIZE",
    "Allocate",
    "PrivateBuffer",
    "ChunkAssembler",
    "ReceiveBuffer",
    "assemble_chunks",
    "iter_chunks",
]

DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
"""Bytes per chunk. gRPC peers must accept messages a little larger than this."""
DEFAULT_MAX_OBJECT_SIZE = 4 * 1024**3
"""Largest object a ChunkAssembler accepts unless told otherwise (one array, not a model)."""

_OBJECT_ID = re.compile(r"[0-9a-f]{64}")


class ReceiveBuffer(Protocol):
    """Where a :class:`ChunkAssembler` puts the bytes of an object (see :data:`Allocate`)."""

    @property
    def array(self) -> np.ndarray[Any, np.dtype[np.uint8]]:
        """All the bytes (the object's size), e.g. a view of shared memory."""
        ...

    def write(self, offset: int, data: np.ndarray[Any, np.dtype[np.uint8]]) -> None:
        """Put ``data`` at ``offset`` (the assembler reads :attr:`array` only to compare
        repeated chunks, and to hash chunks that came out of order)."""
        ...

    def close(self) -> None:
        """Every byte was written (or the transfer failed)."""
        ...


Allocate = Callable[[int], "ReceiveBuffer | None"]
"""Makes the buffer an object is received into: ``allocate(nbytes)`` returns a
:class:`ReceiveBuffer` of ``nbytes`` (e.g. in shared memory), or None for private memory."""


class PrivateBuffer:
    """A :class:`ReceiveBuffer` in private memory (what an object goes into without
    ``allocate``)."""

    __slots__ = ("array",)

    def __init__(self, nbytes: int) -> None:
        self.array = np.empty(nbytes, dtype=np.uint8)  # untouched pages cost nothing yet

    def write(self, offset: int, data: np.ndarray[Any, np.dtype[np.uint8]]) -> None:
        self.array[offset : offset + data.size] = data

    def close(self) -> None:
        pass


def _flat_view(data: Array | bytes | bytearray | memoryview) -> memoryview:
    if isinstance(data, Array):
        return data.memoryview()
    try:
        return memoryview(data).cast("B")
    except TypeError as exc:
        raise TypeError(f"cannot chunk a {type(data).__name__}: {exc}") from None


def iter_chunks(
    data: Array | bytes | bytearray | memoryview,
    *,
    object_id: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[pb.ObjectChunk]:
    """Yield ``data`` as ObjectChunks of at most ``chunk_size`` bytes, in order.

    ``object_id`` defaults to the SHA-256 of ``data`` (cached on an :class:`~glade.Array`).
    Each chunk copies only its own slice; an empty object is one empty chunk.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    view = _flat_view(data)
    if object_id is None:
        object_id = data.digest if isinstance(data, Array) else digest.content_id(view)
    total = len(view)
    for offset in range(0, max(total, 1), chunk_size):
        yield pb.ObjectChunk(
            object_id=object_id,
            offset=offset,
            total_size=total,
            data=view[offset : offset + chunk_size].tobytes(),
        )


class ChunkAssembler:
    """Reassembles one object from its chunks and verifies it against its object id.

    Chunks may come in any order and more than once (a repeated chunk must carry the same
    bytes). The buffer is allocated once, from the first chunk's ``total_size``, which must not
    exceed ``max_size``, by ``allocate`` if given (see :data:`Allocate`). Every problem raises
    :class:`~glade.errors.SerdeError`.
    """

    __slots__ = (
        "_allocate",
        "_buffer",
        "_ends",
        "_hashed",
        "_hasher",
        "_max_size",
        "_object_id",
        "_received",
        "_starts",
        "_total",
    )

    def __init__(
        self,
        object_id: str,
        *,
        max_size: int = DEFAULT_MAX_OBJECT_SIZE,
        allocate: Allocate | None = None,
    ) -> None:
        if not isinstance(object_id, str) or not _OBJECT_ID.fullmatch(object_id):
            raise SerdeError(f"invalid object id {object_id!r}: expected 64 lowercase hex digits")
        self._allocate = allocate
        self._object_id = object_id
        self._max_size = max_size
        self._total: int | None = None
        self._buffer: ReceiveBuffer | None = None
        self._starts: list[int] = []  # disjoint received ranges [start, end), sorted, merged
        self._ends: list[int] = []
        self._received = 0
        self._hasher = digest.hasher()
        self._hashed = 0  # bytes of the contiguous prefix already fed to the hasher

    @property
    def object_id(self) -> str:
        return self._object_id

    @property
    def total_size(self) -> int | None:
        """Size of the object, known from the first chunk on."""
        return self._total

    @property
    def received(self) -> int:
        """Distinct bytes received so far."""
        return self._received

    @property
    def complete(self) -> bool:
        return self._total is not None and self._received == self._total

    def add(self, chunk: pb.ObjectChunk) -> bool:
        """Store one chunk; returns whether the object is now complete."""
        if chunk.object_id != self._object_id:
            raise SerdeError(
                f"chunk of object {chunk.object_id!r} sent to the assembler of {self._object_id!r}"
            )
        buffer = self._buffer_for(chunk.total_size)
        data = chunk.data  # upb copies on every access: read it once
        start, end = chunk.offset, chunk.offset + len(data)
        if end > chunk.total_size:
            raise SerdeError(
                f"object {self._object_id}: chunk [{start}, {end}) lies beyond its "
                f"{chunk.total_size} bytes"
            )
        if start < end:
            array = np.frombuffer(data, dtype=np.uint8)
            self._store(buffer, start, end, array)
            self._hash_prefix(buffer, start, array)
        return self.complete

    def _buffer_for(self, total: int) -> ReceiveBuffer:
        if self._buffer is not None:
            if total != self._total:
                raise SerdeError(
                    f"object {self._object_id}: chunks disagree on its size "
                    f"({self._total} then {total} bytes)"
                )
            return self._buffer
        if self._total is not None:
            raise SerdeError(f"object {self._object_id} was already finished")
        if total > self._max_size:
            raise SerdeError(
                f"object {self._object_id} has {total} bytes, more than the {self._max_size} "
                "allowed"
            )
        self._total = total
        buffer = self._allocate(total) if self._allocate is not None else None
        if buffer is None:
            buffer = PrivateBuffer(total)
        elif buffer.array.dtype != np.uint8 or buffer.array.shape != (total,):
            array = buffer.array
            buffer.close()
            raise ValueError(f"allocate({total}) returned a {array.dtype}{array.shape} buffer")
        self._buffer = buffer
        return buffer

    def _store(
        self, buffer: ReceiveBuffer, start: int, end: int, data: np.ndarray[Any, Any]
    ) -> None:
        """Write the parts of [start, end) not received yet; check the parts already there."""
        lo = bisect.bisect_left(self._ends, start)  # first range ending at or after start
        hi = bisect.bisect_right(self._starts, end)  # ranges [lo, hi) touch or overlap
        pos = start
        for a, b in zip(self._starts[lo:hi], self._ends[lo:hi], strict=True):
            if pos < a:
                buffer.write(pos, data[pos - start : a - start])
                self._received += a - pos
            overlap_end = min(b, end)
            if pos < overlap_end and not np.array_equal(
                buffer.array[pos:overlap_end], data[pos - start : overlap_end - start]
            ):
                raise SerdeError(
                    f"object {self._object_id}: a repeated chunk at offset {start} carries "
                    "different bytes"
                )
            pos = max(pos, overlap_end)
        if pos < end:
            buffer.write(pos, data[pos - start :])
            self._received += end - pos
        new_start = min(start, self._starts[lo]) if lo < hi else start
        new_end = max(end, self._ends[hi - 1]) if lo < hi else end
        self._starts[lo:hi] = [new_start]
        self._ends[lo:hi] = [new_end]

    def _hash_prefix(self, buffer: ReceiveBuffer, start: int, data: np.ndarray[Any, Any]) -> None:
        """Hash the contiguous prefix received so far: from the chunk itself when it extends
        the prefix (the usual case), else from the buffer (chunks that came out of order)."""
        if not (self._starts and self._starts[0] == 0):
            return
        if start <= self._hashed < start + data.size:
            self._hasher.update(data[self._hashed - start :].data)
            self._hashed = start + data.size
        if self._ends[0] > self._hashed:
            self._hasher.update(buffer.array[self._hashed : self._ends[0]].data)
            self._hashed = self._ends[0]

    def finish(self) -> memoryview:
        """The verified bytes (read-only, no copy); the assembler lets go of them."""
        if not self.complete:
            total = "unknown" if self._total is None else self._total
            raise SerdeError(
                f"object {self._object_id} is incomplete: {self._received} of {total} bytes"
            )
        buffer, self._buffer = self._buffer, None
        if buffer is None:
            raise SerdeError(f"object {self._object_id} was already finished")
        buffer.close()
        actual = self._hasher.hexdigest()
        if actual != self._object_id:
            raise SerdeError(
                f"object {self._object_id} does not match its bytes (blake3 {actual}): "
                "corrupted in transit"
            )
        return buffer.array.data.toreadonly()

    def finish_array(self, *, dtype: str, shape: Iterable[int]) -> Array:
        """The verified bytes as an :class:`~glade.Array` (a zero-copy view)."""
        data = self.finish()
        try:
            return Array.from_bytes(data, dtype=dtype, shape=shape)
        except (TypeError, ValueError) as exc:
            raise SerdeError(f"object {self._object_id}: {exc}") from None


def assemble_chunks(
    chunks: Iterable[pb.ObjectChunk], *, object_id: str, max_size: int = DEFAULT_MAX_OBJECT_SIZE
) -> memoryview:
    """Assemble and verify one object from all its chunks (see :class:`ChunkAssembler`)."""
    assembler = ChunkAssembler(object_id, max_size=max_size)
    for chunk in chunks:
        assembler.add(chunk)
    return assembler.finish()
