"""The on-disk object store: streamed writes with verification, reads, GC, pins."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from glade import SerdeError
from glade.digest import content_id
from glade.errors import InvalidArgumentError, LimitExceededError, NotFoundError
from glade.superlink.garbage import GarbageCollector
from glade.superlink.object_store import ObjectStore, commit_temp, write_temp
from glade.superlink.sqlite_state import SqliteState
from glade.superlink.state import StoredMessage
from glade.transport import iter_chunks
from glade.transport.v1 import message_pb2 as pb


def _sha(data: bytes) -> str:
    return content_id(data)


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


def test_encoded_reads_come_from_a_mapping_and_resume_at_an_offset(store: ObjectStore) -> None:
    from glade.transport.object_wire import decode_chunk

    data = os.urandom(4500)
    oid, _ = store.put_chunks(iter_chunks(data, chunk_size=1000))
    chunks = [decode_chunk(b) for b in store.read_encoded(oid)]
    assert [c.offset for c in chunks] == [0, 1000, 2000, 3000, 4000]
    assert b"".join(bytes(c.data) for c in chunks) == data
    assert all(c.object_id == oid and c.total_size == 4500 for c in chunks)
    resumed = [decode_chunk(b) for b in store.read_encoded(oid, offset=4200)]
    assert [(c.offset, bytes(c.data)) for c in resumed] == [(4200, data[4200:])]
    with pytest.raises(InvalidArgumentError, match="beyond"):
        store.read_encoded(oid, offset=4501)
    with pytest.raises(NotFoundError):
        store.read_encoded("0" * 64)
    empty, _ = store.put_chunks(iter_chunks(b""))
    (only,) = [decode_chunk(b) for b in store.read_encoded(empty)]
    assert only.object_id == empty and only.total_size == 0 and bytes(only.data) == b""


def test_an_object_deleted_while_it_is_served_is_served_whole(store: ObjectStore) -> None:
    from glade.transport.object_wire import decode_chunk

    data = os.urandom(3000)
    oid, _ = store.put_chunks(iter_chunks(data, chunk_size=1000))
    reading = store.read_encoded(oid)
    first = decode_chunk(next(reading))
    assert store.delete(oid)  # garbage-collected meanwhile: the mapping keeps the bytes
    rest = [decode_chunk(b) for b in reading]
    assert bytes(first.data) + b"".join(bytes(c.data) for c in rest) == data


def test_temp_writes_are_committed_once(tmp_path: Path) -> None:
    from glade.superlink.object_store import commit_temp, write_temp

    store = ObjectStore(tmp_path / "objects")
    data = os.urandom(2000)
    first, second = (
        write_temp(store.root, memoryview(data)),
        write_temp(store.root, memoryview(data)),
    )
    commit_temp(store.root, _sha(data), first)
    commit_temp(store.root, _sha(data), second)  # stored already: the file just goes
    assert store.read_bytes(_sha(data)) == data and store.verify(_sha(data))
    assert list((store.root / "tmp").iterdir()) == []


def test_unnamed_uploads_are_named_by_their_hash_in_any_order(store: ObjectStore) -> None:
    data = os.urandom(4321)
    in_order = list(iter_chunks(data, object_id="", chunk_size=500))
    assert store.put_chunks(in_order) == (_sha(data), 4321)
    shuffled = in_order[:]
    random.Random(3).shuffle(shuffled)
    other = os.urandom(4321)
    assert store.put_chunks(iter_chunks(other, object_id="", chunk_size=500)) == (_sha(other), 4321)
    assert store.put_chunks(shuffled) == (_sha(data), 4321)  # stored already: the same file
    assert store.verify(_sha(data)) and store.verify(_sha(other))
    mixed = [*iter_chunks(data, object_id="", chunk_size=500)][:2]
    mixed.append(pb.ObjectChunk(object_id=_sha(data), offset=1000, total_size=4321, data=b"x"))
    with pytest.raises(InvalidArgumentError, match="one object"):
        store.put_chunks(mixed)
    assert list((store.root / "tmp").iterdir()) == []


def test_bytes_sent_again_differently_after_hashing_cannot_poison_an_id(
    store: ObjectStore,
) -> None:
    """A chunk hashed on the way, then overwritten by a repeat with other bytes: the hash
    must cover what is stored, not what came first."""
    good = os.urandom(3000)
    chunks = list(iter_chunks(good, chunk_size=1000))
    evil = pb.ObjectChunk(object_id=_sha(good), offset=0, total_size=3000, data=b"E" * 1000)
    with pytest.raises(SerdeError, match="does not match"):
        store.put_chunks([*chunks, evil])
    assert not store.has(_sha(good))
    unnamed = list(iter_chunks(good, object_id="", chunk_size=1000))
    evil.object_id = ""
    object_id, _ = store.put_chunks([*unnamed, evil])  # named by what is stored
    assert object_id == _sha(b"E" * 1000 + good[1000:]) and store.verify(object_id)


def test_storing_bytes_that_are_there_already_keeps_the_stored_file_and_refreshes_its_age(
    store: ObjectStore,
) -> None:
    data = os.urandom(200_000)
    object_id = store.put_bytes(data)
    path = store.path(object_id)
    os.utime(path, (time.time() - 3600, time.time() - 3600))  # old: the GC could take it
    inode = path.stat().st_ino
    tmp = write_temp(store.root, memoryview(data))
    commit_temp(store.root, object_id, tmp)
    # not renamed over (ext4 would write the new file out at once): the same file, now young
    assert path.stat().st_ino == inode and path.read_bytes() == data
    assert time.time() - path.stat().st_mtime < 60
    assert not tmp.exists() and list((store.root / "tmp").iterdir()) == []
    # and an upload of the same bytes through chunks ends the same way
    assert store.put_chunks(iter_chunks(data, chunk_size=700))[0] == object_id
    assert path.stat().st_ino == inode and list((store.root / "tmp").iterdir()) == []


def test_a_pin_taken_while_the_collector_runs_keeps_the_object(tmp_path: Path) -> None:
    """A ServerApp asks (HasObjects) for a model stored rounds ago while a collection pass
    that has already read the pins and references is under way: the object must stay,
    since the ServerApp is told it is there and will not upload it again."""
    store = ObjectStore(tmp_path / "objects")
    state = SqliteState(":memory:")
    gc = GarbageCollector(state, store, grace_s=60.0, min_age_s=0.0)
    model = store.put_bytes(b"the model of round 1")
    loose = store.put_bytes(b"really garbage")
    real = state.referenced_objects

    def referenced_while_pinned() -> set[str]:
        gc.pin(("run", 1), [model])  # HasObjects arrives meanwhile
        return real()

    state.referenced_objects = referenced_while_pinned  # type: ignore[method-assign]
    assert gc.collect(force=True) == [loose]
    assert store.has(model) and not store.has(loose)
    state.close()
