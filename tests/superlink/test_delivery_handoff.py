"""Delivery hands a broadcast's instructions to the nodes' waiting pulls as it stores them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from glade import ArrayRecord, Message, RecordDict
from glade.superlink.delivery import Delivery
from glade.superlink.notify import Notifier
from glade.superlink.object_store import ObjectStore
from glade.superlink.sqlite_state import SqliteState
from glade.superlink.state import RunInfo, RunStatus, StoredMessage
from glade.transport.codec import message_to_proto
from glade.transport.objects import split_inline


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.state = SqliteState(tmp_path / "state.db")
        self.delivery = Delivery(
            self.state, ObjectStore(tmp_path / "objects"), Notifier(), lease_s=60
        )
        now = time.time()
        self.nodes = [
            self.state.register_node(name=f"n{i}", node_config={}, now=now) for i in range(3)
        ]
        self.run_id = self.state.create_run(
            RunInfo(
                run_id=0, status=RunStatus.PENDING, bundle_id="b", server_app="s", client_app="c"
            )
        )
        self.state.transition_run(self.run_id, RunStatus.RUNNING, now=now)
        self.leases = 0
        lease = self.state.lease_instructions

        def counted(*args: object, **kwargs: object) -> list[StoredMessage]:
            self.leases += 1
            return lease(*args, **kwargs)  # type: ignore[arg-type]

        self.state.lease_instructions = counted  # type: ignore[method-assign]

    def push(self, nodes: list[int]) -> list[str]:
        protos, objects = [], {}
        content = RecordDict({"arrays": ArrayRecord({"w": np.ones(10, np.float32)})})
        for node in nodes:
            msg = Message(content, dst_node_id=node).with_metadata(run_id=self.run_id)
            proto, arrays = message_to_proto(msg)
            protos.append(proto)
            objects.update(arrays)
        inline, _ = split_inline(objects)
        return self.delivery.push_instructions(self.run_id, protos, inline)

    def pull_in_thread(
        self, node: int, *, limit: int = 10, active: Callable[[], bool] = lambda: True
    ) -> tuple[threading.Thread, list[list[StoredMessage]]]:
        out: list[list[StoredMessage]] = []
        thread = threading.Thread(
            target=lambda: out.append(
                self.delivery.pull_instructions(node, wait_s=10, limit=limit, active=active)
            )
        )
        before = self.delivery.waiting_pulls
        thread.start()
        deadline = time.monotonic() + 5
        while self.delivery.waiting_pulls == before and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.delivery.waiting_pulls == before + 1
        return thread, out


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_waiting_pulls_get_their_instructions_without_leasing_again(setup: Setup) -> None:
    pulls = [setup.pull_in_thread(node) for node in setup.nodes]
    leases_before = setup.leases
    ids = setup.push(setup.nodes)
    for (thread, out), node, message_id in zip(pulls, setup.nodes, ids, strict=True):
        thread.join(5)
        assert [[(m.message_id, m.dst_node_id) for m in got] for got in out] == [
            [(message_id, node)]
        ]
    assert setup.leases == leases_before  # handed over as stored: no lease query per pull
    for node in setup.nodes:  # leased to those pulls: not offered again
        assert setup.delivery.pull_instructions(node, wait_s=0, limit=10) == []
    assert setup.delivery.waiting_pulls == 0


def test_a_waiting_pull_takes_no_more_than_its_limit(setup: Setup) -> None:
    node = setup.nodes[0]
    thread, out = setup.pull_in_thread(node, limit=1)
    ids = setup.push([node, node])
    thread.join(5)
    assert [m.message_id for m in out[0]] == ids[:1]
    rest = setup.delivery.pull_instructions(node, wait_s=0, limit=10)
    assert [m.message_id for m in rest] == ids[1:]


def test_instructions_handed_to_a_pull_the_node_gave_up_are_offered_again(
    setup: Setup,
) -> None:
    node = setup.nodes[0]
    waiting = threading.Event()
    waiting.set()
    thread, out = setup.pull_in_thread(node, active=waiting.is_set)
    waiting.clear()  # the node cancelled its poll; the SuperLink has not noticed yet
    (message_id,) = setup.push([node])  # handed to that pull, which wakes up and gives it back
    thread.join(5)
    assert out == [[]]
    again = setup.delivery.pull_instructions(node, wait_s=0, limit=10)
    assert [m.message_id for m in again] == [message_id]
