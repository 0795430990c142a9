import time

import numpy as np
import pytest

from glade import ArrayRecord, ClientApp, Message, RecordDict, RunEvent, ServerApp
from glade.simulation import run_simulation
from glade.simulation.grid import SimulationGrid


class _SlowBackend:
    """Replies only for nodes in `answering`, after `delay` seconds, from another thread."""

    def __init__(self, answering, delay=0.05):
        self.answering, self.delay = set(answering), delay
        self.on_replies = None

    def start(self, *, client_app, nodes, run_id, run_config, on_replies):
        self.on_replies = on_replies

    def submit(self, messages):
        import threading

        def later():
            time.sleep(self.delay)
            self.on_replies(
                [
                    Message.reply(m, RecordDict())
                    for m in messages
                    if m.metadata.dst_node_id in self.answering
                ]
            )

        threading.Thread(target=later, daemon=True).start()

    def shutdown(self):
        pass


def _grid(backend, nodes=(1, 2, 3)):
    grid = SimulationGrid(run_id=7, node_ids=list(nodes), backend=backend)
    backend.start(client_app=None, nodes=[], run_id=7, run_config={}, on_replies=grid.deliver)
    return grid


def test_send_and_receive_waits_for_replies_from_another_thread():
    grid = _grid(_SlowBackend({1, 2, 3}))
    msgs = [Message(RecordDict(), dst_node_id=n) for n in (1, 2, 3)]
    replies = grid.send_and_receive(msgs, timeout=5)
    assert sorted(r.metadata.src_node_id for r in replies) == [1, 2, 3]
    assert all(r.metadata.run_id == 7 for r in replies)


def test_send_and_receive_returns_what_arrived_by_the_timeout():
    grid = _grid(_SlowBackend({1}))
    start = time.monotonic()
    replies = grid.send_and_receive(
        [Message(RecordDict(), dst_node_id=n) for n in (1, 2)], timeout=0.5
    )
    assert 0.4 < time.monotonic() - start < 3
    assert [r.metadata.src_node_id for r in replies] == [1]


def test_push_then_pull():
    grid = _grid(_SlowBackend({1, 2}, delay=0.0))
    ids = grid.push_messages([Message(RecordDict(), dst_node_id=n) for n in (1, 2)])
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        got += grid.pull_messages(ids, timeout=0.5)
    assert {r.metadata.reply_to_message_id for r in got} == set(ids)
    assert grid.pull_messages(ids) == []  # each reply is delivered once


def test_push_rejects_unknown_nodes_and_replies():
    grid = _grid(_SlowBackend({1}))
    with pytest.raises(ValueError, match="not part of this run"):
        grid.push_messages([Message(RecordDict(), dst_node_id=99)])
    reply = Message.reply(Message(RecordDict(), dst_node_id=1), RecordDict())
    with pytest.raises(ValueError, match="instructions, not replies"):
        grid.push_messages([reply])
    with pytest.raises(TypeError, match="Message objects"):
        grid.push_messages([RecordDict()])


def test_run_simulation_inline_end_to_end_and_events():
    client = ClientApp()

    @client.train()
    def train(msg, ctx):
        arrays = msg.content["arrays"]
        part = ctx.node_config["partition-id"]
        return RecordDict({"arrays": ArrayRecord([a.numpy() + part for a in arrays.values()])})

    server = ServerApp()

    @server.main()
    def main(grid, ctx):
        grid.report(
            RunEvent(kind="stage-finished", server_round=1, stage="train", metrics={"x": 1.0})
        )
        msgs = [
            Message(RecordDict({"arrays": ArrayRecord([np.zeros(2)])}), dst_node_id=n)
            for n in grid.get_node_ids()
        ]
        return sorted(
            float(r.content["arrays"]["0"].numpy()[0]) for r in grid.send_and_receive(msgs)
        )

    events = []
    result = run_simulation(
        server, client, num_supernodes=4, backend="inline", seed=3, on_event=events.append
    )
    assert result.status == "completed"
    assert result.return_value == [0.0, 1.0, 2.0, 3.0]
    assert result.history.metrics["train"][1] == {"x": 1.0}
    assert [e.kind for e in events] == ["stage-finished"]
    again = run_simulation(server, client, num_supernodes=4, backend="inline", seed=3)
    assert again.run_id == result.run_id and again.node_ids == result.node_ids


def test_run_simulation_reports_a_failing_server_app():
    server = ServerApp()

    @server.main()
    def main(grid, ctx):
        raise RuntimeError("strategy exploded")

    result = run_simulation(server, ClientApp(), num_supernodes=1, backend="inline")
    assert result.status == "failed"
    assert "strategy exploded" in result.reason
    assert result.to_dict()["status"] == "failed"


def test_server_app_without_main_fails_clearly():
    result = run_simulation(ServerApp(), ClientApp(), num_supernodes=1, backend="inline")
    assert result.status == "failed" and "@app.main()" in result.reason
