"""The State contract, run against every implementation (SQLite file and ``:memory:``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from glade.errors import ConfigError, InvalidStateError, NotFoundError
from glade.superlink.sqlite_state import SqliteState
from glade.superlink.state import (
    AuditEntry,
    NodeKey,
    Role,
    RunInfo,
    RunStatus,
    State,
    StoredMessage,
    SubStatus,
    TokenInfo,
    UserInfo,
)


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


def test_users_roles_api_keys_and_the_last_admin(state: State) -> None:
    state.add_user(UserInfo(name="root", role=Role.ADMIN, password_hash="h1", created_at=1.0))
    state.add_user(UserInfo(name="ana", role=Role.USER, api_key_hash="k" * 64, created_at=2.0))
    with pytest.raises(InvalidStateError, match="exists already"):
        state.add_user(UserInfo(name="ana", role=Role.ADMIN))
    assert [u.name for u in state.list_users()] == ["ana", "root"]
    assert state.get_user("root") == UserInfo(
        name="root", role=Role.ADMIN, password_hash="h1", created_at=1.0
    )
    assert state.get_user("nobody") is None
    assert state.find_user_by_api_key("k" * 64).name == "ana"  # type: ignore[union-attr]
    assert state.find_user_by_api_key("") is None
    # the last admin can be neither demoted nor removed ...
    with pytest.raises(InvalidStateError, match="last admin"):
        state.update_user("root", role=Role.USER)
    with pytest.raises(InvalidStateError, match="last admin"):
        state.remove_user("root")
    # ... until there is another
    promoted = state.update_user("ana", role=Role.ADMIN, password_hash="h2")
    assert promoted is not None and promoted.role == Role.ADMIN and promoted.password_hash == "h2"
    assert promoted.api_key_hash == "k" * 64  # untouched
    assert state.update_user("nobody", role=Role.USER) is None
    state.add_token(TokenInfo(token_hash="t1", user="root", created_at=5.0, expires_at=9.0))
    removed = state.remove_user("root")
    assert removed is not None and removed.name == "root"
    assert state.get_token("t1") is None  # a removed user's tokens go with it
    assert state.remove_user("root") is None
    with pytest.raises(ValueError, match="role"):
        state.update_user("ana", role="owner")


def test_tokens_expire_and_are_removed(state: State) -> None:
    state.add_user(UserInfo(name="ana", role=Role.USER))
    with pytest.raises(NotFoundError):
        state.add_token(TokenInfo(token_hash="x", user="bob", created_at=0.0, expires_at=1.0))
    state.add_token(TokenInfo(token_hash="a", user="ana", created_at=0.0, expires_at=10.0))
    state.add_token(TokenInfo(token_hash="b", user="ana", created_at=0.0, expires_at=20.0))
    assert state.get_token("a") == TokenInfo(
        token_hash="a", user="ana", created_at=0.0, expires_at=10.0
    )
    assert state.prune_tokens(expired_at=15.0) == 1
    assert state.get_token("a") is None and state.get_token("b") is not None
    assert state.remove_token("b") and not state.remove_token("b")
    state.add_user(UserInfo(name="bob", role=Role.USER))
    for token, user in (("c", "ana"), ("d", "ana"), ("e", "ana"), ("f", "bob")):
        state.add_token(TokenInfo(token_hash=token, user=user, created_at=0.0, expires_at=99.0))
    assert state.remove_user_tokens("ana", keep="d") == 2
    assert [state.get_token(t) is not None for t in "cdef"] == [False, True, False, True]


def test_node_keys_allow_list_names_and_binding(state: State) -> None:
    one, two = bytes(range(32)), bytes(range(1, 33))
    state.add_node_key(NodeKey(public_key=one, name="hospital-a", added_at=1.0, added_by="root"))
    state.add_node_key(NodeKey(public_key=two, name="hospital-b", added_at=2.0))
    with pytest.raises(InvalidStateError, match="name"):
        state.add_node_key(NodeKey(public_key=bytes(32), name="hospital-a", added_at=3.0))
    with pytest.raises(InvalidStateError, match="public key"):
        state.add_node_key(NodeKey(public_key=one, name="other", added_at=3.0))
    assert [k.name for k in state.list_node_keys()] == ["hospital-a", "hospital-b"]
    assert state.get_node_key(one) == NodeKey(
        public_key=one, name="hospital-a", added_at=1.0, added_by="root"
    )
    assert state.get_node_key(bytes(32)) is None
    state.bind_node_key(two, 77)
    assert state.get_node_key(two).node_id == 77  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        state.bind_node_key(bytes(32), 1)
    removed = state.remove_node_key("hospital-b")
    assert removed is not None and removed.node_id == 77 and removed.public_key == two
    assert state.remove_node_key("hospital-b") is None
    assert state.get_node_key(two) is None
    # a removed name and key can be added again
    state.add_node_key(NodeKey(public_key=two, name="hospital-b", added_at=4.0))


def test_audit_appends_in_order_and_lists_the_newest(state: State) -> None:
    ids = [
        state.append_audit(AuditEntry(entry_id=999, time=float(i), actor="root", action=f"a{i}"))
        for i in range(5)
    ]
    assert ids == sorted(ids) and len(set(ids)) == 5
    entries = state.list_audit()
    assert [e.action for e in entries] == ["a0", "a1", "a2", "a3", "a4"]
    assert entries[0] == AuditEntry(entry_id=ids[0], time=0.0, actor="root", action="a0")
    assert [e.action for e in state.list_audit(limit=2)] == ["a3", "a4"]
    assert [e.action for e in state.list_audit(after_id=ids[2])] == ["a3", "a4"]
    assert state.list_audit(limit=0) == []


def test_schema_1_database_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = SqliteState(path)
    run = first.create_run(_run())
    first.close()
    # turn it into a version-1 database (the tables version 2 added did not exist)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE users")
    db.execute("DROP TABLE tokens")
    db.execute("DROP TABLE node_keys")
    db.execute("DROP TABLE audit")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    migrated = SqliteState(path)
    assert migrated.schema_version() == 2
    assert migrated.get_run(run) is not None
    migrated.add_user(UserInfo(name="root", role=Role.ADMIN))
    migrated.append_audit(AuditEntry(time=1.0, actor="root", action="login"))
    migrated.close()
    again = SqliteState(path)
    assert again.get_user("root") is not None and len(again.list_audit()) == 1
    again.close()


def test_database_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(ConfigError, match="newer"):
        SqliteState(path)


def test_users_keys_and_audit_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SqliteState(path)
    first.add_user(UserInfo(name="root", role=Role.ADMIN, password_hash="h"))
    first.add_node_key(NodeKey(public_key=bytes(32), name="n", added_at=1.0))
    first.append_audit(AuditEntry(time=1.0, actor="root", action="user.add", target="root"))
    first.close()
    second = SqliteState(path)
    assert second.get_user("root") == UserInfo(name="root", role=Role.ADMIN, password_hash="h")
    assert [k.name for k in second.list_node_keys()] == ["n"]
    assert [e.action for e in second.list_audit()] == ["user.add"]
    second.close()


def test_instructions_stored_leased_and_leases_released_one_by_one(state: State) -> None:
    run = state.create_run(_run(status=RunStatus.RUNNING))
    state.add_instructions(
        [_msg("m1", run_id=run, dst=5), _msg("m2", run_id=run, dst=5)],
        leased_until={"m1": 1010.0},
    )

    def lease(now: float) -> list[str]:
        return [m.message_id for m in state.lease_instructions(5, now=now, lease_s=20, limit=9)]

    # m1 was handed out as it was stored: only m2 is offered until m1's lease ends
    assert lease(1001.0) == ["m2"]
    assert lease(1005.0) == []
    assert lease(1010.0) == ["m1"]
    # releasing some leases leaves the others
    assert state.release_leases(5, ["m2"]) == 1
    assert state.release_leases(5, ["m2", "nope"]) == 0  # not leased any more
    assert lease(1011.0) == ["m2"]
    assert state.release_leases(5) == 2


def test_checkpoint_moves_the_log_into_the_database_file_off_the_request_path(
    tmp_path: Path,
) -> None:
    db = SqliteState(tmp_path / "state.db")
    try:
        run = db.create_run(_run(status=RunStatus.RUNNING))
        db.add_instructions([_msg(f"m{i}", run_id=run, dst=5) for i in range(50)])
        # commits do not checkpoint by themselves until the log is large
        (pages,) = db._db.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert pages >= 10_000
        db.checkpoint()
        # the database file alone (no log beside it) now has the instructions
        alone = tmp_path / "copy.db"
        alone.write_bytes((tmp_path / "state.db").read_bytes())
        with sqlite3.connect(alone) as copy:
            (count,) = copy.execute("SELECT COUNT(*) FROM messages").fetchone()
        assert count == 50
    finally:
        db.close()
    memory = SqliteState(":memory:")
    memory.checkpoint()  # nothing to do, no error
    memory.close()
