"""`SqliteAccessTables`: users, login tokens, SuperNode keys and the audit log in SQLite.

The part of :class:`~glade.superlink.sqlite_state.SqliteState` that holds who may do what
(the tables are created with the rest of its schema); it runs its statements through the
state's transaction helpers.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from glade.errors import InvalidStateError, NotFoundError
from glade.superlink.state import AuditEntry, NodeKey, Role, TokenInfo, UserInfo

__all__ = ["SqliteAccessTables"]


class SqliteAccessTables(ABC):
    """Users, tokens, node keys and audit entries (see the module docstring)."""

    @abstractmethod
    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (SqliteState's)."""

    @abstractmethod
    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """The rows of one query (SqliteState's)."""

    # -- users and login tokens -------------------------------------------------------------
    def add_user(self, user: UserInfo) -> None:
        try:
            with self._tx() as db:
                db.execute(
                    f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                    (
                        user.name,
                        user.role,
                        user.password_hash,
                        user.api_key_hash,
                        user.created_at,
                    ),
                )
        except sqlite3.IntegrityError:
            raise InvalidStateError(f"a user named {user.name!r} exists already") from None

    def get_user(self, name: str) -> UserInfo | None:
        rows = self._all(f"SELECT {_USER_COLUMNS} FROM users WHERE name=?", (name,))
        return _user(rows[0]) if rows else None

    def find_user_by_api_key(self, api_key_hash: str) -> UserInfo | None:
        if not api_key_hash:
            return None
        rows = self._all(f"SELECT {_USER_COLUMNS} FROM users WHERE api_key_hash=?", (api_key_hash,))
        return _user(rows[0]) if rows else None

    def list_users(self) -> list[UserInfo]:
        return [_user(r) for r in self._all(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name")]

    def update_user(
        self,
        name: str,
        *,
        role: str | None = None,
        password_hash: str | None = None,
        api_key_hash: str | None = None,
    ) -> UserInfo | None:
        if role is not None and role not in Role.ALL:
            raise ValueError(f"unknown role {role!r} (expected one of {Role.ALL})")
        changes = {"role": role, "password_hash": password_hash, "api_key_hash": api_key_hash}
        sets = {k: v for k, v in changes.items() if v is not None}
        with self._tx() as db:
            row = db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name=?", (name,)).fetchone()
            if row is None:
                return None
            if role is not None and role != Role.ADMIN:
                _keep_an_admin(db, name, "demote")
            if sets:
                db.execute(
                    f"UPDATE users SET {', '.join(f'{k}=?' for k in sets)} WHERE name=?",
                    (*sets.values(), name),
                )
            row = db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name=?", (name,)).fetchone()
            return _user(row)

    def remove_user(self, name: str) -> UserInfo | None:
        with self._tx() as db:
            row = db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name=?", (name,)).fetchone()
            if row is None:
                return None
            _keep_an_admin(db, name, "remove")
            db.execute("DELETE FROM users WHERE name=?", (name,))
            db.execute("DELETE FROM tokens WHERE user=?", (name,))
            return _user(row)

    def add_token(self, token: TokenInfo) -> None:
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM users WHERE name=?", (token.user,)).fetchone():
                raise NotFoundError(f"unknown user {token.user!r}")
            db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?)",
                (token.token_hash, token.user, token.created_at, token.expires_at),
            )

    def get_token(self, token_hash: str) -> TokenInfo | None:
        rows = self._all("SELECT * FROM tokens WHERE token_hash=?", (token_hash,))
        if not rows:
            return None
        token_hash, user, created_at, expires_at = rows[0]
        return TokenInfo(
            token_hash=token_hash, user=user, created_at=created_at, expires_at=expires_at
        )

    def remove_token(self, token_hash: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM tokens WHERE token_hash=?", (token_hash,)).rowcount > 0

    def remove_user_tokens(self, user: str, *, keep: str = "") -> int:
        with self._tx() as db:
            sql = "DELETE FROM tokens WHERE user=? AND token_hash<>?"
            return db.execute(sql, (user, keep)).rowcount

    def prune_tokens(self, *, expired_at: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM tokens WHERE expires_at<=?", (expired_at,)).rowcount

    # -- SuperNode keys ----------------------------------------------------------------------
    def add_node_key(self, key: NodeKey) -> None:
        with self._tx() as db:
            taken = db.execute(
                "SELECT name FROM node_keys WHERE name=? OR public_key=?",
                (key.name, bytes(key.public_key)),
            ).fetchone()
            if taken is not None:
                what = f"the name {key.name!r}" if taken[0] == key.name else "this public key"
                raise InvalidStateError(
                    f"{what} is on the node allow-list already (as {taken[0]!r}): remove it "
                    "first or pick another"
                )
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM node_keys").fetchone()[0]
            db.execute(
                "INSERT INTO node_keys VALUES (?, ?, ?, ?, ?, ?)",
                (bytes(key.public_key), key.name, key.added_at, key.added_by, key.node_id, seq),
            )

    def get_node_key(self, public_key: bytes) -> NodeKey | None:
        rows = self._all(
            f"SELECT {_KEY_COLUMNS} FROM node_keys WHERE public_key=?", (bytes(public_key),)
        )
        return _node_key(rows[0]) if rows else None

    def list_node_keys(self) -> list[NodeKey]:
        rows = self._all(f"SELECT {_KEY_COLUMNS} FROM node_keys ORDER BY seq")
        return [_node_key(r) for r in rows]

    def remove_node_key(self, name: str) -> NodeKey | None:
        with self._tx() as db:
            row = db.execute(
                f"SELECT {_KEY_COLUMNS} FROM node_keys WHERE name=?", (name,)
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM node_keys WHERE name=?", (name,))
            return _node_key(row)

    def bind_node_key(self, public_key: bytes, node_id: int) -> None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE node_keys SET node_id=? WHERE public_key=?", (node_id, bytes(public_key))
            )
            if cur.rowcount == 0:
                raise NotFoundError("this public key is not on the node allow-list")

    # -- audit log ---------------------------------------------------------------------------
    def append_audit(self, entry: AuditEntry) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO audit (time, actor, action, target, result, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (entry.time, entry.actor, entry.action, entry.target, entry.result, entry.detail),
            )
            return int(cur.lastrowid or 0)

    def list_audit(self, *, limit: int = 100, after_id: int = 0) -> list[AuditEntry]:
        rows = self._all(
            "SELECT * FROM audit WHERE entry_id>? ORDER BY entry_id DESC LIMIT ?",
            (after_id, max(0, limit)),
        )
        return [
            AuditEntry(
                entry_id=r[0],
                time=r[1],
                actor=r[2],
                action=r[3],
                target=r[4],
                result=r[5],
                detail=r[6],
            )
            for r in reversed(rows)
        ]


_USER_COLUMNS = "name, role, password_hash, api_key_hash, created_at"
_KEY_COLUMNS = "public_key, name, added_at, added_by, node_id"


def _keep_an_admin(db: sqlite3.Connection, name: str, verb: str) -> None:
    """Refuse to remove or demote ``name`` if it is the last admin."""
    others = db.execute(
        "SELECT COUNT(*) FROM users WHERE role=? AND name!=?", (Role.ADMIN, name)
    ).fetchone()[0]
    is_admin = db.execute(
        "SELECT 1 FROM users WHERE name=? AND role=?", (name, Role.ADMIN)
    ).fetchone()
    if is_admin and not others:
        raise InvalidStateError(
            f"cannot {verb} {name!r}: it is the last admin (make another user admin first)"
        )


def _user(row: Sequence[Any]) -> UserInfo:
    return UserInfo(
        name=row[0], role=row[1], password_hash=row[2], api_key_hash=row[3], created_at=row[4]
    )


def _node_key(row: Sequence[Any]) -> NodeKey:
    return NodeKey(
        public_key=bytes(row[0]), name=row[1], added_at=row[2], added_by=row[3], node_id=row[4]
    )
