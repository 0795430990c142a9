"""Shared memory for the local backend: reusable segment files in a per-run folder.

A *segment* is a file holding the large buffers of one message batch (parent -> workers) or
of one reply (worker -> parent) at aligned offsets. The writer keeps a :class:`SegmentPool`
of segments it maps read-write and copies into; the reader keeps a :class:`MappingCache` of
read-only mappings and hands out views, so the NumPy arrays unpickled from them are zero-copy
and read-only. When the last view of a use is gone the reader *releases* the segment and the
writer may fill it again: after the first round no page is allocated, zeroed, mapped or
faulted in again. Segments free for a while are deleted (and the reader told to unmap them).

Plain files and ``mmap`` are used instead of :mod:`multiprocessing.shared_memory`: no resource
tracker, no ``BufferError`` when arrays still point into a segment (a mapping is released by
the garbage collector when its last view goes), and cleanup is one ``rmtree`` of the folder.
"""

from __future__ import annotations

import collections
import contextlib
import mmap
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "MappingCache",
    "RunDir",
    "SegmentPool",
    "address",
    "layout",
    "map_file",
]

ALIGN = 64  # offsets of buffers in a segment (cache line; more than any dtype needs)
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # pre-fault: readers touch every page anyway
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
CLOEXEC = _CLOEXEC
KEEP_BYTES = 64 * 1024 * 1024
"""Segments up to this size are kept for reuse once read; larger ones (a model) are deleted
as soon as their reader lets go of them, so that a node never holds a spare model-sized
segment beside the next model it receives."""


def default_root() -> Path:
    """``/dev/shm`` (RAM-backed) where it exists, else the temp dir (page-cache backed)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


class RunDir:
    """The private folder (mode 0700) that holds a run's segments; removed by :meth:`remove`.

    Its name carries the owner's pid (``glade-sim-PID-...``): a process killed with SIGKILL
    (its workers too) cannot clean up, so each new RunDir removes the folders of owners that
    no longer exist.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        base = Path(root) if root is not None else default_root()
        _remove_orphans(base)
        self.path = Path(tempfile.mkdtemp(prefix=f"glade-sim-{os.getpid()}-", dir=base))

    def file(self, name: str) -> str:
        return str(self.path / name)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _remove_orphans(base: Path) -> None:
    """Remove ``glade-sim-PID-*`` folders whose owner process is gone."""
    for folder in base.glob("glade-sim-*-*"):
        pid_text = folder.name.split("-")[2]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def address(view: memoryview) -> int:
    """The memory address of a buffer's first byte (identity for de-duplication)."""
    addr: int = np.frombuffer(view, dtype=np.uint8).__array_interface__["data"][0]
    return addr


def layout(buffers: Sequence[memoryview]) -> tuple[list[int], int]:
    """Aligned offsets of ``buffers`` packed one after the other, and the total size."""
    offsets: list[int] = []
    pos = 0
    for buf in buffers:
        offsets.append(pos)
        pos += -(-buf.nbytes // ALIGN) * ALIGN
    return offsets, pos


def map_file(path: str, length: int) -> mmap.mmap:
    """Map the first ``length`` bytes of the file at ``path``, read-only."""
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        return mmap.mmap(fd, length, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ)
    finally:
        os.close(fd)


class _Segment:
    __slots__ = ("capacity", "freed_at", "mapping", "path", "written")

    def __init__(self, path: str, capacity: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o600)
        try:
            # Allocate now: a full /dev/shm is an OSError here, not a SIGBUS on a later write
            # into the mapping. (Readers may map all of the capacity.)
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, capacity)
            else:  # pragma: no cover - macOS
                os.ftruncate(fd, capacity)
            self.mapping = mmap.mmap(fd, capacity)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        self.path, self.capacity, self.freed_at = path, capacity, 0.0
        self.written = False

    def write(self, buffers: Sequence[memoryview], offsets: Sequence[int]) -> None:
        if self.written:
            # A copy into mapped pages: half the cost of pwrite's per-page work in the kernel.
            for buf, offset in zip(buffers, offsets, strict=True):
                self.mapping[offset : offset + buf.nbytes] = buf
            return
        # The first time, pwrite: copying through the mapping would fault every page in.
        fd = os.open(self.path, os.O_WRONLY | _CLOEXEC)
        try:
            for buf, offset in zip(buffers, offsets, strict=True):
                view = memoryview(buf).cast("B")
                while view:
                    written = os.pwrite(fd, view, offset)
                    view, offset = view[written:], offset + written
        finally:
            os.close(fd)
        self.written = True


class SegmentPool:
    """Segment files that a writer fills again once their reader has released them.

    Writing into pages a file already has costs a third of writing into fresh ones (no page
    allocation and zeroing), the writer copies into its own mapping (no system call), and a
    reader that keeps its mapping of a segment (see
    :class:`MappingCache`) never maps or faults it in again. Segments left free for
    ``idle_s`` seconds are deleted; :meth:`take_dropped` says which, so that the reader can
    let go of its mappings. :meth:`release` may be called from any thread; everything else
    from the writer's thread.
    """

    def __init__(self, folder: str, prefix: str, *, idle_s: float = 2.0) -> None:
        self._folder, self._prefix, self._idle_s = folder, prefix, idle_s
        self._count = 0
        self._busy: dict[str, _Segment] = {}
        self._free: list[_Segment] = []
        self._released: collections.deque[str] = collections.deque()
        self._dropped: list[str] = []

    def write(self, buffers: Sequence[memoryview]) -> tuple[str, list[int], int]:
        """Write ``buffers`` into a free (or new) segment: (path, offsets, its capacity).

        Raises :class:`OSError` when a new segment does not fit (``/dev/shm`` is full).
        """
        self._collect()
        offsets, size = layout(buffers)
        fits = [s for s in self._free if s.capacity >= size]
        if fits:
            segment = min(fits, key=lambda s: s.capacity)
            self._free.remove(segment)
        else:
            self._count += 1
            segment = _Segment(os.path.join(self._folder, f"{self._prefix}{self._count}"), size)
        self._busy[segment.path] = segment
        segment.write(buffers, offsets)
        return segment.path, offsets, segment.capacity

    def release(self, paths: Sequence[str]) -> None:
        """The reader no longer uses these segments (thread-safe; see :meth:`collect`)."""
        self._released.extend(paths)

    def collect(self) -> None:
        """Take in the released segments: larger than :data:`KEEP_BYTES` ones are deleted
        now, the others kept for reuse (and deleted after ``idle_s`` unused)."""
        self._collect()

    def take_dropped(self) -> list[str]:
        """The segments deleted since the last call."""
        dropped, self._dropped = self._dropped, []
        return dropped

    def _collect(self) -> None:
        now = time.monotonic()
        while self._released:
            segment = self._busy.pop(self._released.popleft(), None)
            if segment is not None:
                segment.freed_at = now
                self._free.append(segment)
        for segment in [
            s for s in self._free if s.capacity > KEEP_BYTES or now - s.freed_at > self._idle_s
        ]:
            self._free.remove(segment)
            segment.mapping.close()
            with contextlib.suppress(OSError):
                os.unlink(segment.path)
            self._dropped.append(segment.path)

    def close(self) -> None:
        """Close the files (their paths stay until the reader or the run folder goes)."""
        for segment in [*self._free, *self._busy.values()]:
            segment.mapping.close()
        self._free.clear()
        self._busy.clear()


class MappingCache:
    """A reader's mappings of a writer's :class:`SegmentPool`, kept from one use to the next.

    :meth:`open` returns a view of a segment and calls ``release(path)`` once nothing refers
    to that view any more. The view is exported by a per-use NumPy array over the mapping:
    every array, memoryview or slice made from the data keeps that array alive (NumPy and
    memoryviews reference their exporter), so the release cannot come while any is left.
    """

    def __init__(self, release: Callable[[str], object]) -> None:
        self._release = release
        self._maps: dict[str, mmap.mmap] = {}

    def open(self, path: str, capacity: int) -> memoryview:
        mapping = self._maps.get(path)
        if mapping is None or len(mapping) != capacity:
            mapping = self._maps[path] = map_file(path, capacity)
        anchor = np.frombuffer(mapping, dtype=np.uint8)
        weakref.finalize(anchor, self._released, path, mapping).atexit = False
        return anchor.data

    def _released(self, path: str, mapping: mmap.mmap) -> None:
        if len(mapping) > KEEP_BYTES and self._maps.get(path) is mapping:
            del self._maps[path]  # the writer deletes it now (see KEEP_BYTES): let go too
        self._release(path)

    def drop(self, paths: Iterable[str]) -> None:
        """Forget the mappings of ``paths`` (the writer deleted those segments)."""
        for path in paths:
            self._maps.pop(path, None)  # unmapped once the last view of it is gone

    def clear(self) -> None:
        self._maps.clear()
