"""Spare files: large objects the garbage collector removes are kept for a while, to write the
next large objects into.

Writing a new 400 MB object costs far more than the copy: the kernel allocates and accounts
400 MB of new page cache (0.5-0.7 s of CPU on ext4 on the development machine, against
0.085 s to overwrite the pages of a file that has them). Rounds of federated learning write
objects of the same sizes over and over (the replies, the next model), so an object the
collector takes is renamed into the store's temporary folder as a *spare* instead of
deleted, its pages still cached, and the next write of at most its size claims it,
truncates it and overwrites it.

A file may be rewritten only while nobody reads it. Readers of large objects (memory maps
in a ServerApp, which may keep them as long as it likes; the SuperLink's sends) hold a shared
``flock`` on the file for as long as they read (:func:`open_locked`); the collector retires
a file only under an exclusive lock it gets without waiting (else the file is deleted as
before: an open file lives on), and a writer claims a spare only under an exclusive lock as
well. A reader that opened the file just before it was retired finds, once it has the lock,
that the object's path no longer names that file, and treats the object as gone (which it
is). Small objects are never recycled and never locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import time
import uuid
from pathlib import Path

__all__ = [
    "SPARE_MIN_BYTES",
    "claim",
    "expire",
    "open_locked",
    "raise_open_file_limit",
    "retire",
]

SPARE_MIN_BYTES = 32 * 1024 * 1024
"""Objects this large are recycled (and read under a lock)."""
MAX_SPARES = 4
MAX_SPARE_BYTES = 8 * 1024**3
SPARE_TTL_S = 120.0
"""A spare unclaimed this long is deleted (its pages and disk space go back)."""
_PREFIX = "spare-"
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def open_locked(path: str | Path) -> int:
    """Open a stored object for reading; a large one under a shared lock (held until the
    descriptor is closed), so that it is not recycled while read.

    Raises FileNotFoundError if the object is gone, also when it was retired while this
    opened it.
    """
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_size < SPARE_MIN_BYTES:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError as exc:  # no locks on this file system: nothing is recycled on it
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            return fd
        now = os.stat(path)  # FileNotFoundError: retired meanwhile
        if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
            raise FileNotFoundError(errno.ENOENT, "the object was removed meanwhile", str(path))
        return fd
    except BaseException:
        os.close(fd)
        raise


def raise_open_file_limit(wanted: int = 65536) -> int:
    """Raise this process's limit of open files towards ``wanted`` (as far as the hard limit
    allows): a reader keeps one descriptor per large object it maps (a ServerApp: one per
    large array of every reply it holds). Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def retire(path: Path, tmp_dir: Path) -> None:
    """Remove the object file ``path``: keep it as a spare in ``tmp_dir`` if it is large
    and nobody reads it, else delete it. FileNotFoundError if it is gone already."""
    size = path.stat().st_size
    if size >= SPARE_MIN_BYTES and _make_room(tmp_dir, size):
        fd = os.open(path, os.O_RDONLY | _CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            spare = tmp_dir / f"{_PREFIX}{uuid.uuid4().hex}"
            os.rename(path, spare)
            os.utime(spare)  # its age as a spare starts now
            return
        except OSError:  # read by someone (or no locks here): delete it as before
            pass
        finally:
            os.close(fd)
    path.unlink()


def claim(tmp_dir: Path, size: int) -> tuple[int, Path] | None:
    """A spare of at least ``size`` bytes to write an object of ``size`` bytes into: its
    descriptor (exclusively locked, truncated to ``size``) and its new temporary path;
    None if there is none. The caller writes every byte, closes, and renames it."""
    if size < SPARE_MIN_BYTES:
        return None
    for spare_size, spare in sorted(_spares(tmp_dir)):
        if spare_size < size:
            continue
        claimed = tmp_dir / f"claim-{uuid.uuid4().hex}"
        try:
            os.rename(spare, claimed)  # taken by someone else first: the next one
        except FileNotFoundError:
            continue
        fd = os.open(claimed, os.O_RDWR | _CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if spare_size > size:
                os.ftruncate(fd, size)
            return fd, claimed
        except OSError:  # a late reader still holds it: never write under a reader
            os.close(fd)
            with contextlib.suppress(OSError):
                claimed.unlink()
    return None


def expire(tmp_dir: Path, *, ttl_s: float = SPARE_TTL_S) -> None:
    """Delete the spares unclaimed for longer than ``ttl_s``."""
    cutoff = time.time() - ttl_s
    for _, spare in _spares(tmp_dir):
        with contextlib.suppress(OSError):
            if spare.stat().st_mtime < cutoff:
                spare.unlink()


def _make_room(tmp_dir: Path, size: int) -> bool:
    """Delete the oldest spares until one of ``size`` more fits the limits."""
    if size > MAX_SPARE_BYTES:
        return False
    spares = []
    for spare_size, spare in _spares(tmp_dir):
        with contextlib.suppress(OSError):
            spares.append((spare.stat().st_mtime, spare_size, spare))
    spares.sort()
    total = sum(s for _, s, _ in spares)
    while spares and (len(spares) >= MAX_SPARES or total + size > MAX_SPARE_BYTES):
        _, spare_size, oldest = spares.pop(0)
        with contextlib.suppress(OSError):
            oldest.unlink()
        total -= spare_size
    return True


def _spares(tmp_dir: Path) -> list[tuple[int, Path]]:
    out = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(tmp_dir):
            if entry.name.startswith(_PREFIX):
                with contextlib.suppress(OSError):
                    out.append((entry.stat().st_size, Path(entry.path)))
    return out
