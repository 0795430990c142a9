"""Spare files: large garbage objects are recycled for the next large writes, never while
anyone reads them."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import numpy as np
import pytest

from glade.digest import content_id
from glade.superlink import spares
from glade.superlink.object_store import ObjectStore, commit_temp, map_object, new_temp

SIZE = 1 << 20


@pytest.fixture(autouse=True)
def small_spares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spares, "SPARE_MIN_BYTES", SIZE)  # 1 MiB objects count as large


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "objects")


def _put(store: ObjectStore, data: bytes) -> str:
    object_id = content_id(data)
    fd, tmp = new_temp(store.root, len(data), prefix="t-")
    with open(fd, "wb") as out:
        out.write(data)
    commit_temp(store.root, object_id, tmp)
    return object_id


def _age(store: ObjectStore, object_id: str, seconds: float = 3600) -> None:
    then = time.time() - seconds
    os.utime(store.path(object_id), (then, then))


def _spare_files(store: ObjectStore) -> list[Path]:
    return sorted(p for p in (store.root / "tmp").iterdir() if p.name.startswith("spare-"))


def test_a_collected_object_is_kept_as_a_spare_and_the_next_write_reuses_its_file(
    store: ObjectStore,
) -> None:
    old = _put(store, os.urandom(SIZE + 100))
    inode = store.path(old).stat().st_ino
    _age(store, old)
    assert store.collect_garbage(set(), grace_s=5) == ([old], 0)
    assert not store.has(old)
    [spare] = _spare_files(store)
    assert spare.stat().st_ino == inode
    data = os.urandom(SIZE)  # smaller: the spare is truncated to it
    new = _put(store, data)
    assert store.path(new).stat().st_ino == inode and store.read_bytes(new) == data
    assert store.verify(new) and _spare_files(store) == []


def test_an_object_mapped_by_a_reader_is_deleted_not_recycled(store: ObjectStore) -> None:
    data = os.urandom(SIZE)
    object_id = _put(store, data)
    view = map_object(store.path(object_id))  # e.g. a ServerApp's reply array
    _age(store, object_id)
    assert store.collect_garbage(set(), grace_s=5)[0] == [object_id]
    assert _spare_files(store) == []  # deleted: the reader keeps the old file
    _put(store, os.urandom(SIZE))  # a new write of the same size: a new file
    assert bytes(view) == data
    del view


def test_a_spare_is_recycled_only_once_its_last_map_is_gone(store: ObjectStore) -> None:
    object_id = _put(store, os.urandom(SIZE))
    view = np.frombuffer(map_object(store.path(object_id)), np.uint8)[10:]  # a derived view
    _age(store, object_id)
    store.collect_garbage(set(), grace_s=5)
    assert _spare_files(store) == []
    del view
    again = _put(store, os.urandom(SIZE))
    reader = map_object(store.path(again))
    del reader  # lock released with the last view
    _age(store, again)
    store.collect_garbage(set(), grace_s=5)
    assert len(_spare_files(store)) == 1


def test_a_writer_never_claims_a_spare_a_late_reader_holds(store: ObjectStore) -> None:
    object_id = _put(store, os.urandom(SIZE))
    _age(store, object_id)
    store.collect_garbage(set(), grace_s=5)
    [spare] = _spare_files(store)
    fd = os.open(spare, os.O_RDONLY)  # a reader that opened the object just before
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        assert spares.claim(store.root / "tmp", SIZE) is None
        assert _spare_files(store) == []  # and it is gone for good
    finally:
        os.close(fd)


def test_small_objects_are_deleted_and_the_spares_are_bounded_and_expire(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = _put(store, os.urandom(SIZE - 1))
    monkeypatch.setattr(spares, "MAX_SPARES", 2)
    large = [_put(store, os.urandom(SIZE + i)) for i in range(3)]
    for object_id in [small, *large]:
        _age(store, object_id)
    store.collect_garbage(set(), grace_s=5)
    assert len(_spare_files(store)) == 2  # the oldest went to make room
    assert not store.has(small)
    spares.expire(store.root / "tmp", ttl_s=3600)
    assert len(_spare_files(store)) == 2
    for spare in _spare_files(store):
        os.utime(spare, (time.time() - 7200, time.time() - 7200))
    store.expire_spares()
    assert _spare_files(store) == []


def test_open_locked_refuses_a_file_no_longer_at_its_path(store: ObjectStore) -> None:
    object_id = _put(store, os.urandom(SIZE))
    path = store.path(object_id)
    real_stat = os.stat

    def renamed_meanwhile(p, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(p) == path:
            raise FileNotFoundError(2, "retired", str(p))
        return real_stat(p, *args, **kwargs)

    fd = spares.open_locked(path)
    os.close(fd)
    os.stat = renamed_meanwhile  # type: ignore[assignment]
    try:
        with pytest.raises(FileNotFoundError):
            spares.open_locked(path)
    finally:
        os.stat = real_stat  # type: ignore[assignment]


def test_the_open_file_limit_is_raised_within_the_hard_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        lower = min(soft, 256)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
        got = spares.raise_open_file_limit(wanted=lower + 100)
        expected = lower + 100 if hard == resource.RLIM_INFINITY else min(lower + 100, hard)
        assert got == expected == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert spares.raise_open_file_limit(wanted=10) == expected  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
