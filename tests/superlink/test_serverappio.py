"""ServerAppIO: run tokens, validation, and the ServerAppIoGrid a ServerApp process uses."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from sl_harness import FakeNode

from glade import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict, RunEvent
from glade.digest import content_id
from glade.errors import AccessDeniedError, InvalidStateError, TransportError
from glade.message import ErrorCode
from glade.server.events import History
from glade.superlink import SuperLink
from glade.superlink.convert import event_to_proto
from glade.superlink.grid import ServerAppIoGrid
from glade.superlink.runs import log_topic
from glade.superlink.state import RunInfo, RunStatus, SubStatus
from glade.transport.codec import message_to_proto
from glade.transport.grpc_options import channel
from glade.transport.objects import missing_objects, run_metadata, send_objects
from glade.transport.v1 import serverappio_pb2 as spb
from glade.transport.v1 import serverappio_pb2_grpc

TOKEN = "s3cret-token"


def _running_run(link: SuperLink, token: str = TOKEN) -> int:
    run_id = link.state.create_run(
        RunInfo(
            run_id=0,
            status=RunStatus.PENDING,
            bundle_id="0" * 64,
            server_app="",
            client_app="",
            run_config={"lr": 0.5},
        )
    )
    link.state.set_run_token(run_id, hashlib.sha256(token.encode()).hexdigest())
    link.state.transition_run(run_id, RunStatus.RUNNING, now=time.time())
    return run_id


@pytest.fixture(params=["local-objects", "grpc-objects"])
def grid(request: pytest.FixtureRequest, link: SuperLink) -> Iterator[ServerAppIoGrid]:
    run_id = _running_run(link)
    object_dir = link.store.root if request.param == "local-objects" else None
    with channel(link.addresses["serverappio"]) as chan:
        g = ServerAppIoGrid(chan, run_id=run_id, token=TOKEN, object_dir=object_dir)
        yield g
        g.close()


def _train(node_ids: list[int], size: int) -> list[Message]:
    arrays = ArrayRecord({"w": np.arange(size, dtype=np.float32), "b": np.ones(3)})
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"round": 1})})
    return [Message(content, dst_node_id=n, group_id="1") for n in node_ids]


@pytest.mark.parametrize("size", [10, 300_000])  # inline objects, and streamed ones
def test_grid_round_trip_with_nodes(link: SuperLink, grid: ServerAppIoGrid, size: int) -> None:
    nodes = [FakeNode(link.addresses["fleet"]).serve() for _ in range(3)]
    try:
        assert sorted(grid.get_node_ids()) == sorted(n.node_id for n in nodes)
        assert grid.run_info().run_config == {"lr": 0.5}
        replies = grid.send_and_receive(_train(grid.get_node_ids(), size), timeout=20)
        assert len(replies) == 3 and all(r.has_content for r in replies)
        expected = np.arange(size, dtype=np.float32) * 2
        for reply in replies:
            assert np.array_equal(reply.content["arrays"]["w"].numpy(), expected)
            assert reply.content["metrics"]["value"] == float(
                np.sum(np.arange(size, dtype=np.float32))
            )
        # the broadcast model was stored once for all three nodes
        assert len(list(link.store.ids())) <= 4
    finally:
        for node in nodes:
            node.close()


def test_grid_pull_waits_without_polling_and_times_out(grid: ServerAppIoGrid) -> None:
    started = time.monotonic()
    assert grid.pull_messages(["0" * 32], timeout=0.3) == []
    assert 0.25 < time.monotonic() - started < 2


def test_report_builds_the_run_history(link: SuperLink, grid: ServerAppIoGrid) -> None:
    grid.report(RunEvent(kind="round-started", server_round=1, num_rounds=2))
    grid.report(
        RunEvent(
            kind="stage-finished",
            stage="train",
            server_round=1,
            metrics={"loss": 0.25, "acc": [1, 2]},
            num_replies=3,
        )
    )
    grid.flush_reports(timeout=10)  # reports travel in the background, in order
    stored = json.loads(link.state.get_run(grid.run_id).history_json)
    assert stored["metrics"] == {"train": {"1": {"loss": 0.25, "acc": [1, 2]}}}
    assert stored == grid.history.to_dict()


def test_pushing_to_unknown_or_offline_nodes(link: SuperLink, grid: ServerAppIoGrid) -> None:
    with pytest.raises(ValueError, match="not part of this run"):
        grid.push_messages(_train([12345], 4))
    node = FakeNode(link.addresses["fleet"])
    try:
        assert grid.get_node_ids() == [node.node_id]
        link.state.mark_offline(last_seen_before=time.time() + 60)
        assert grid.get_node_ids() == []  # offline nodes are not offered to the ServerApp
        # a message that raced the node going offline is answered with an error at once
        msg = _train([node.node_id], 4)[0].with_metadata(run_id=grid.run_id)
        proto, objects = message_to_proto(msg)
        with channel(link.addresses["serverappio"]) as chan:
            stub = serverappio_pb2_grpc.ServerAppIoStub(chan)
            inline = send_objects(stub, objects, metadata=run_metadata(grid.run_id, TOKEN))
            request = spb.ServerPushRequest(
                run_id=grid.run_id, token=TOKEN, messages=[proto], inline_objects=inline
            )
            (mid,) = stub.PushMessages(request).message_ids
        (reply,) = grid.pull_messages([mid], timeout=5)
        assert reply.has_error and reply.error.code == ErrorCode.NODE_UNAVAILABLE
        assert reply.metadata.src_node_id == node.node_id
        assert reply.metadata.reply_to_message_id == mid
        # unknown nodes are refused by the SuperLink too
        unknown = message_to_proto(msg.with_metadata(dst_node_id=777))[0]
        with channel(link.addresses["serverappio"]) as chan:
            stub = serverappio_pb2_grpc.ServerAppIoStub(chan)
            request = spb.ServerPushRequest(run_id=grid.run_id, token=TOKEN, messages=[unknown])
            with pytest.raises(grpc.RpcError) as info:
                stub.PushMessages(request)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        node.close()


def test_tokens_and_run_states_are_checked(link: SuperLink) -> None:
    run_id = _running_run(link)
    with channel(link.addresses["serverappio"]) as chan:
        stub = serverappio_pb2_grpc.ServerAppIoStub(chan)
        cases = [
            (spb.RunTokenRequest(run_id=run_id, token="wrong"), grpc.StatusCode.PERMISSION_DENIED),
            (spb.RunTokenRequest(run_id=run_id), grpc.StatusCode.PERMISSION_DENIED),
            (spb.RunTokenRequest(run_id=run_id + 9, token=TOKEN), grpc.StatusCode.NOT_FOUND),
            (spb.RunTokenRequest(run_id=0, token=TOKEN), grpc.StatusCode.NOT_FOUND),
        ]
        for request, code in cases:
            with pytest.raises(grpc.RpcError) as info:
                stub.GetNodes(request)
            assert info.value.code() == code
        with pytest.raises(AccessDeniedError):
            missing_objects(stub, ["0" * 64], metadata=run_metadata(run_id, "wrong"))
        with pytest.raises(AccessDeniedError, match="glade-run-token"):
            missing_objects(stub, ["0" * 64], metadata=(("glade-run-id", str(run_id)),))
        # garbage and oversized requests: refused, the service stays up
        raw = chan.unary_unary("/glade.v1.ServerAppIo/PushMessages")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\x1a\x80\x80\x80\x80\x10garbage")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\x12" + b"\xff\xff\xff\x0f" + b"x" * (40 << 20))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.GetNodes(spb.RunTokenRequest(run_id=run_id, token=TOKEN)).node_ids == []
        # a finished run may do nothing any more
        link.state.transition_run(
            run_id, RunStatus.FINISHED, now=time.time(), sub_status=SubStatus.COMPLETED
        )
        grid = ServerAppIoGrid(chan, run_id=run_id, token=TOKEN)
        with pytest.raises(InvalidStateError, match="finished"):
            grid.get_node_ids()
        grid.close()


def test_bad_instructions_are_refused(link: SuperLink, grid: ServerAppIoGrid) -> None:
    node = FakeNode(link.addresses["fleet"])
    try:
        with channel(link.addresses["serverappio"]) as chan:
            stub = serverappio_pb2_grpc.ServerAppIoStub(chan)
            msg = _train([node.node_id], 4)[0].with_metadata(run_id=grid.run_id)
            proto, _ = message_to_proto(msg)  # objects never uploaded
            request = spb.ServerPushRequest(run_id=grid.run_id, token=TOKEN, messages=[proto])
            with pytest.raises(grpc.RpcError) as info:
                stub.PushMessages(request)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            wrong_run = message_to_proto(msg.with_metadata(run_id=grid.run_id + 1))[0]
            grid.push_messages([msg])  # uploads the objects
            request = spb.ServerPushRequest(run_id=grid.run_id, token=TOKEN, messages=[wrong_run])
            with pytest.raises(grpc.RpcError) as info:
                stub.PushMessages(request)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert len(node.pull(wait_s=1)) == 1  # only the good one was stored
    finally:
        node.close()


def test_grid_reports_an_unreachable_superlink_as_transport_error() -> None:
    with channel("127.0.0.1:9") as chan:
        grid = ServerAppIoGrid(chan, run_id=1, token=TOKEN)
        with pytest.raises(TransportError):
            grid.get_node_ids()


def test_replies_are_released_once_pulled_again(link: SuperLink, grid: ServerAppIoGrid) -> None:
    node = FakeNode(link.addresses["fleet"]).serve()
    try:
        messages = _train([node.node_id], 300_000)
        (reply,) = grid.send_and_receive(messages, timeout=20)
        reply_objects = set(reply.content["arrays"].keys())
        assert reply_objects
        before = set(link.store.ids())
        grid.pull_messages(["0" * 32], timeout=0)  # the next pull lets the last ones go
        link.garbage.collect(force=True)
        # young objects survive a pass; the references are gone from the state already
        assert link.state.referenced_objects() == {"0" * 64}  # only the bundle of the run
        assert set(link.store.ids()) <= before
        reply_value = reply.content["metrics"]["value"]
        assert reply_value == float(np.sum(np.arange(300_000, dtype=np.float32)))
        assert isinstance(reply.content["metrics"], MetricRecord)
    finally:
        node.close()


def test_a_local_push_hashes_while_writing_and_leaves_no_temp_file(
    link: SuperLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import glade.superlink.grid as grid_module

    node = FakeNode(link.addresses["fleet"])
    tmp = link.store.root / "tmp"
    try:
        with channel(link.addresses["serverappio"]) as chan:
            grid = ServerAppIoGrid(
                chan, run_id=_running_run(link), token=TOKEN, object_dir=link.store.root
            )
            messages = _train([node.node_id], 300_000)
            grid.push_messages(messages)
            array = messages[0].content["arrays"]["w"]
            assert link.store.verify(array.digest)  # renamed into place under its id
            assert list(tmp.iterdir()) == []

            def full(root: object, data: memoryview) -> object:
                raise OSError(28, "No space left on device")

            monkeypatch.setattr(grid_module, "write_temp", full)
            with pytest.raises(OSError, match="No space"):
                grid.push_messages(_train([node.node_id], 300_001))
            assert list(tmp.iterdir()) == []
            grid.close()
    finally:
        node.close()


def test_a_local_push_leaves_the_model_as_a_map_of_the_store_not_private_memory(
    link: SuperLink,
) -> None:
    """After the ServerApp stores a large array, the Array reads the stored file (page cache)
    and the app's own copy can be freed: a round holds one private copy of the model, not two."""
    import weakref

    node = FakeNode(link.addresses["fleet"])
    try:
        with channel(link.addresses["serverappio"]) as chan:
            grid = ServerAppIoGrid(
                chan, run_id=_running_run(link), token=TOKEN, object_dir=link.store.root
            )
            original = np.arange(600_000, dtype=np.float32)  # 2.4 MB: above the spill size
            gone = weakref.ref(original)
            message = Message(
                RecordDict({"arrays": ArrayRecord({"w": Array(original)})}),
                dst_node_id=node.node_id,
                message_type="train",
            )
            small = Array(np.ones(10, dtype=np.float32))
            message.content["arrays"]["b"] = small
            del original
            assert gone() is not None  # the Array wraps it without a copy
            grid.push_messages([message])
            w = message.content["arrays"]["w"]
            assert gone() is None  # freed: the Array now maps the stored file
            view = w.numpy()
            assert not view.flags.writeable and not view.flags.owndata
            np.testing.assert_array_equal(view, np.arange(600_000, dtype=np.float32))
            assert w.digest == content_id(view.tobytes())
            assert small.numpy().flags.writeable is False  # small arrays stay as they were
            grid.close()
    finally:
        node.close()


def test_one_report_event_request_carries_several_events_in_order(link: SuperLink) -> None:
    run_id = _running_run(link)
    logs = link.notifier.version(log_topic(run_id))
    events = [
        RunEvent(kind="round-started", server_round=1, num_rounds=1),
        RunEvent(kind="stage-finished", stage="train", server_round=1, metrics={"loss": 0.5}),
        RunEvent(kind="round-finished", server_round=1, num_rounds=1, elapsed_s=0.1),
    ]
    protos = [event_to_proto(e) for e in events]
    with channel(link.addresses["serverappio"]) as chan:
        stub = serverappio_pb2_grpc.ServerAppIoStub(chan)
        stub.ReportEvent(
            spb.ReportEventRequest(
                run_id=run_id, token=TOKEN, event=protos[0], more_events=protos[1:]
            )
        )
        too_many = [protos[0]] * 1001
        with pytest.raises(grpc.RpcError) as info:
            stub.ReportEvent(
                spb.ReportEventRequest(
                    run_id=run_id, token=TOKEN, event=protos[0], more_events=too_many
                )
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    expected = History()
    for event in events:
        expected.add(event)
    assert json.loads(link.state.get_run(run_id).history_json) == expected.to_dict()
    assert link.notifier.version(log_topic(run_id)) == logs  # log followers slept on


def test_grid_reports_in_the_background_and_close_sends_the_rest(link: SuperLink) -> None:
    run_id = _running_run(link)
    with channel(link.addresses["serverappio"]) as chan:
        grid = ServerAppIoGrid(chan, run_id=run_id, token=TOKEN)
        for rnd in range(1, 21):
            grid.report(RunEvent(kind="round-started", server_round=rnd, num_rounds=20))
        grid.close()  # waits for the reports not sent yet
    stored = json.loads(link.state.get_run(run_id).history_json)
    assert stored == grid.history.to_dict()


def test_a_push_checks_its_nodes_against_the_list_just_fetched(
    link: SuperLink, grid: ServerAppIoGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    call = grid._call

    def counting(method: str, request: object, **kwargs: object) -> object:
        calls.append(method)
        return call(method, request, **kwargs)

    monkeypatch.setattr(grid, "_call", counting)
    node = FakeNode(link.addresses["fleet"]).serve()
    try:
        nodes = grid.get_node_ids()
        assert nodes == [node.node_id]
        (reply,) = grid.send_and_receive(_train(nodes, 4), timeout=20)
        assert reply.has_content
        assert calls.count("GetNodes") == 1  # the push trusted the list fetched just before
        # a destination not in that list: the push asks again (and refuses it)
        with pytest.raises(ValueError, match="not part of this run"):
            grid.push_messages(_train([4242], 4))
        assert calls.count("GetNodes") == 2
        # a list older than _NODES_FRESH_S: asked again too
        monkeypatch.setattr("glade.superlink.grid._NODES_FRESH_S", 0.0)
        grid.push_messages(_train(nodes, 4))
        assert calls.count("GetNodes") == 3
    finally:
        node.close()
