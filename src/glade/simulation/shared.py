"""Shared memory a process fills itself (a SuperNode receiving a model) and hands to the
workers of a :class:`~glade.simulation.local.LocalBackend` by reference.

:class:`SharedBuffers` makes the buffers (one file each in a private folder of shared
memory); :class:`SharedHolds` counts which workers still use which of them.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import mmap
import os
import threading
import weakref
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glade.simulation.shm import CLOEXEC as _CLOEXEC
from glade.simulation.shm import RunDir, address

__all__ = ["SharedBuffer", "SharedBuffers", "SharedHolds"]


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
    allocate and clear (0.2-0.5 s of CPU for 400 MB on the development machine). The owner
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


class SharedHolds:
    """Which holders (a backend's workers) use which buffers of a :class:`SharedBuffers`,
    how many times each: a buffer is held in ``shared`` while anyone uses it. Not locked:
    its owner serializes the calls."""

    def __init__(self, shared: SharedBuffers | None) -> None:
        self.shared = shared
        self._holds: dict[str, collections.Counter[Hashable]] = {}

    def locate(self, buffers: Sequence[memoryview]) -> list[tuple[str, int, int] | None]:
        """Where each buffer lies in the shared buffers (None: not there)."""
        shared = self.shared
        if shared is None:
            return [None] * len(buffers)
        return [shared.locate(buf) for buf in buffers]

    def hold(self, path: str, holder: Hashable) -> None:
        """``holder`` uses shared buffer ``path`` once more."""
        assert self.shared is not None
        holds = self._holds.get(path)
        if holds is None:
            holds = self._holds[path] = collections.Counter()
            self.shared.hold(path)
        holds[holder] += 1

    def unhold(self, path: str, holder: Hashable, *, every: bool = False) -> bool:
        """``holder`` let go of ``path`` (once, or ``every`` time). False if ``path`` is not
        a shared buffer held here."""
        holds = self._holds.get(path)
        if holds is None:
            return False
        if every or holds[holder] <= 1:
            holds.pop(holder, None)
        else:
            holds[holder] -= 1
        if not holds:
            del self._holds[path]
            assert self.shared is not None
            self.shared.release(path)
        return True

    def drop(self, holder: Hashable) -> None:
        """``holder`` is gone: every buffer it held is let go of."""
        for path in list(self._holds):
            self.unhold(path, holder, every=True)

    def release_all(self) -> None:
        """Let go of every buffer (the owner shuts down)."""
        holds, self._holds = self._holds, {}
        for path in holds:
            assert self.shared is not None
            self.shared.release(path)
