"""`ObjectStore`: content-addressed objects (arrays, app bundles) in files on disk.

An object is stored in ``ROOT/ab/abcdef...`` (its hex SHA-256) after its bytes were streamed
into a temporary file, hashed on the way, checked against the id and renamed into place:
a reader never sees a partial object, and a bad upload leaves nothing behind. Objects are
read back chunk by chunk with ``pread`` (no copy of the whole object in memory, no mapping
that would count towards the process's RSS). Unreferenced objects are removed by
:meth:`ObjectStore.collect_garbage` once they are older than a grace period, so an object
uploaded just before the message referring to it survives.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from glade import digest
from glade.errors import InvalidArgumentError, LimitExceededError, NotFoundError, SerdeError
from glade.superlink import spares
from glade.superlink.object_files import (
    OBJECT_ID,
    check_object_id,
    commit_temp,
    map_object,
    mmap_behind,
    new_temp,
    object_path,
    write_object,
    write_temp,
)
from glade.transport.chunks import DEFAULT_CHUNK_SIZE, DEFAULT_MAX_OBJECT_SIZE
from glade.transport.object_wire import encode_chunk
from glade.transport.v1 import message_pb2 as pb

__all__ = [  # the file helpers too, from object_files
    "ObjectStore",
    "check_object_id",
    "commit_temp",
    "map_object",
    "new_temp",
    "object_path",
    "write_object",
    "write_temp",
]

logger = logging.getLogger(__name__)

_SHARD = re.compile(r"[0-9a-f]{2}")
_READ_BLOCK = 8 * 1024 * 1024


class ObjectStore:
    """Objects under ``root`` (see the module docstring); safe to use from many threads."""

    def __init__(
        self,
        root: str | Path,
        *,
        max_object_size: int = DEFAULT_MAX_OBJECT_SIZE,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.root = Path(root)
        self.max_object_size = max_object_size
        self.chunk_size = chunk_size
        self._tmp = self.root / "tmp"
        shutil.rmtree(self._tmp, ignore_errors=True)  # leftovers of a crash
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, object_id: str) -> Path:
        return object_path(self.root, object_id)

    def size(self, object_id: str) -> int | None:
        """Size in bytes, or None if the object is not stored."""
        try:
            return self.path(object_id).stat().st_size
        except FileNotFoundError:
            return None

    def has(self, object_id: str) -> bool:
        return self.size(object_id) is not None

    def missing(self, object_ids: Iterable[str]) -> list[str]:
        """The ids not stored; those stored get a fresh timestamp (a reference is coming)."""
        out: list[str] = []
        now = time.time()
        for object_id in dict.fromkeys(object_ids):
            try:
                os.utime(self.path(object_id), (now, now))
            except FileNotFoundError:
                out.append(object_id)
        return out

    # -- writing ---------------------------------------------------------------------------
    def put_chunks(self, chunks: Iterable[pb.ObjectChunk]) -> tuple[str, int]:
        """Store one object from its chunks (any order, repeats allowed); returns (id, size).

        Chunks whose ``object_id`` is empty (all of them) upload an *unnamed* object: the
        store names it by the SHA-256 it computes on the way, so the sender need not hash
        it first. Raises InvalidArgumentError/SerdeError for a bad stream (mixed ids, sizes
        that disagree, missing bytes, a hash mismatch) and LimitExceededError for a too large
        one.
        """
        writer: _Writer | None = None
        try:
            for chunk in chunks:
                if writer is None:
                    writer = self._writer(chunk.object_id, chunk.total_size)
                writer.add(chunk)
            if writer is None:
                raise InvalidArgumentError("empty object stream: no chunk was sent")
            object_id = writer.finish(self.root)
            return object_id, writer.total
        finally:
            if writer is not None:
                writer.discard()

    def put_inline(self, chunks: Iterable[pb.ObjectChunk], *, limit: int) -> list[str]:
        """Store objects sent whole, one chunk each (at most ``limit`` bytes); returns ids."""
        ids = []
        for chunk in chunks:
            check_object_id(chunk.object_id)
            if chunk.offset != 0 or chunk.total_size != len(chunk.data):
                raise InvalidArgumentError(
                    f"inline object {chunk.object_id} must be sent whole, in one chunk"
                )
            if chunk.total_size > limit:
                raise LimitExceededError(
                    f"inline object {chunk.object_id} has {chunk.total_size} bytes, more than "
                    f"{limit}: send it with PushObject"
                )
            if not self.has(chunk.object_id):
                self.put_chunks([chunk])
            ids.append(chunk.object_id)
        return ids

    def put_bytes(self, data: bytes | memoryview) -> str:
        """Store a small object given whole; returns its id."""
        view = memoryview(data).cast("B")
        object_id = digest.content_id(view)
        self.put_chunks(
            [pb.ObjectChunk(object_id=object_id, offset=0, total_size=len(view), data=bytes(view))]
        )
        return object_id

    def _writer(self, object_id: str, total: int) -> _Writer:
        if object_id:
            check_object_id(object_id)
        if total > self.max_object_size:
            raise LimitExceededError(
                f"object {object_id or '(unnamed)'} has {total} bytes, more than the "
                f"{self.max_object_size} this SuperLink accepts"
            )
        fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix=object_id[:16] or "unnamed")
        return _Writer(object_id, total, fd, Path(tmp))

    # -- reading ---------------------------------------------------------------------------
    def read_chunks(
        self, object_id: str, *, offset: int = 0, chunk_size: int | None = None
    ) -> Iterator[pb.ObjectChunk]:
        """The object as ObjectChunks from ``offset``; the file is opened before yielding."""
        pieces = self._pieces(object_id, offset, chunk_size or self.chunk_size)
        return (
            pb.ObjectChunk(object_id=object_id, offset=pos, total_size=total, data=data)
            for pos, total, data in pieces
        )

    def read_encoded(self, object_id: str, *, offset: int = 0) -> Iterator[bytes]:
        """Like :meth:`read_chunks`, as serialized ObjectChunks (one copy of the data).

        The file is memory-mapped and each chunk is encoded straight from the page cache;
        the pages of a chunk are unmapped once it is encoded, so serving an object does
        not grow this process's memory (RSS).
        """
        try:
            mapping = self.map(object_id)
        except ValueError:  # cannot be mapped (a special file): read it instead
            pieces = self._pieces(object_id, offset, self.chunk_size)
            return (encode_chunk(object_id, pos, total, data) for pos, total, data in pieces)
        if offset > len(mapping):
            raise InvalidArgumentError(
                f"offset {offset} is beyond object {object_id} ({len(mapping)} B)"
            )
        return _encode_mapped(object_id, mapping, offset, self.chunk_size)

    def _pieces(self, object_id: str, offset: int, step: int) -> Iterator[tuple[int, int, bytes]]:
        try:
            fd = spares.open_locked(self.path(object_id))
        except FileNotFoundError:
            raise NotFoundError(f"object {object_id} is not stored here") from None
        total = os.fstat(fd).st_size
        if offset > total:
            os.close(fd)
            raise InvalidArgumentError(f"offset {offset} is beyond object {object_id} ({total} B)")
        return self._read(fd, total, offset, step)

    @staticmethod
    def _read(fd: int, total: int, offset: int, step: int) -> Iterator[tuple[int, int, bytes]]:
        try:
            pos = offset
            while True:
                data = os.pread(fd, min(step, total - pos), pos) if pos < total else b""
                yield pos, total, data
                pos += len(data)
                if pos >= total or not data:
                    return
        finally:
            os.close(fd)

    def read_bytes(self, object_id: str) -> bytes:
        try:
            return self.path(object_id).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"object {object_id} is not stored here") from None

    def map(self, object_id: str) -> memoryview:
        """A read-only memory map of the object (pages load only when touched)."""
        try:
            return map_object(self.path(object_id))
        except FileNotFoundError:
            raise NotFoundError(f"object {object_id} is not stored here") from None

    def verify(self, object_id: str) -> bool:
        """Rehash the stored bytes; False if they no longer match the id (or are missing)."""
        try:
            return _hash_file(self.path(object_id)) == object_id
        except FileNotFoundError:
            return False

    def open_locked(self, object_id: str) -> int:
        """A descriptor to read the object with; not recycled until it is closed."""
        try:
            return spares.open_locked(self.path(object_id))
        except FileNotFoundError:
            raise NotFoundError(f"object {object_id} is not stored here") from None

    # -- removing --------------------------------------------------------------------------
    def expire_spares(self) -> None:
        """Delete the spare files left unclaimed too long (see :mod:`~glade.superlink.spares`)."""
        spares.expire(self._tmp)

    def delete(self, object_id: str) -> bool:
        try:
            self.path(object_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def ids(self) -> Iterator[str]:
        for shard in sorted(self.root.iterdir()):
            if shard.is_dir() and _SHARD.fullmatch(shard.name):
                for entry in shard.iterdir():
                    if OBJECT_ID.fullmatch(entry.name):
                        yield entry.name

    def collect_garbage(
        self,
        keep: set[str],
        *,
        grace_s: float,
        still_garbage: Callable[[str], AbstractContextManager[bool]] | None = None,
    ) -> tuple[list[str], int]:
        """Delete objects not in ``keep`` and older than ``grace_s`` seconds; each one only
        inside ``still_garbage(object_id)``, if given, and only if it yields True.

        Returns the ids removed and how many unkept objects were spared for being younger.
        """
        cutoff = time.time() - grace_s
        removed: list[str] = []
        young = 0
        for object_id in list(self.ids()):
            if object_id in keep:
                continue
            try:
                if self.path(object_id).stat().st_mtime >= cutoff:
                    young += 1
                    continue
                with still_garbage(object_id) if still_garbage else nullcontext(True) as gone:
                    if gone:
                        spares.retire(self.path(object_id), self._tmp)  # or deleted
                        removed.append(object_id)
            except FileNotFoundError:
                continue
        return removed, young


def _encode_mapped(object_id: str, view: memoryview, offset: int, step: int) -> Iterator[bytes]:
    total = len(view)
    mapping = mmap_behind(view)
    try:
        pos = offset
        while True:
            end = min(pos + step, total)
            yield encode_chunk(object_id, pos, total, view[pos:end])
            if mapping is not None and end > pos:  # drop the pages from our RSS (cache keeps them)
                start = pos - pos % mmap.PAGESIZE
                with contextlib.suppress(OSError, ValueError):
                    mapping.madvise(mmap.MADV_DONTNEED, start, end - start)
            pos = end
            if pos >= total:
                return
    finally:
        view.release()
        if mapping is not None:
            with contextlib.suppress(BufferError):
                mapping.close()


class _Writer:
    """One upload in progress: a temp file, the ranges received, the hash of the prefix.

    ``object_id`` empty: an unnamed upload, named by its hash at :meth:`finish`.
    """

    def __init__(self, object_id: str, total: int, fd: int, tmp: Path) -> None:
        self.object_id = object_id
        self.total = total
        self._fd = fd
        self._tmp = tmp
        self._ranges: list[list[int]] = []  # sorted, disjoint [start, end)
        self._hasher = digest.hasher()
        self._hashed = 0
        os.ftruncate(fd, total)

    def add(self, chunk: pb.ObjectChunk) -> None:
        if chunk.object_id != self.object_id:
            raise InvalidArgumentError(
                f"a stream may carry one object: got a chunk of {chunk.object_id!r} in the "
                f"stream of {self._name}"
            )
        if chunk.total_size != self.total:
            raise InvalidArgumentError(
                f"object {self._name}: chunks disagree on its size "
                f"({self.total} then {chunk.total_size} bytes)"
            )
        data = chunk.data
        start, end = chunk.offset, chunk.offset + len(data)
        if end > self.total:
            raise InvalidArgumentError(
                f"object {self._name}: chunk [{start}, {end}) lies beyond its {self.total} B"
            )
        if start == end:
            return
        if self._hashed >= 0 and self._overlaps(start, end):
            # bytes sent again, perhaps different ones, replace what was hashed: the hash
            # must come from what is on disk
            self._hashed = -1
        os.pwrite(self._fd, data, start)
        if start == self._hashed:
            self._hasher.update(data)
            self._hashed = end
        self._merge(start, end)

    @property
    def _name(self) -> str:
        return self.object_id or "(unnamed)"

    def _overlaps(self, start: int, end: int) -> bool:
        return any(a < end and start < b for a, b in self._ranges)

    def _merge(self, start: int, end: int) -> None:
        ranges = self._ranges
        if ranges and ranges[-1][0] <= start <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], end)  # the usual, in-order case
            return
        ranges.append([start, end])
        ranges.sort()
        merged = [ranges[0]]
        for a, b in ranges[1:]:
            if a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self._ranges = merged

    def finish(self, root: Path) -> str:
        """Check the bytes against the id (or name them, unnamed) and move the file into
        place under ``root``; returns the id."""
        complete = self.total == 0 or self._ranges == [[0, self.total]]
        if not complete:
            got = sum(b - a for a, b in self._ranges)
            raise SerdeError(f"object {self._name} is incomplete: {got} of {self.total} B")
        # chunks that came out of order were not hashed on the way: hash what is on disk
        in_order = self._hashed == self.total
        actual = self._hasher.hexdigest() if in_order else _hash_file(self._tmp)
        if self.object_id and actual != self.object_id:
            raise SerdeError(
                f"object {self.object_id} does not match its bytes (blake3 {actual}): "
                "corrupted in transit or a wrong id"
            )
        os.close(self._fd)
        self._fd = -1
        commit_temp(root, actual, self._tmp)
        return actual

    def discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._tmp.unlink(missing_ok=True)


def _hash_file(path: Path) -> str:
    hasher = digest.hasher()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(_READ_BLOCK):
            hasher.update(block)
    return hasher.hexdigest()
