"""Delivery with small objects: validated against the request's verified bytes, one decode
per distinct content of a broadcast, and served to the batches from a cache."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from glade import ArrayRecord, ConfigRecord, Message, RecordDict
from glade.digest import content_id
from glade.errors import SerdeError
from glade.superlink.delivery import Delivery
from glade.superlink.notify import Notifier
from glade.superlink.object_store import ObjectStore
from glade.superlink.sqlite_state import SqliteState
from glade.superlink.state import RunInfo, RunStatus
from glade.transport import codec
from glade.transport.codec import message_to_proto
from glade.transport.objects import split_inline
from glade.transport.v1 import message_pb2 as pb


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Delivery, ObjectStore, int, list[int]]:
    state = SqliteState(":memory:")
    store = ObjectStore(tmp_path / "objects")
    now = time.time()
    nodes = [state.register_node(name=f"n{i}", node_config={}, now=now) for i in range(5)]
    run_id = state.create_run(
        RunInfo(run_id=0, status=RunStatus.PENDING, bundle_id="b", server_app="s", client_app="c")
    )
    state.transition_run(run_id, RunStatus.RUNNING, now=now)
    return Delivery(state, store, Notifier(), lease_s=30), store, run_id, nodes


def _broadcast(run_id: int, nodes: list[int]) -> tuple[list[pb.Message], list[pb.ObjectChunk]]:
    content = RecordDict(
        {"arrays": ArrayRecord({"w": np.arange(100, dtype=np.float32)}), "c": ConfigRecord({})}
    )
    protos, objects = [], {}
    for node in nodes:
        msg = Message(content, dst_node_id=node).with_metadata(run_id=run_id, src_node_id=0)
        proto, arrays = message_to_proto(msg)
        protos.append(proto)
        objects.update(arrays)
    inline, rest = split_inline(objects)
    assert not rest and len(inline) == 1
    return protos, inline


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each message the Delivery decodes from here on: True when it had content."""
    decoded: list[bool] = []
    real = codec.message_from_proto

    def counting(proto: pb.Message, objects: object, **kwargs: object) -> object:
        decoded.append(len(proto.content.entries) > 0)
        return real(proto, objects, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("glade.superlink.delivery.message_from_proto", counting)
    return decoded


def test_a_broadcast_decodes_its_content_once_and_still_checks_every_message(
    setup: tuple[Delivery, ObjectStore, int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery, _, run_id, nodes = setup
    decoded = _count_decodes(monkeypatch)
    protos, inline = _broadcast(run_id, nodes)
    assert len(delivery.push_instructions(run_id, protos, inline)) == len(nodes)
    assert decoded.count(True) == 1  # the shared content, once
    assert len(decoded) == len(nodes)  # every message's metadata was checked
    # the same content with bad metadata is still refused
    protos, inline = _broadcast(run_id, nodes[:2])
    protos[1].metadata.ttl = 0
    with pytest.raises(SerdeError, match="ttl"):
        delivery.push_instructions(run_id, protos, inline)


def test_batches_serve_small_objects_from_the_cache_with_their_true_bytes(
    setup: tuple[Delivery, ObjectStore, int, list[int]],
) -> None:
    delivery, store, run_id, nodes = setup
    protos, inline = _broadcast(run_id, nodes)
    (chunk,) = inline
    delivery.push_instructions(run_id, protos, inline)
    store.delete(chunk.object_id)  # gone from disk: the cached bytes still serve the batches
    for node in nodes:
        leased = delivery.pull_instructions(node, wait_s=0, limit=10)
        batch = delivery.batch(leased)
        (sent,) = batch.inline_objects
        assert sent.object_id == chunk.object_id and sent.data == chunk.data
        assert content_id(sent.data) == sent.object_id


def test_bytes_sent_under_a_stored_id_do_not_replace_the_stored_ones(
    setup: tuple[Delivery, ObjectStore, int, list[int]],
) -> None:
    delivery, store, run_id, nodes = setup
    protos, inline = _broadcast(run_id, nodes[:1])
    (chunk,) = inline
    good = bytes(chunk.data)
    store.put_inline(inline, limit=1 << 20)  # stored already, with the right bytes
    chunk.data = bytes(len(good))  # a request carrying other bytes under the same id
    delivery.push_instructions(run_id, protos, inline)
    assert store.read_bytes(chunk.object_id) == good
    batch = delivery.batch(delivery.pull_instructions(nodes[0], wait_s=0, limit=10))
    assert [c.data for c in batch.inline_objects] == [good]


def _reply(instruction: pb.Message, node: int, w: np.ndarray) -> tuple[pb.Message, list]:
    md = instruction.metadata
    msg = Message(RecordDict({"arrays": ArrayRecord({"w": w})}), dst_node_id=0).with_metadata(
        run_id=md.run_id, src_node_id=node, reply_to_message_id=md.message_id
    )
    proto, arrays = message_to_proto(msg)
    inline, _ = split_inline(arrays)
    return proto, inline


def test_equal_replies_of_many_nodes_are_decoded_once_when_they_carry_their_objects(
    setup: tuple[Delivery, ObjectStore, int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery, _, run_id, nodes = setup
    protos, inline = _broadcast(run_id, nodes)
    delivery.push_instructions(run_id, protos, inline)
    decoded = _count_decodes(monkeypatch)
    w = np.full(100, 2.0, dtype=np.float32)
    for node, instruction in zip(nodes, protos, strict=True):
        reply, reply_inline = _reply(instruction, node, w)
        assert delivery.push_replies(node, [reply], reply_inline)
    assert decoded.count(True) == 1  # the first node's; the others' content was the same
    assert len(decoded) == len(nodes)
    # without its object inline, a known content is decoded against the store again
    protos, inline = _broadcast(run_id, nodes[:1])
    delivery.push_instructions(run_id, protos, inline)
    reply, _ = _reply(protos[0], nodes[0], w)
    decoded.clear()
    delivery.push_replies(nodes[0], [reply], [])
    assert decoded == [True]
