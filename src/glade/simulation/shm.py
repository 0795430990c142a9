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

import bisect
import collections
import contextlib
import mmap
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MappingCache",
    "RunDir",
    "SegmentPool",
    "SharedBuffer",
    "SharedBuffers",
    "address",
    "layout",
    "map_file",
]

ALIGN = 64  # offsets of buffers in a segment (cache line; more than any dtype needs)
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # pre-fault: readers touch every page anyway
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
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


class SharedBuffers:
    """Writable shared-memory buffers that a LocalBackend hands to its workers without a copy.

    A process that receives large arrays from elsewhere (a SuperNode pulling a model) fills
    a buffer from :meth:`allocate` instead of private memory and builds its Messages over
    it; a :class:`~glade.simulation.local.LocalBackend` given these buffers (``shared=``)
    then tells its workers where the bytes are (file, offset) instead of copying them into a
    segment of its own. Each buffer is a file of its own in a private folder; it is deleted,
    and its memory returned, as soon as no view of it is left in this process and every
    backend that sent it has let go of it (:meth:`hold` / :meth:`release`). Safe to use
    from many threads.

    With ``keep_spare``, the last buffer freed is kept (one at most) and handed out again by
    the next :meth:`allocate` of its size: a node receiving a model of the same size every
    round then writes into memory it has already, instead of into new pages the kernel must
    find and clear (in a virtual machine, often pages the host has taken back). The owner
    calls :meth:`drop_spare` whenever the spare would add to its peak memory (a SuperNode:
    when its ClientApp process copies a reply into shared memory instead of uploading it).
    """

    def __init__(
        self, root: str | Path | None = None, *, min_size: int = 1 << 20, keep_spare: bool = False
    ) -> None:
        self._root = root
        self.min_size = min_size
        self._keep_spare = keep_spare
        self._spare: _Entry | None = None  # freed, kept for the next allocate() of its size
        self._dir: RunDir | None = None
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False
        self._by_path: dict[str, _Entry] = {}
        self._starts: list[int] = []  # sorted addresses of the buffers in _by_start
        self._by_start: list[_Entry] = []
        # Buffers whose last view went. The garbage collector may let a view go in any
        # thread, even one holding the lock: the finalizer only queues the path, and
        # whoever can take the lock handles the queue (see _settle).
        self._unviewed: collections.deque[str] = collections.deque()

    def allocate(self, nbytes: int) -> SharedBuffer | None:
        """A buffer of ``nbytes`` in shared memory; None if smaller than ``min_size``, if
        these buffers are closed, or if shared memory is full.

        Write it with :meth:`SharedBuffer.write` (``pwrite``: no page faults in this process,
        which may never touch the pages) and :meth:`SharedBuffer.close` it; its
        :attr:`~SharedBuffer.array` is a writable view. It is freed once no view of it is
        left (and no backend holds it).
        """
        if nbytes < self.min_size:
            return None
        with self._lock:
            closed = self._closed
            spare, self._spare = self._spare, None
            if not closed and (spare is None or spare.capacity != nbytes):
                if self._dir is None:
                    self._dir = RunDir(self._root)
                self._count += 1
                path = self._dir.file(f"in{self._count}")
        self._settle()
        if spare is not None and (closed or spare.capacity != nbytes):
            _delete(spare)  # another size: its memory goes before the new buffer's comes
            spare = None
        if closed:
            return None
        if spare is not None:
            return self._reuse(spare)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            if hasattr(os, "posix_fallocate"):  # a full /dev/shm: an error now, not a SIGBUS
                os.posix_fallocate(fd, 0, nbytes)
            else:  # pragma: no cover - macOS
                os.ftruncate(fd, nbytes)
            mapping = mmap.mmap(fd, nbytes)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        anchor: np.ndarray[Any, np.dtype[np.uint8]] = np.frombuffer(mapping, np.uint8)
        return self._register(_Entry(path, mapping, nbytes, address(anchor.data)), anchor, fd)

    def _reuse(self, entry: _Entry) -> SharedBuffer | None:
        """Hand out the spare ``entry`` again (its file and mapping as they are)."""
        try:
            fd = os.open(entry.path, os.O_RDWR | _CLOEXEC)
        except OSError:
            _delete(entry)
            return None
        entry.holds, entry.viewed = 0, True
        return self._register(entry, np.frombuffer(entry.mapping, np.uint8), fd)

    def _register(
        self, entry: _Entry, anchor: np.ndarray[Any, np.dtype[np.uint8]], fd: int
    ) -> SharedBuffer:
        path = entry.path
        with self._lock:
            self._by_path[path] = entry
            i = bisect.bisect(self._starts, entry.start)
            self._starts.insert(i, entry.start)
            self._by_start.insert(i, entry)
        weakref.finalize(anchor, self._views_gone, path).atexit = False
        self._settle()
        return SharedBuffer(anchor, fd)

    def locate(self, view: memoryview) -> tuple[str, int, int] | None:
        """(path, capacity, offset) of the buffer holding ``view``, or None."""
        start, size = address(view), view.nbytes
        with self._lock:
            i = bisect.bisect(self._starts, start) - 1
            entry = self._by_start[i] if i >= 0 else None
        self._settle()
        if entry is None or start - entry.start + size > entry.capacity:
            return None
        return entry.path, entry.capacity, start - entry.start

    def hold(self, path: str) -> None:
        """A backend sends ``path`` to its workers: keep it until :meth:`release`."""
        with self._lock:
            self._by_path[path].holds += 1
        self._settle()

    def release(self, path: str) -> None:
        """A backend's workers no longer use ``path`` (one call per :meth:`hold`)."""
        with self._lock:
            entry = self._by_path.get(path)
            if entry is not None:
                entry.holds -= 1
                self._free_if_done(entry)
        self._settle()

    def drop_spare(self) -> None:
        """Free the spare buffer now, if one is kept (see ``keep_spare``)."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            _delete(spare)

    def active(self) -> int:
        """How many buffers are in use (allocated and not freed yet)."""
        self._settle()
        with self._lock:
            return len(self._by_path)

    def close(self) -> None:
        """Delete the folder (mappings that are still in use stay valid until they go)."""
        with self._lock:
            self._closed = True
            folder, self._dir = self._dir, None
            spare, self._spare = self._spare, None
        if spare is not None:
            _delete(spare)
        if folder is not None:
            folder.remove()

    def _views_gone(self, path: str) -> None:  # a finalizer: never blocks on the lock
        self._unviewed.append(path)
        self._settle()

    def _settle(self) -> None:
        """Handle the buffers whose views went, unless another thread holds the lock (it
        calls this again after letting go of it)."""
        while self._unviewed:
            if not self._lock.acquire(blocking=False):
                return
            try:
                while self._unviewed:
                    entry = self._by_path.get(self._unviewed.popleft())
                    if entry is not None:
                        entry.viewed = False
                        self._free_if_done(entry)
            finally:
                self._lock.release()

    def _free_if_done(self, entry: _Entry) -> None:
        """Delete the buffer if nothing uses it any more (lock held)."""
        if entry.holds > 0 or entry.viewed:
            return
        del self._by_path[entry.path]
        i = bisect.bisect_left(self._starts, entry.start)
        del self._starts[i]
        del self._by_start[i]
        gone: _Entry | None = entry
        if self._keep_spare and not self._closed:
            gone, self._spare = self._spare, entry  # the newest is kept: the older goes
        if gone is not None:
            _delete(gone)


def _delete(entry: _Entry) -> None:
    """Delete a buffer's file and unmap it (a view left: unmapped when it goes)."""
    with contextlib.suppress(OSError):
        os.unlink(entry.path)
    with contextlib.suppress(BufferError):
        entry.mapping.close()


class SharedBuffer:
    """One buffer of :class:`SharedBuffers` (a :class:`~glade.transport.chunks.ReceiveBuffer`)."""

    __slots__ = ("__weakref__", "_closer", "_fd", "array")

    def __init__(self, array: np.ndarray[Any, np.dtype[np.uint8]], fd: int) -> None:
        self.array = array
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)
        self._closer.atexit = False

    def write(self, offset: int, data: np.ndarray[Any, np.dtype[np.uint8]]) -> None:
        view = data.data.cast("B")
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def close(self) -> None:
        """Done writing (the file descriptor is closed; the array stays valid)."""
        self._closer()


class _Entry:
    __slots__ = ("capacity", "holds", "mapping", "path", "start", "viewed")

    def __init__(self, path: str, mapping: mmap.mmap, capacity: int, start: int) -> None:
        self.path, self.mapping, self.capacity, self.start = path, mapping, capacity, start
        self.holds = 0
        self.viewed = True
