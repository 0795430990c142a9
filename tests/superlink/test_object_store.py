"""The on-disk object store: streamed writes with verification, reads, GC, pins."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import pytest

from glade import SerdeError
from glade.errors import InvalidArgumentError, LimitExceededError, NotFoundError
from glade.superlink.garbage import GarbageCollector
from glade.superlink.object_store import ObjectStore
from glade.superlink.sqlite_state import SqliteState
from glade.superlink.state import StoredMessage
from glade.transport import iter_chunks
from glade.transport.v1 import message_pb2 as pb


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "objects", max_object_size=1 << 20, chunk_size=1000)


def test_put_read_verify_and_delete(store: ObjectStore) -> None:
    data = os.urandom(5000)
    oid, size = store.put_chunks(iter_chunks(data, chunk_size=700))
    assert (oid, size) == (_sha(data), 5000)
    assert store.has(oid) and store.size(oid) == 5000 and store.verify(oid)
    chunks = list(store.read_chunks(oid))
    assert [len(c.data) for c in chunks] == [1000] * 5
    assert b"".join(c.data for c in chunks) == data
    assert all(c.object_id == oid and c.total_size == 5000 for c in chunks)
    resumed = list(store.read_chunks(oid, offset=4500))
    assert resumed[0].offset == 4500 and resumed[0].data == data[4500:]
    assert bytes(store.map(oid)) == data and store.read_bytes(oid) == data
    assert store.missing([oid, "0" * 64]) == ["0" * 64]
    assert list(store.ids()) == [oid]
    assert store.delete(oid) and not store.has(oid) and not store.delete(oid)


def test_empty_object(store: ObjectStore) -> None:
    oid, size = store.put_chunks(iter_chunks(b""))
    assert size == 0 and oid == _sha(b"")
    chunks = list(store.read_chunks(oid))
    assert len(chunks) == 1 and chunks[0].data == b"" and chunks[0].total_size == 0
    assert bytes(store.map(oid)) == b""


def test_chunks_in_any_order_with_repeats(store: ObjectStore) -> None:
    data = os.urandom(4321)
    chunks = list(iter_chunks(data, chunk_size=500))
    chunks += chunks[:3]
    random.Random(7).shuffle(chunks)
    oid, _ = store.put_chunks(chunks)
    assert oid == _sha(data) and store.read_bytes(oid) == data


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda c: c[:-1], SerdeError, "incomplete"),
        (
            lambda c: [*c[:-1], pb.ObjectChunk(**_fields(c[-1], data=b"x" * len(c[-1].data)))],
            SerdeError,
            "does not match",
        ),
        (
            lambda c: [*c[:1], pb.ObjectChunk(**_fields(c[1], object_id="f" * 64))],
            InvalidArgumentError,
            "one object",
        ),
        (
            lambda c: [*c[:1], pb.ObjectChunk(**_fields(c[1], total_size=99))],
            InvalidArgumentError,
            "disagree",
        ),
        (
            lambda c: [*c[:1], pb.ObjectChunk(**_fields(c[1], offset=10**6))],
            InvalidArgumentError,
            "beyond",
        ),
        (
            lambda c: [pb.ObjectChunk(**_fields(c[0], object_id="NOT-HEX"))],
            InvalidArgumentError,
            "invalid object id",
        ),
        (lambda c: [], InvalidArgumentError, "no chunk"),
    ],
)
def test_bad_uploads_leave_nothing_behind(
    store: ObjectStore, mutate: object, error: type[Exception], match: str
) -> None:
    data = os.urandom(3000)
    chunks = list(iter_chunks(data, chunk_size=1000))
    with pytest.raises(error, match=match):
        store.put_chunks(mutate(chunks))  # type: ignore[operator]
    assert list(store.ids()) == []
    assert list((store.root / "tmp").iterdir()) == []


def _fields(chunk: pb.ObjectChunk, **changes: object) -> dict[str, object]:
    fields = {
        "object_id": chunk.object_id,
        "offset": chunk.offset,
        "total_size": chunk.total_size,
        "data": chunk.data,
    }
    fields.update(changes)
    return fields


def test_too_large_objects_are_refused_before_any_byte_is_written(store: ObjectStore) -> None:
    chunk = pb.ObjectChunk(object_id="a" * 64, offset=0, total_size=(1 << 20) + 1, data=b"x")
    with pytest.raises(LimitExceededError, match="more than"):
        store.put_chunks([chunk])
    assert list((store.root / "tmp").iterdir()) == []


def test_unknown_objects_and_corruption(store: ObjectStore) -> None:
    with pytest.raises(NotFoundError):
        store.read_chunks("0" * 64)
    with pytest.raises(InvalidArgumentError):
        store.read_chunks("../../etc/passwd")
    oid = store.put_bytes(b"payload")
    store.path(oid).write_bytes(b"tampered")
    assert not store.verify(oid)
    assert not store.verify("1" * 64)


def test_garbage_collection_keeps_referenced_pinned_and_young(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects")
    state = SqliteState(":memory:")
    gc = GarbageCollector(state, store, grace_s=60.0, min_age_s=5.0)
    referenced = store.put_bytes(b"referenced")
    pinned = store.put_bytes(b"pinned")
    loose = store.put_bytes(b"loose")
    young = store.put_bytes(b"young")
    old = time.time() - 60
    for oid in (referenced, pinned, loose):
        os.utime(store.path(oid), (old, old))
    state.add_instructions(
        [
            StoredMessage(
                message_id="m",
                run_id=1,
                src_node_id=0,
                dst_node_id=2,
                reply_to="",
                created_at=0.0,
                ttl=10.0,
                payload=b"",
                objects=((referenced, 10),),
            )
        ]
    )
    gc.pin(("run", 1), [pinned])
    assert gc.collect() == [loose]
    assert set(store.ids()) == {referenced, pinned, young}
    assert gc.collect() == []  # young kept it dirty: another pass, nothing new to remove
    gc.release(("run", 1))
    assert gc.collect() == [pinned]
    state.delete_run_messages(1)
    gc.mark_dirty()
    assert gc.collect() == [referenced]
    state.close()


def test_pins_expire(tmp_path: Path) -> None:
    now = [0.0]
    store = ObjectStore(tmp_path / "objects")
    state = SqliteState(":memory:")
    gc = GarbageCollector(state, store, grace_s=10.0, min_age_s=0.0, clock=lambda: now[0])
    oid = store.put_bytes(b"abandoned upload")
    gc.pin(("control", 0), [oid])
    assert gc.collect(force=True) == []
    now[0] = 11.0
    assert gc.collect() == [oid]
    state.close()


def test_leftover_temp_files_are_cleared_on_open(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    (root / "tmp").mkdir(parents=True)
    (root / "tmp" / "partial").write_bytes(b"half an upload")
    ObjectStore(root)
    assert list((root / "tmp").iterdir()) == []
