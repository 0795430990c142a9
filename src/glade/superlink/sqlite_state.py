"""`SqliteState`: the SuperLink's State in SQLite (a WAL file, or ``:memory:``)."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from glade.errors import ConfigError
from glade.superlink.sqlite_access import SqliteAccessTables
from glade.superlink.sqlite_schema import (
    MSG_COLUMNS,
    RUN_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    batches,
    message_of,
    message_row,
    node_of,
    run_of,
)
from glade.superlink.state import NodeInfo, RunInfo, RunStatus, StoredMessage

__all__ = ["SqliteState"]

_MAX_ID = (1 << 63) - 1
_AUTOCHECKPOINT_PAGES = 10_000
"""WAL pages after which a commit checkpoints by itself (SQLite's default: 1000). The
SuperLink checkpoints every housekeeping tick instead (:meth:`SqliteState.checkpoint`), so
requests do not wait for a checkpoint's fsync; this only bounds the log without one."""


class SqliteState(SqliteAccessTables):
    """:class:`~glade.superlink.state.State` in SQLite; thread-safe (one connection, a lock).

    ``path`` is a file (created with its folder; WAL journal) or ``":memory:"``.
    Durability is WAL with ``synchronous=NORMAL``: a commit survives a crash of the
    process; a power loss may take back the commits since the last checkpoint (at most
    about one housekeeping tick when the SuperLink calls :meth:`checkpoint`).
    """

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._setup()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the SuperLink database {self._path}: {exc}") from None
        self._lock = threading.RLock()
        self._rng = random.SystemRandom()
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_db: sqlite3.Connection | None = None

    def _setup(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than {SCHEMA_VERSION} (a newer Glade wrote it)"
            )
        # Every migration so far only adds tables: the CREATE ... IF NOT EXISTS below is it.
        if self._path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file, on a connection of its own and
        without blocking writers (PASSIVE): requests never wait for its fsync."""
        if self._path == ":memory:":
            return
        with self._checkpoint_lock:
            if self._checkpoint_db is None:
                self._checkpoint_db = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
            self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        with self._checkpoint_lock:
            if self._checkpoint_db is not None:
                self._checkpoint_db.close()
                self._checkpoint_db = None
        with self._lock:
            self._db.close()

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- nodes ---------------------------------------------------------------------------
    def register_node(
        self, *, name: str, node_config: Mapping[str, Any], now: float, node_id: int = 0
    ) -> int:
        config = json.dumps(dict(node_config))
        with self._tx() as db:
            if node_id and db.execute("SELECT 1 FROM nodes WHERE node_id=?", (node_id,)).fetchone():
                db.execute(
                    "UPDATE nodes SET name=?, node_config=?, online=1, last_seen_at=? "
                    "WHERE node_id=?",
                    (name, config, now, node_id),
                )
                return node_id
            while (
                not node_id
                or db.execute("SELECT 1 FROM nodes WHERE node_id=?", (node_id,)).fetchone()
            ):
                node_id = self._rng.randint(1, _MAX_ID)
            db.execute(
                "INSERT INTO nodes VALUES (?, ?, ?, 1, ?, ?)", (node_id, name, config, now, now)
            )
            return node_id

    def get_node(self, node_id: int) -> NodeInfo | None:
        rows = self._all("SELECT * FROM nodes WHERE node_id=?", (node_id,))
        return node_of(rows[0]) if rows else None

    def list_nodes(self) -> list[NodeInfo]:
        return [node_of(r) for r in self._all("SELECT * FROM nodes ORDER BY registered_at")]

    def touch_node(self, node_id: int, *, now: float) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE nodes SET online=1, last_seen_at=MAX(last_seen_at, ?) WHERE node_id=?",
                (now, node_id),
            )
            return cur.rowcount > 0

    def remove_node(self, node_id: int) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM nodes WHERE node_id=?", (node_id,)).rowcount > 0

    def mark_offline(self, *, last_seen_before: float) -> list[int]:
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT node_id FROM nodes WHERE online=1 AND last_seen_at<?",
                    (last_seen_before,),
                )
            ]
            db.executemany("UPDATE nodes SET online=0 WHERE node_id=?", [(i,) for i in ids])
            return ids

    # -- runs ----------------------------------------------------------------------------
    def create_run(self, run: RunInfo) -> int:
        values = (
            run.status,
            run.sub_status,
            run.reason,
            run.app_publisher,
            run.app_name,
            run.app_version,
            run.bundle_id,
            run.server_app,
            run.client_app,
            json.dumps(dict(run.run_config)),
            json.dumps(dict(run.federation_options)),
            run.created_at,
            run.started_at,
            run.finished_at,
            run.owner,
            run.history_json,
        )
        with self._tx() as db:
            cur = db.execute(
                f"INSERT INTO runs ({RUN_COLUMNS.partition(', ')[2]}) "
                f"VALUES ({', '.join('?' * len(values))})",
                values,
            )
            return int(cur.lastrowid or 0)

    def get_run(self, run_id: int) -> RunInfo | None:
        rows = self._all(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id=?", (run_id,))
        return run_of(rows[0]) if rows else None

    def list_runs(self, *, status: str | None = None) -> list[RunInfo]:
        if status is None:
            rows = self._all(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY run_id")
        else:
            rows = self._all(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE status=? ORDER BY run_id", (status,)
            )
        return [run_of(r) for r in rows]

    def transition_run(
        self, run_id: int, status: str, *, now: float, sub_status: str = "", reason: str = ""
    ) -> bool:
        if status not in RunStatus.ALL:
            raise ValueError(f"unknown run status {status!r}")
        stamps = {RunStatus.RUNNING: ", started_at=?", RunStatus.FINISHED: ", finished_at=?"}
        stamp = stamps.get(status, "")
        args: list[Any] = [status, sub_status, reason]
        if stamp:
            args.append(now)
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE runs SET status=?, sub_status=?, reason=?{stamp} "
                "WHERE run_id=? AND status!=?",
                (*args, run_id, RunStatus.FINISHED),
            )
            return cur.rowcount > 0

    def set_run_token(self, run_id: int, token_hash: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET token_hash=? WHERE run_id=?", (token_hash, run_id))

    def get_run_token(self, run_id: int) -> str:
        rows = self._all("SELECT token_hash FROM runs WHERE run_id=?", (run_id,))
        return str(rows[0][0]) if rows else ""

    def set_history(self, run_id: int, history_json: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET history_json=? WHERE run_id=?", (history_json, run_id))

    # -- logs ----------------------------------------------------------------------------
    def append_log(self, run_id: int, text: str) -> int:
        data = text.encode("utf-8", errors="replace")
        with self._tx() as db:
            size = self._log_size(db, run_id)
            if data:
                db.execute("INSERT INTO logs VALUES (?, ?, ?)", (run_id, size, data))
            return size + len(data)

    def read_log(self, run_id: int, *, offset: int = 0, limit: int = 1 << 20) -> tuple[str, int]:
        rows = self._all(
            "SELECT start, data FROM logs WHERE run_id=? AND start + length(data) > ? "
            "ORDER BY start",
            (run_id, offset),
        )
        pieces: list[bytes] = []
        end = offset
        for start, data in rows:
            piece = bytes(data)[max(0, offset - start) :]
            if pieces and end - offset + len(piece) > limit:
                break
            pieces.append(piece)
            end += len(piece)
        return b"".join(pieces).decode("utf-8", errors="replace"), end

    def log_size(self, run_id: int) -> int:
        with self._lock:
            return self._log_size(self._db, run_id)

    @staticmethod
    def _log_size(db: sqlite3.Connection, run_id: int) -> int:
        row = db.execute(
            "SELECT start + length(data) FROM logs WHERE run_id=? ORDER BY start DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        return int(row[0]) if row else 0

    # -- messages ------------------------------------------------------------------------
    def add_instructions(
        self, messages: Sequence[StoredMessage], *, leased_until: Mapping[str, float] | None = None
    ) -> None:
        leases = leased_until or {}
        rows = [
            (*message_row(m), leases.get(m.message_id, 0.0), int(m.message_id in leases))
            for m in messages
        ]
        try:
            with self._tx() as db:
                db.executemany(
                    f"INSERT INTO messages ({MSG_COLUMNS}, leased_until, deliveries) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"a message id is already taken: {exc}") from None

    def lease_instructions(
        self, node_id: int, *, now: float, lease_s: float, limit: int
    ) -> list[StoredMessage]:
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {MSG_COLUMNS} FROM messages WHERE dst=? AND reply_to='' AND replied=0 "
                "AND leased_until<=? AND created_at+ttl>? "
                "AND run_id IN (SELECT run_id FROM runs WHERE status=?) "
                "ORDER BY created_at LIMIT ?",
                (node_id, now, now, RunStatus.RUNNING, limit),
            ).fetchall()
            db.executemany(
                "UPDATE messages SET leased_until=?, deliveries=deliveries+1 WHERE message_id=?",
                [(now + lease_s, r[0]) for r in rows],
            )
        return [message_of(r) for r in rows]

    def release_leases(self, node_id: int, message_ids: Sequence[str] | None = None) -> int:
        sql = (
            "UPDATE messages SET leased_until=0 WHERE dst=? AND reply_to='' AND replied=0 "
            "AND leased_until>0"
        )
        with self._tx() as db:
            if message_ids is None:
                return db.execute(sql, (node_id,)).rowcount
            released = 0
            for batch in batches(message_ids):
                marks = ", ".join("?" * len(batch))
                cur = db.execute(f"{sql} AND message_id IN ({marks})", (node_id, *batch))
                released += cur.rowcount
            return released

    def add_replies(self, replies: Sequence[StoredMessage], *, now: float) -> list[str]:
        stored: list[str] = []
        with self._tx() as db:
            for reply in replies:
                row = db.execute(
                    "SELECT replied FROM messages WHERE message_id=? AND reply_to=''",
                    (reply.reply_to,),
                ).fetchone()
                if row is None:
                    raise LookupError(f"reply {reply.message_id}: no instruction {reply.reply_to}")
                again = db.execute(
                    "SELECT 1 FROM messages WHERE message_id=?", (reply.message_id,)
                ).fetchone()
                if again:
                    stored.append(reply.message_id)
                elif not row[0]:
                    db.execute(
                        f"INSERT INTO messages ({MSG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        message_row(reply),
                    )
                    db.execute(
                        "UPDATE messages SET replied=1 WHERE message_id=?", (reply.reply_to,)
                    )
                    stored.append(reply.message_id)
        return stored

    def get_instructions(self, message_ids: Sequence[str]) -> list[StoredMessage]:
        rows = []
        for batch in batches(message_ids):
            rows += self._all(
                f"SELECT {MSG_COLUMNS} FROM messages WHERE reply_to='' AND message_id IN "
                f"({', '.join('?' * len(batch))})",
                batch,
            )
        return [message_of(r) for r in rows]

    def take_replies(
        self, run_id: int, instruction_ids: Sequence[str], *, now: float
    ) -> list[StoredMessage]:
        out: list[StoredMessage] = []
        with self._tx() as db:
            for batch in batches(instruction_ids):
                marks = ", ".join("?" * len(batch))
                rows = db.execute(
                    f"SELECT {MSG_COLUMNS} FROM messages WHERE run_id=? AND taken_at=0 "
                    f"AND reply_to IN ({marks})",
                    (run_id, *batch),
                ).fetchall()
                out += [message_of(r) for r in rows]
            db.executemany(
                "UPDATE messages SET taken_at=? WHERE message_id=?",
                [(now, m.message_id) for m in out],
            )
        return out

    def unreplied_instructions(
        self, *, node_id: int | None = None, expired_at: float | None = None
    ) -> list[StoredMessage]:
        sql = f"SELECT {MSG_COLUMNS} FROM messages WHERE reply_to='' AND replied=0"
        args: list[Any] = []
        if node_id is not None:
            sql += " AND dst=?"
            args.append(node_id)
        if expired_at is not None:
            sql += " AND created_at+ttl<=?"
            args.append(expired_at)
        return [message_of(r) for r in self._all(sql, args)]

    def prune_messages(self, *, taken_before: float, run_id: int | None = None) -> int:
        sql = "SELECT reply_to FROM messages WHERE reply_to!='' AND taken_at>0 AND taken_at<?"
        args: list[Any] = [taken_before]
        if run_id is not None:
            sql += " AND run_id=?"
            args.append(run_id)
        with self._tx() as db:
            ids = [r[0] for r in db.execute(sql, args)]
            for batch in batches(ids):
                marks = ", ".join("?" * len(batch))
                db.execute(
                    f"DELETE FROM messages WHERE message_id IN ({marks}) OR reply_to IN ({marks})",
                    (*batch, *batch),
                )
            return len(ids)

    def delete_run_messages(self, run_id: int) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM messages WHERE run_id=?", (run_id,)).rowcount

    def referenced_objects(self) -> set[str]:
        refs: set[str] = set()
        for (objects,) in self._all("SELECT objects FROM messages WHERE objects != '[]'"):
            refs.update(oid for oid, _ in json.loads(objects))
        rows = self._all("SELECT bundle_id FROM runs WHERE status!=?", (RunStatus.FINISHED,))
        refs.update(r[0] for r in rows)
        return refs
