"""The worker loop in this process (no subprocess): reply packing and its failure path."""

from __future__ import annotations

import socket
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest

from glade import ArrayRecord, ErrorCode, Message, RecordDict, keys
from glade.simulation.shm import MappingCache
from glade.simulation.wire import Kind, load_each, parse
from glade.simulation.worker import Worker, WorkerInit


@pytest.fixture
def worker(tmp_path: Path):  # type: ignore[no-untyped-def]
    status = tmp_path / "status"
    status.write_bytes(bytes(16))
    init = WorkerInit(
        spec=b"",
        sys_path=[],
        run_id=1,
        run_config={},
        nodes=[],
        run_dir=str(tmp_path),
        prefix="w0g1-",
        status_path=str(status),
        threshold=1024,
        flush_interval=0.01,
    )
    ours, theirs = socket.socketpair()
    parent, child = Connection(ours.detach()), Connection(theirs.detach())
    yield Worker(child, init), parent
    parent.close()
    child.close()


def _reply(value: float) -> Message:
    instruction = Message(RecordDict(), dst_node_id=5, message_type="train")
    content = RecordDict({keys.ARRAYS: ArrayRecord([np.full(1000, value)])})
    return Message.reply(instruction, content)


def test_replies_go_out_with_their_large_arrays_in_segments(worker) -> None:  # type: ignore[no-untyped-def]
    loop, parent = worker
    sent = [_reply(1.0), _reply(2.0)]
    loop._outbox = list(sent)
    loop._flush()
    kind, (entries, dropped), payload = parse(parent.recv_bytes())
    assert kind == Kind.REPLIES and dropped == []
    assert all(path is not None for _, path, _, _ in entries)  # 8 kB arrays > threshold
    released: list[str] = []
    got = load_each(payload, entries, MappingCache(released.append).open)
    assert [m.metadata.reply_to_message_id for m in got] == [
        m.metadata.reply_to_message_id for m in sent
    ]
    assert [float(m.content[keys.ARRAYS]["0"].numpy()[0]) for m in got] == [1.0, 2.0]


def test_a_full_shared_memory_sends_the_arrays_in_band(worker) -> None:  # type: ignore[no-untyped-def]
    loop, parent = worker

    def full(buffers):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    loop._pool.write = full
    sent = [_reply(1.0), _reply(2.0)]
    loop._outbox = list(sent)
    loop._flush()
    _, (entries, _), payload = parse(parent.recv_bytes())
    assert [path for _, path, _, _ in entries] == [None, None]
    got = load_each(payload, entries, MappingCache(lambda path: None).open)
    assert [float(m.content[keys.ARRAYS]["0"].numpy()[-1]) for m in got] == [1.0, 2.0]


def test_a_reply_that_cannot_be_sent_becomes_an_error_reply(worker) -> None:  # type: ignore[no-untyped-def]
    loop, parent = worker

    def broken(buffers):  # type: ignore[no-untyped-def]
        raise RuntimeError("something else went wrong")

    loop._pool.write = broken
    sent = _reply(1.0)
    loop._outbox = [sent]
    loop._flush()
    _, (entries, _), payload = parse(parent.recv_bytes())
    [got] = load_each(payload, entries, MappingCache(lambda path: None).open)
    assert got.error is not None and got.error.code == ErrorCode.UNKNOWN
    assert "something else went wrong" in got.error.reason
    assert got.metadata.reply_to_message_id == sent.metadata.reply_to_message_id
    assert got.metadata.dst_node_id == sent.metadata.dst_node_id
