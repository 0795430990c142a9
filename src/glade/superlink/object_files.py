"""Files of the object store that the SuperLink and its ServerApp processes share: object
paths, temporary files (new or spare, see :mod:`~glade.superlink.spares`), committing them
under their ids, and memory maps of stored objects."""

from __future__ import annotations

import mmap
import os
import re
import tempfile
import weakref
from pathlib import Path

import numpy as np

from glade.errors import InvalidArgumentError
from glade.superlink import spares

__all__ = [
    "check_object_id",
    "commit_temp",
    "map_object",
    "mmap_behind",
    "new_temp",
    "object_path",
    "write_object",
    "write_temp",
]

OBJECT_ID = re.compile(r"[0-9a-f]{64}")


def check_object_id(object_id: str) -> str:
    """``object_id`` if it is 64 lowercase hex digits, else InvalidArgumentError."""
    if not isinstance(object_id, str) or not OBJECT_ID.fullmatch(object_id):
        raise InvalidArgumentError(
            f"invalid object id {object_id!r}: expected 64 lowercase hex digits (SHA-256)"
        )
    return object_id


def object_path(root: str | Path, object_id: str) -> Path:
    """Where the store under ``root`` keeps ``object_id``."""
    check_object_id(object_id)
    return Path(root) / object_id[:2] / object_id


def write_object(root: str | Path, object_id: str, data: memoryview) -> None:
    """Put trusted bytes whose id is known into the store under ``root`` (same machine).

    For a process the SuperLink started (its ServerApp): no upload, no second hash. The
    bytes appear under their name atomically (temp file, then rename).
    """
    if object_path(root, object_id).exists():
        return
    commit_temp(root, object_id, write_temp(root, data))


def write_temp(root: str | Path, data: memoryview) -> Path:
    """Write bytes into a temporary file of the store under ``root`` (see :func:`commit_temp`).

    With their id not known yet: a caller may hash them meanwhile, in another thread.
    """
    fd, tmp = new_temp(root, data.nbytes, prefix="local-")
    try:
        with open(fd, "wb", closefd=True) as out:
            out.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def new_temp(root: str | Path, size: int, *, prefix: str) -> tuple[int, Path]:
    """A temporary file of the store under ``root`` to write ``size`` bytes into (all of
    them): a spare (see :mod:`glade.superlink.spares`) if one fits, else a new file. Its
    descriptor (the caller closes it before :func:`commit_temp`) and path."""
    tmp_dir = Path(root) / "tmp"
    spare = spares.claim(tmp_dir, size)
    if spare is not None:
        return spare
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=prefix)
    return fd, Path(name)


def commit_temp(root: str | Path, object_id: str, tmp: Path) -> None:
    """Rename a temporary file of the store into place as ``object_id`` (its verified or
    trusted id). If the object is stored already, the file is deleted instead and the stored
    one counts as new for the garbage collector's grace period: renaming over a file would
    make ext4 write the new one out to disk at once (its replace-via-rename heuristic), which
    took 0.2-0.3 s of the round for a 400 MB reply."""
    try:
        final = object_path(root, object_id)
        try:
            os.utime(final)
            return
        except FileNotFoundError:
            pass
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def map_object(path: str | Path) -> memoryview:
    """A read-only memory map of a stored object's file (pages load only when touched).

    A large object's file stays open, under a shared lock, for as long as any view of the
    map is alive: the store does not recycle it meanwhile (see :mod:`~glade.superlink.spares`).
    """
    fd = spares.open_locked(path)
    try:
        size = os.fstat(fd).st_size
        mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if size else None
    except BaseException:
        os.close(fd)
        raise
    if mapping is None or size < spares.SPARE_MIN_BYTES:
        os.close(fd)
        return memoryview(mapping if mapping is not None else b"")
    anchor: np.ndarray[tuple[int], np.dtype[np.uint8]] = np.frombuffer(mapping, np.uint8)
    weakref.finalize(anchor, os.close, fd).atexit = False
    return anchor.data


def mmap_behind(view: memoryview) -> mmap.mmap | None:
    """The memory map under a view of :func:`map_object` (NumPy array and views between)."""
    base: object = view.obj
    while isinstance(base, np.ndarray | memoryview):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return base if isinstance(base, mmap.mmap) else None
