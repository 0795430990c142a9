"""SharedBuffers: arrays received into shared memory reach LocalBackend workers by reference."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from sim_harness import StartBackend

from glade import Array, ArrayRecord, ErrorCode, Message, RecordDict, keys
from glade.simulation.shared import SharedBuffers
from glade.simulation.shm import SegmentPool


@pytest.fixture
def shared(tmp_path: object) -> Iterator[SharedBuffers]:
    buffers = SharedBuffers(min_size=64 * 1024)
    yield buffers
    buffers.close()


def _filled(shared: SharedBuffers, values: np.ndarray) -> Array:
    """An Array over a shared buffer holding ``values`` (written with pwrite, as a node does)."""
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
    buffer = shared.allocate(raw.size)
    assert buffer is not None
    for start in range(0, raw.size, 100_000):  # in chunks, like a download
        buffer.write(start, raw[start : start + 100_000])
    buffer.close()
    view = buffer.array.data.toreadonly()
    return Array.from_bytes(view, dtype=str(values.dtype), shape=values.shape)


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gc.collect()
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_a_buffer_is_freed_once_its_views_are_gone_and_every_hold_released(
    shared: SharedBuffers,
) -> None:
    values = np.arange(50_000, dtype=np.float32)
    array = _filled(shared, values)
    assert np.array_equal(array.numpy(), values)
    place = shared.locate(memoryview(array.numpy()[10:]).cast("B"))
    assert place is not None
    path, capacity, offset = place
    assert capacity == values.nbytes and offset == 40 and os.path.exists(path)
    assert shared.locate(memoryview(values).cast("B")) is None  # private memory
    shared.hold(path)
    del array
    gc.collect()
    assert os.path.exists(path) and shared.active() == 1  # held by a backend
    shared.release(path)
    assert not os.path.exists(path) and shared.active() == 0


def test_small_buffers_and_closed_buffers_stay_private(shared: SharedBuffers) -> None:
    assert shared.allocate(1000) is None
    shared.close()
    assert shared.allocate(1 << 20) is None


def test_arrays_in_shared_buffers_reach_the_workers_without_a_copy(
    start_backend: StartBackend, shared: SharedBuffers, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    real = SegmentPool.write

    def counting(pool: SegmentPool, buffers: list[memoryview]) -> tuple[str, list[int], int]:
        writes.append(sum(b.nbytes for b in buffers))
        return real(pool, buffers)

    monkeypatch.setattr(SegmentPool, "write", counting)  # the parent's copies into segments
    harness = start_backend(nodes=3, shared=shared)
    values = np.linspace(0, 1, 200_000, dtype=np.float32)
    model = ArrayRecord({"w": _filled(shared, values), "b": np.arange(4)})
    replies = harness.to_all("train", RecordDict({keys.ARRAYS: model}))
    assert writes == []  # the model went by reference, once for every worker
    for reply in replies.values():
        assert np.array_equal(reply.content[keys.ARRAYS]["w"].numpy(), values + 1)
    # the echo returns the shared arrays themselves: copied into the reply, then let go of
    echoed = harness.send([(harness.node_ids[0], "query", RecordDict({keys.ARRAYS: model}))])
    assert np.array_equal(echoed[harness.node_ids[0]].content[keys.ARRAYS]["w"].numpy(), values)
    del model, replies, echoed
    assert _eventually(lambda: shared.active() == 0)


def test_a_worker_that_crashes_lets_go_of_the_shared_buffers_it_held(
    start_backend: StartBackend, shared: SharedBuffers
) -> None:
    harness = start_backend(nodes=2, shared=shared)
    model = ArrayRecord({"w": _filled(shared, np.ones(100_000, dtype=np.float64))})
    node = harness.node_ids[0]
    reply = harness.send([(node, "query.crash", RecordDict({keys.ARRAYS: model}))])[node]
    assert reply.error is not None and reply.error.code == ErrorCode.CLIENT_APP_CRASHED
    del model
    assert _eventually(lambda: shared.active() == 0)
    # the restarted worker still gets shared arrays
    again = ArrayRecord({"w": _filled(shared, np.full(100_000, 2.0))})
    replies = harness.to_all("train", RecordDict({keys.ARRAYS: again}))
    assert all(np.all(r.content[keys.ARRAYS]["w"].numpy() == 3.0) for r in replies.values())


def test_a_backend_shut_down_lets_go_of_the_shared_buffers_it_held(
    start_backend: StartBackend, shared: SharedBuffers
) -> None:
    harness = start_backend(nodes=1, shared=shared)
    model = ArrayRecord({"w": _filled(shared, np.ones(100_000, dtype=np.float32))})
    node = harness.node_ids[0]
    content = RecordDict({keys.ARRAYS: model})
    harness.grid.push_messages([Message(content, dst_node_id=node, message_type="query.slow")])
    del content
    time.sleep(0.3)  # the worker is in the handler, holding the buffer
    del model
    harness.backend.shutdown()
    assert _eventually(lambda: shared.active() == 0)


def test_a_view_that_goes_while_the_lock_is_held_is_handled_afterwards(
    shared: SharedBuffers,
) -> None:
    """The garbage collector may drop the last view in a thread holding the lock: the
    buffer is freed once the lock is free, without a deadlock."""
    array = _filled(shared, np.ones(100_000, dtype=np.float32))
    place = shared.locate(memoryview(array.numpy()).cast("B"))
    assert place is not None
    with shared._lock:
        del array
        gc.collect()
        assert os.path.exists(place[0])  # queued, not handled under someone else's lock
    assert shared.active() == 0 and not os.path.exists(place[0])


def test_a_kept_spare_is_handed_out_again_for_the_same_size_and_dropped_on_demand() -> None:
    buffers = SharedBuffers(min_size=64 * 1024, keep_spare=True)
    try:
        first = _filled(buffers, np.arange(100_000, dtype=np.float32))
        place = buffers.locate(memoryview(first.numpy()).cast("B"))
        assert place is not None
        path = place[0]
        del first
        assert _eventually(lambda: buffers.active() == 0)
        assert os.path.exists(path)  # freed, but kept as the spare
        second = _filled(buffers, np.full(100_000, 7.0, dtype=np.float32))
        again = buffers.locate(memoryview(second.numpy()).cast("B"))
        assert again is not None and again[0] == path  # the same memory, new bytes
        assert np.all(second.numpy() == 7.0)
        del second
        assert _eventually(lambda: buffers.active() == 0)
        other = _filled(buffers, np.ones(30_000, dtype=np.float32))  # another size
        assert not os.path.exists(path)  # the spare went before a new buffer came
        del other
        assert _eventually(lambda: buffers.active() == 0)
        kept = [f for f in os.listdir(os.path.dirname(path))]
        assert len(kept) == 1
        buffers.drop_spare()
        assert os.listdir(os.path.dirname(path)) == []
    finally:
        buffers.close()


def test_without_keep_spare_a_freed_buffer_is_deleted(shared: SharedBuffers) -> None:
    array = _filled(shared, np.arange(100_000, dtype=np.float32))
    place = shared.locate(memoryview(array.numpy()).cast("B"))
    assert place is not None
    del array
    assert _eventually(lambda: shared.active() == 0)
    assert not os.path.exists(place[0])
