"""The Fleet API against a real SuperLink: validation, leases, de-duplication, offline nodes."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import numpy as np
import pytest
from glade_testing import wait_for
from sl_harness import FakeNode, echo_handler

from glade import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from glade.digest import content_id
from glade.message import ErrorCode
from glade.superlink import SuperLink
from glade.superlink.state import RunInfo, RunStatus
from glade.transport import iter_chunks
from glade.transport.codec import message_to_proto
from glade.transport.grpc_options import channel
from glade.transport.objects import send_objects
from glade.transport.v1 import fleet_pb2 as fpb
from glade.transport.v1 import fleet_pb2_grpc


def _running_run(link: SuperLink) -> int:
    """A run in the running state without a ServerApp process (the test plays the ServerApp)."""
    run_id = link.state.create_run(
        RunInfo(
            run_id=0, status=RunStatus.PENDING, bundle_id="0" * 64, server_app="", client_app=""
        )
    )
    link.state.transition_run(run_id, RunStatus.RUNNING, now=time.time())
    return run_id


def _instruct(
    link: SuperLink, run_id: int, node_id: int, *, ttl: float = 60.0, size: int = 4
) -> Message:
    msg = Message(
        RecordDict(
            {
                "arrays": ArrayRecord({"w": np.arange(size, dtype=np.float32)}),
                "config": ConfigRecord({"x": 1}),
            }
        ),
        dst_node_id=node_id,
        run_id=run_id,
        ttl=ttl,
    )
    proto, objects = message_to_proto(msg)
    for array in objects.values():
        link.store.put_bytes(array.memoryview())
    link.delivery.push_instructions(run_id, [proto])
    return msg


def _replies(link: SuperLink, run_id: int, ids: list[str], wait_s: float = 0.0) -> list:
    from glade.transport.v1 import message_pb2 as pb

    stored = link.delivery.pull_replies(run_id, ids, wait_s=wait_s)
    return [pb.Message.FromString(m.payload) for m in stored]


def test_register_heartbeat_and_unknown_nodes(link: SuperLink) -> None:
    with channel(link.addresses["fleet"]) as chan:
        stub = fleet_pb2_grpc.FleetStub(chan)
        request = fpb.RegisterRequest(name="n")
        request.node_config.entries.add(key="partition-id").value.sint64 = 3
        response = stub.Register(request)
        node_id = response.node_id
        assert response.heartbeat_interval_s == link.config.heartbeat_interval_s
        assert link.state.get_node(node_id).node_config == {"partition-id": 3}
        assert stub.Heartbeat(fpb.HeartbeatRequest(node_id=node_id)).known
        assert not stub.Heartbeat(fpb.HeartbeatRequest(node_id=424242)).known
        for call in (
            lambda: stub.PullMessages(fpb.PullMessagesRequest(node_id=424242)),
            lambda: stub.PushMessages(fpb.PushMessagesRequest(node_id=0)),
            lambda: stub.GetRun(fpb.GetRunRequest(node_id=(1 << 64) - 1, run_id=1)),
            lambda: stub.GetRun(fpb.GetRunRequest(node_id=node_id, run_id=999)),
        ):
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        # a malformed node config is refused and nothing is stored
        bad = fpb.RegisterRequest(name="bad")
        bad.node_config.entries.add(key="k")  # no value
        with pytest.raises(grpc.RpcError) as info:
            stub.Register(bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(link.state.list_nodes()) == 1
        stub.Unregister(fpb.UnregisterRequest(node_id=node_id))
        assert link.state.list_nodes() == []


def test_long_poll_wakes_at_once_and_replies_round_trip(link: SuperLink, nodes) -> None:
    run_id = _running_run(link)
    node = nodes()
    started = time.monotonic()
    assert node.pull(wait_s=0.2) == []
    assert time.monotonic() - started >= 0.19  # waited (no work)
    sent = _instruct(link, run_id, node.node_id)
    started = time.monotonic()
    got = node.pull(wait_s=10)
    assert time.monotonic() - started < 1.0
    assert len(got) == 1 and got[0].metadata.message_id == sent.metadata.message_id
    assert got[0].content["arrays"]["w"] == sent.content["arrays"]["w"]
    reply = echo_handler(got[0])
    assert node.push([reply]) == [reply.metadata.message_id]
    replies = _replies(link, run_id, [sent.metadata.message_id])
    assert [r.metadata.message_id for r in replies] == [reply.metadata.message_id]


def test_unreplied_messages_are_redelivered_after_the_lease(start_link) -> None:
    link = start_link(message_lease_s=0.5)
    run_id = _running_run(link)
    node = FakeNode(link.addresses["fleet"])
    try:
        sent = _instruct(link, run_id, node.node_id)
        assert len(node.pull(wait_s=1)) == 1
        assert node.pull(wait_s=0.2) == []  # leased
        again = node.pull(wait_s=3)  # the lease expires: offered again (at-least-once)
        assert [m.metadata.message_id for m in again] == [sent.metadata.message_id]
        # a node that registers again (it restarted) gets its leased work at once
        rejoined = FakeNode(link.addresses["fleet"], node_id=node.node_id)
        assert rejoined.node_id == node.node_id
        assert len(rejoined.pull(wait_s=0.1)) == 1
        rejoined.close()
    finally:
        node.close()


def test_a_cancelled_long_poll_stops_waiting_and_takes_nothing(link: SuperLink, nodes) -> None:
    run_id = _running_run(link)
    node = nodes()
    request = fpb.PullMessagesRequest(node_id=node.node_id, wait_s=20, max_messages=10)
    call = node.stub.PullMessages.future(request, timeout=30)
    assert wait_for(lambda: node.node_id in link.fleet.busy_nodes(), 5), "the poll never waited"
    call.cancel()  # the node went away (it stopped, or restarted)
    started = time.monotonic()
    assert wait_for(lambda: node.node_id not in link.fleet.busy_nodes(), 5)
    assert time.monotonic() - started < 1.0  # woken at once, not at the end of its wait
    sent = _instruct(link, run_id, node.node_id)
    (got,) = node.pull(wait_s=2)  # the next poll gets it: the dead one leased nothing
    assert got.metadata.message_id == sent.metadata.message_id


def test_a_pull_whose_caller_is_gone_leases_nothing(link: SuperLink, nodes) -> None:
    run_id = _running_run(link)
    node = nodes()
    sent = _instruct(link, run_id, node.node_id)
    gone = link.delivery.pull_instructions(node.node_id, wait_s=0, limit=10, active=lambda: False)
    assert gone == []
    (leased,) = link.delivery.pull_instructions(node.node_id, wait_s=0, limit=10)
    assert leased.message_id == sent.metadata.message_id


def test_replies_are_deduplicated_by_the_instruction_they_answer(link: SuperLink, nodes) -> None:
    run_id = _running_run(link)
    node = nodes()
    sent = _instruct(link, run_id, node.node_id)
    (msg,) = node.pull(wait_s=5)
    first, second = echo_handler(msg), echo_handler(msg)
    assert node.push([first]) == [first.metadata.message_id]
    assert node.push([first]) == [first.metadata.message_id]  # a retry counts as stored
    assert node.push([second]) == []  # a second answer is dropped
    replies = _replies(link, run_id, [sent.metadata.message_id])
    assert [r.metadata.message_id for r in replies] == [first.metadata.message_id]
    assert _replies(link, run_id, [sent.metadata.message_id]) == []


def _push_status(node: FakeNode, replies: list[Message]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        node.push(replies)
    return info.value.code()


def test_bad_replies_are_refused_and_change_nothing(link: SuperLink, nodes) -> None:
    run_id = _running_run(link)
    node, other = nodes(), nodes()
    sent = _instruct(link, run_id, node.node_id)
    (msg,) = node.pull(wait_s=5)
    good = echo_handler(msg)
    # answering someone else's instruction
    assert _push_status(other, [echo_handler(msg).with_metadata(src_node_id=other.node_id)]) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # answering an instruction that does not exist
    ghost = good.with_metadata(reply_to_message_id="f" * 32)
    assert _push_status(node, [ghost]) == grpc.StatusCode.NOT_FOUND
    # a batch with one bad reply stores none of it
    assert _push_status(node, [good, ghost]) == grpc.StatusCode.NOT_FOUND
    # arrays whose object was never uploaded
    fresh = Message.reply(msg, RecordDict({"arrays": ArrayRecord({"w": np.full(3, 7.0)})}))
    proto, _ = message_to_proto(fresh)
    request = fpb.PushMessagesRequest(node_id=node.node_id, messages=[proto])
    with pytest.raises(grpc.RpcError) as info:
        node.stub.PushMessages(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "missing" in info.value.details()
    # an inline object whose bytes do not match its id
    _, objects = message_to_proto(fresh)
    inline = send_objects(node.stub, objects, metadata=node.metadata)
    inline[0].data = b"\x00" * len(inline[0].data)
    request = fpb.PushMessagesRequest(node_id=node.node_id, messages=[proto], inline_objects=inline)
    with pytest.raises(grpc.RpcError) as info:
        node.stub.PushMessages(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # garbage bytes on the wire
    raw = node.channel.unary_unary("/glade.v1.Fleet/PushMessages")
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\x0a\xff\xff\xff\xff garbage")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # none of that stored anything; the good reply still goes through
    assert _replies(link, run_id, [sent.metadata.message_id]) == []
    assert node.push([good]) == [good.metadata.message_id]
    assert len(_replies(link, run_id, [sent.metadata.message_id])) == 1


def test_offline_nodes_get_error_replies_and_no_new_work(start_link) -> None:
    link = start_link(heartbeat_interval_s=0.2, node_offline_timeout_s=0.6)
    run_id = _running_run(link)
    alive = FakeNode(link.addresses["fleet"]).serve()
    silent = FakeNode(link.addresses["fleet"])
    try:
        sent = _instruct(link, run_id, silent.node_id)
        (got,) = silent.pull(wait_s=1)  # it took the work, then went quiet
        started = time.monotonic()
        replies = _replies(link, run_id, [sent.metadata.message_id], wait_s=5)
        assert time.monotonic() - started < 3
        assert len(replies) == 1 and replies[0].error.code == ErrorCode.NODE_UNAVAILABLE
        assert "heartbeat" in replies[0].error.reason
        assert not link.state.get_node(silent.node_id).online
        assert link.state.get_node(alive.node_id).online
        # new work for the offline node is answered with an error at once
        late = _instruct(link, run_id, silent.node_id)
        (error,) = _replies(link, run_id, [late.metadata.message_id])
        assert error.error.code == ErrorCode.NODE_UNAVAILABLE
        # its late reply is dropped (the instruction already has its answer)
        assert silent.push([echo_handler(got)]) == []
    finally:
        alive.close()
        silent.close()


def test_messages_past_their_ttl_get_timeout_errors(start_link) -> None:
    link = start_link(heartbeat_interval_s=0.2, node_offline_timeout_s=5)
    run_id = _running_run(link)
    node = FakeNode(link.addresses["fleet"])
    try:
        sent = _instruct(link, run_id, node.node_id, ttl=0.3)
        replies = _replies(link, run_id, [sent.metadata.message_id], wait_s=5)
        assert len(replies) == 1 and replies[0].error.code == ErrorCode.REPLY_TIMEOUT
        assert node.pull(wait_s=0.1) == []  # expired: not delivered any more
    finally:
        node.close()


def test_unregistered_node_pending_work_is_answered(link: SuperLink, nodes) -> None:
    run_id = _running_run(link)
    node = nodes()
    sent = _instruct(link, run_id, node.node_id)
    node.stub.Unregister(fpb.UnregisterRequest(node_id=node.node_id))
    (reply,) = _replies(link, run_id, [sent.metadata.message_id])
    assert reply.error.code == ErrorCode.NODE_UNAVAILABLE and "left" in reply.error.reason


def test_get_run_and_large_arrays_via_object_calls(link: SuperLink, nodes) -> None:
    run_id = _running_run(link)
    node: FakeNode = nodes()
    response = node.stub.GetRun(fpb.GetRunRequest(node_id=node.node_id, run_id=run_id))
    assert response.run.run_id == run_id and response.run.status == 3  # RUNNING
    sent = _instruct(link, run_id, node.node_id, size=100_000)  # 400 kB: not inline
    (got,) = node.pull(wait_s=5)
    assert got.content["arrays"]["w"] == sent.content["arrays"]["w"]
    reply = Message.reply(got, RecordDict({"metrics": MetricRecord({"value": 1.0})}))
    assert node.push([reply]) == [reply.metadata.message_id]


def test_many_nodes_each_get_their_own_work(
    link: SuperLink, nodes: Callable[..., FakeNode]
) -> None:
    run_id = _running_run(link)
    fleet = [nodes() for _ in range(5)]
    sent = {n.node_id: _instruct(link, run_id, n.node_id) for n in fleet}
    for node in fleet:
        (got,) = node.pull(wait_s=5)
        assert got.metadata.message_id == sent[node.node_id].metadata.message_id


def test_a_node_busy_with_a_long_upload_is_not_marked_offline(start_link) -> None:
    link = start_link(heartbeat_interval_s=0.2, node_offline_timeout_s=0.6)
    node = FakeNode(link.addresses["fleet"])  # never heartbeats
    try:
        data = np.random.default_rng(1).bytes(5000)
        object_id = content_id(data)

        def slow_chunks():
            for chunk in iter_chunks(data, chunk_size=1000):
                time.sleep(0.3)
                yield chunk

        response = node.stub.PushObject(slow_chunks(), metadata=node.metadata, timeout=10)
        assert response.object_id == object_id
        assert link.state.get_node(node.node_id).online  # 1.5 s without a heartbeat
        time.sleep(1.5)
        assert not link.state.get_node(node.node_id).online  # idle and silent: offline
    finally:
        node.close()


def test_long_polls_beyond_the_waiting_limit_answer_at_once(start_link) -> None:
    """Each waiting long-poll holds a server thread: past 3/4 of them a poll answers at once,
    so heartbeats and transfers always find a thread, and nothing is lost."""
    link = start_link(max_workers=4)  # 3 long-polls may wait
    run_id = _running_run(link)
    nodes = [FakeNode(link.addresses["fleet"]) for _ in range(4)]
    try:
        calls = []
        for node in nodes[:3]:
            request = fpb.PullMessagesRequest(node_id=node.node_id, wait_s=20, max_messages=10)
            calls.append(node.stub.PullMessages.future(request, timeout=30))
        assert wait_for(lambda: link.delivery.waiting_pulls == 3, 5)
        started = time.monotonic()
        assert nodes[3].pull(wait_s=20) == []  # no thread to wait in: empty, at once
        assert time.monotonic() - started < 2.0
        sent = _instruct(link, run_id, nodes[3].node_id)
        assert [m.metadata.message_id for m in nodes[3].pull(wait_s=20)] == [
            sent.metadata.message_id
        ]
        woken = _instruct(link, run_id, nodes[0].node_id)  # the waiting polls still deliver
        assert [m.metadata.message_id for m in calls[0].result(timeout=10).messages] == [
            woken.metadata.message_id
        ]
        for call in calls[1:]:
            call.cancel()
        assert wait_for(lambda: link.delivery.waiting_pulls == 0, 5)
    finally:
        for node in nodes:
            node.close()
