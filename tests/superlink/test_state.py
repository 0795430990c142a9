"""The State contract, run against every implementation (SQLite file and ``:memory:``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from glade.superlink.sqlite_state import SqliteState
from glade.superlink.state import RunInfo, RunStatus, State, StoredMessage, SubStatus


@pytest.fixture(params=["file", "memory"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[State]:
    path = tmp_path / "db" / "state.db" if request.param == "file" else ":memory:"
    db = SqliteState(path)
    yield db
    db.close()


def _run(**changes: object) -> RunInfo:
    fields: dict[str, object] = {
        "run_id": 0,
        "status": RunStatus.PENDING,
        "bundle_id": "b" * 64,
        "server_app": "app.server:app",
        "client_app": "app.client:app",
        "app_name": "demo",
        "run_config": {"lr": 0.1, "rounds": 3, "flag": True, "name": "x"},
        "created_at": 100.0,
    }
    fields.update(changes)
    return RunInfo(**fields)  # type: ignore[arg-type]


def _msg(
    mid: str,
    *,
    run_id: int,
    dst: int,
    reply_to: str = "",
    ttl: float = 60.0,
    created_at: float = 1000.0,
    objects: tuple[tuple[str, int], ...] = (),
) -> StoredMessage:
    return StoredMessage(
        message_id=mid,
        run_id=run_id,
        src_node_id=0 if not reply_to else dst,
        dst_node_id=dst if not reply_to else 0,
        reply_to=reply_to,
        created_at=created_at,
        ttl=ttl,
        payload=mid.encode(),
        objects=objects,
    )


def test_nodes_register_rejoin_touch_offline_remove(state: State) -> None:
    a = state.register_node(name="a", node_config={"partition-id": 0}, now=10.0)
    b = state.register_node(name="b", node_config={}, now=10.0)
    assert a != b and a > 0 and b > 0
    assert state.get_node(a) is not None and state.get_node(a).node_config == {"partition-id": 0}
    # rejoin keeps the id and updates the config
    assert state.register_node(name="a2", node_config={"x": 1}, now=11.0, node_id=a) == a
    assert state.get_node(a).name == "a2"  # type: ignore[union-attr]
    # a previous id the state never saw (e.g. after a restart with :memory:) is honoured
    assert state.register_node(name="c", node_config={}, now=11.0, node_id=12345) == 12345
    assert state.touch_node(b, now=20.0)
    assert not state.touch_node(999, now=20.0)
    assert sorted(state.mark_offline(last_seen_before=15.0)) == sorted([a, 12345])
    assert state.mark_offline(last_seen_before=15.0) == []  # already offline
    assert not state.get_node(a).online  # type: ignore[union-attr]
    state.touch_node(a, now=30.0)
    assert state.get_node(a).online  # type: ignore[union-attr]
    assert state.remove_node(b) and not state.remove_node(b)
    assert {n.node_id for n in state.list_nodes()} == {a, 12345}


def test_run_lifecycle_with_timestamps_and_terminal_finish(state: State) -> None:
    first = state.create_run(_run())
    second = state.create_run(_run(app_name="other"))
    assert second > first
    run = state.get_run(first)
    assert run is not None and run.status == RunStatus.PENDING
    assert run.run_config == {"lr": 0.1, "rounds": 3, "flag": True, "name": "x"}
    assert state.transition_run(first, RunStatus.STARTING, now=101.0)
    assert state.transition_run(first, RunStatus.RUNNING, now=102.0)
    assert state.get_run(first).started_at == 102.0  # type: ignore[union-attr]
    assert state.transition_run(
        first, RunStatus.FINISHED, now=105.0, sub_status=SubStatus.FAILED, reason="why"
    )
    done = state.get_run(first)
    assert done is not None and done.finished and done.sub_status == "failed"
    assert done.reason == "why" and done.finished_at == 105.0
    # finished is terminal
    assert not state.transition_run(first, RunStatus.RUNNING, now=106.0)
    assert not state.transition_run(999, RunStatus.RUNNING, now=106.0)
    assert [r.run_id for r in state.list_runs(status=RunStatus.PENDING)] == [second]
    assert [r.run_id for r in state.list_runs()] == [first, second]
    with pytest.raises(ValueError, match="unknown run status"):
        state.transition_run(second, "flying", now=1.0)
    state.set_run_token(second, "hash")
    assert state.get_run_token(second) == "hash" and state.get_run_token(first) == ""
    state.set_history(second, '{"metrics": {}}')
    assert state.get_run(second).history_json == '{"metrics": {}}'  # type: ignore[union-attr]


def test_logs_append_and_read_by_byte_offset(state: State) -> None:
    run = state.create_run(_run())
    assert state.log_size(run) == 0
    assert state.read_log(run) == ("", 0)
    assert state.append_log(run, "héllo\n") == 7
    assert state.append_log(run, "world\n") == 13
    assert state.read_log(run) == ("héllo\nworld\n", 13)
    assert state.read_log(run, offset=7) == ("world\n", 13)
    assert state.read_log(run, offset=9) == ("rld\n", 13)
    text, end = state.read_log(run, offset=0, limit=8)  # whole pieces, at least one
    assert (text, end) == ("héllo\n", 7)
    assert state.read_log(run, offset=13) == ("", 13)
    assert state.log_size(run) == 13


def test_leases_redelivery_and_reply_deduplication(state: State) -> None:
    run = state.create_run(_run())
    state.add_instructions([_msg("m1", run_id=run, dst=5), _msg("m2", run_id=run, dst=6)])
    with pytest.raises(ValueError):
        state.add_instructions([_msg("m3", run_id=run, dst=5), _msg("m1", run_id=run, dst=5)])
    assert state.get_instructions(["m3"]) == []  # all or none
    # runs that are not running get nothing; a lease hides a message until it expires
    assert state.lease_instructions(5, now=1000.0, lease_s=10, limit=10) == []
    state.transition_run(run, RunStatus.RUNNING, now=1.0)
    leased = state.lease_instructions(5, now=1000.0, lease_s=10, limit=10)
    assert [m.message_id for m in leased] == ["m1"] and leased[0].payload == b"m1"
    assert state.lease_instructions(5, now=1005.0, lease_s=10, limit=10) == []
    again = state.lease_instructions(5, now=1011.0, lease_s=10, limit=10)
    assert [m.message_id for m in again] == ["m1"]
    assert state.release_leases(5) == 1
    assert len(state.lease_instructions(5, now=1012.0, lease_s=10, limit=10)) == 1
    # the first reply wins; a repeated reply id counts as stored; others are dropped
    r1 = _msg("r1", run_id=run, dst=5, reply_to="m1")
    r2 = _msg("r2", run_id=run, dst=5, reply_to="m1")
    assert state.add_replies([r1], now=1013.0) == ["r1"]
    assert state.add_replies([r1, r2], now=1014.0) == ["r1"]
    with pytest.raises(LookupError):
        state.add_replies([_msg("r9", run_id=run, dst=5, reply_to="nope")], now=1014.0)
    # a replied instruction is not offered again
    assert state.lease_instructions(5, now=2000.0, lease_s=10, limit=10) == []
    taken = state.take_replies(run, ["m1", "m2"], now=1015.0)
    assert [m.message_id for m in taken] == ["r1"]
    assert state.take_replies(run, ["m1"], now=1016.0) == []  # taken once


def test_expiry_unreplied_prune_and_references(state: State) -> None:
    run = state.create_run(_run(bundle_id="c" * 64, status=RunStatus.RUNNING))
    obj = ("a" * 64, 40)
    state.add_instructions(
        [
            _msg("m1", run_id=run, dst=5, ttl=10.0, objects=(obj,)),
            _msg("m2", run_id=run, dst=6, ttl=100.0),
        ]
    )
    assert [m.message_id for m in state.unreplied_instructions(expired_at=1010.0)] == ["m1"]
    assert [m.message_id for m in state.unreplied_instructions(node_id=6)] == ["m2"]
    # expired messages are not leased
    assert state.lease_instructions(5, now=1011.0, lease_s=1, limit=5) == []
    assert state.referenced_objects() == {"a" * 64, "c" * 64}
    state.add_replies([_msg("r1", run_id=run, dst=5, reply_to="m1")], now=1011.0)
    assert state.prune_messages(taken_before=2000.0) == 0  # not taken yet
    state.take_replies(run, ["m1"], now=1012.0)
    assert state.prune_messages(taken_before=1012.0) == 0
    assert state.prune_messages(taken_before=1013.0, run_id=run + 1) == 0
    assert state.prune_messages(taken_before=1013.0, run_id=run) == 1
    assert state.get_instructions(["m1", "m2"])[0].message_id == "m2"
    assert state.referenced_objects() == {"c" * 64}
    state.transition_run(run, RunStatus.FINISHED, now=1.0, sub_status="completed")
    assert state.delete_run_messages(run) == 1
    assert state.referenced_objects() == set()


def test_file_database_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SqliteState(path)
    run = first.create_run(_run())
    first.append_log(run, "kept\n")
    first.close()
    second = SqliteState(path)
    assert second.get_run(run) is not None
    assert second.read_log(run) == ("kept\n", 5)
    assert second.create_run(_run()) == run + 1
    second.close()
