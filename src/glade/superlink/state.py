"""The SuperLink's `State`: nodes, runs, messages, logs, accounts, node keys and the audit log.

`State` is the one seam between the SuperLink and its database. The SQLite implementation
(:class:`~glade.superlink.sqlite_state.SqliteState`, file or ``:memory:``) is the only one
today; the contract test in ``tests/superlink/test_state.py`` runs against every
implementation. Operations are atomic: a failed call leaves the state as it was.

Messages are stored as opaque protobuf bytes plus the routing columns the SuperLink
needs (the delivery rules live in :mod:`glade.superlink.delivery`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "AuditEntry",
    "NodeInfo",
    "NodeKey",
    "Role",
    "RunInfo",
    "RunStatus",
    "State",
    "StoredMessage",
    "SubStatus",
    "TokenInfo",
    "UserInfo",
]


class RunStatus:
    """A run's lifecycle: pending -> starting -> running -> finished."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    ALL = (PENDING, STARTING, RUNNING, FINISHED)


class SubStatus:
    """How a finished run ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    ALL = (COMPLETED, FAILED, STOPPED)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    """One run as stored: identity, app, config, lifecycle with timestamps, history."""

    run_id: int
    status: str
    bundle_id: str
    server_app: str
    client_app: str
    app_publisher: str = ""
    app_name: str = ""
    app_version: str = ""
    sub_status: str = ""
    reason: str = ""
    run_config: Mapping[str, Any] = field(default_factory=dict)
    federation_options: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    owner: str = ""
    history_json: str = ""

    @property
    def finished(self) -> bool:
        return self.status == RunStatus.FINISHED


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """One registered SuperNode."""

    node_id: int
    name: str = ""
    node_config: Mapping[str, Any] = field(default_factory=dict)
    online: bool = True
    registered_at: float = 0.0
    last_seen_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage:
    """A message as the SuperLink stores it: routing columns + the encoded protobuf.

    ``objects`` lists (object id, size) of the arrays the message refers to.
    """

    message_id: str
    run_id: int
    src_node_id: int
    dst_node_id: int
    reply_to: str
    created_at: float
    ttl: float
    payload: bytes
    objects: tuple[tuple[str, int], ...] = ()

    @property
    def is_reply(self) -> bool:
        return bool(self.reply_to)

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl


class Role:
    """A user's role: ``admin`` manages users and nodes and sees every run; ``user`` its own."""

    ADMIN = "admin"
    USER = "user"
    ALL = (ADMIN, USER)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInfo:
    """One user account; secrets are stored only as hashes.

    ``password_hash`` is an encoded scrypt hash (:func:`glade.superlink.accounts.hash_password`,
    empty: no password login), ``api_key_hash`` the SHA-256 hex of the user's API key (empty:
    none).
    """

    name: str
    role: str
    password_hash: str = ""
    api_key_hash: str = ""
    created_at: float = 0.0

    def __post_init__(self) -> None:
        if self.role not in Role.ALL:
            raise ValueError(f"unknown role {self.role!r} (expected one of {Role.ALL})")


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    """A login session: the SHA-256 hex of a bearer token, whose it is, until when."""

    token_hash: str
    user: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeKey:
    """A SuperNode public key on the allow-list."""

    public_key: bytes
    """32 raw Ed25519 bytes (:attr:`glade.keypairs.PublicKey.raw`)."""
    name: str
    added_at: float
    added_by: str = ""
    node_id: int = 0
    """Bound at the node's first Register; 0: the node never registered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One line of the audit log: who did what to what, when, with which result."""

    entry_id: int = 0
    """Assigned by the state (:meth:`State.append_audit`)."""
    time: float
    actor: str
    """A user name, ``node:<fingerprint>``, or ``anonymous`` (with the peer in ``detail``)."""
    action: str
    """``login``, ``logout``, ``run.start``, ``run.stop``, ``user.add``, ``node.add``, ..."""
    target: str = ""
    result: str = "ok"
    """``ok``, ``denied`` or ``failed``."""
    detail: str = ""


class State(Protocol):
    """Storage of the SuperLink (see the module docstring)."""

    # -- nodes ---------------------------------------------------------------------------
    def register_node(
        self, *, name: str, node_config: Mapping[str, Any], now: float, node_id: int = 0
    ) -> int:
        """Store a node (online) and return its id; ``node_id`` > 0 rejoins with that id."""
        ...

    def get_node(self, node_id: int) -> NodeInfo | None: ...

    def list_nodes(self) -> list[NodeInfo]: ...

    def touch_node(self, node_id: int, *, now: float) -> bool:
        """Record a sign of life (the node is online again); False if the node is unknown."""
        ...

    def remove_node(self, node_id: int) -> bool: ...

    def mark_offline(self, *, last_seen_before: float) -> list[int]:
        """Mark online nodes not seen since ``last_seen_before`` offline; returns their ids."""
        ...

    # -- runs ----------------------------------------------------------------------------
    def create_run(self, run: RunInfo) -> int:
        """Store a new run (its ``run_id`` is ignored) and return the id it got."""
        ...

    def get_run(self, run_id: int) -> RunInfo | None: ...

    def list_runs(self, *, status: str | None = None) -> list[RunInfo]:
        """All runs (or those with ``status``), oldest first."""
        ...

    def transition_run(
        self, run_id: int, status: str, *, now: float, sub_status: str = "", reason: str = ""
    ) -> bool:
        """Move a run forward in its lifecycle; False if it is unknown or already finished."""
        ...

    def set_run_token(self, run_id: int, token_hash: str) -> None: ...

    def get_run_token(self, run_id: int) -> str: ...

    def set_history(self, run_id: int, history_json: str) -> None: ...

    # -- logs ----------------------------------------------------------------------------
    def append_log(self, run_id: int, text: str) -> int:
        """Append to the run's log; returns its new size in bytes (UTF-8)."""
        ...

    def read_log(self, run_id: int, *, offset: int = 0, limit: int = 1 << 20) -> tuple[str, int]:
        """The log from byte ``offset`` (about ``limit`` bytes): (text, offset after it)."""
        ...

    def log_size(self, run_id: int) -> int: ...

    # -- messages ------------------------------------------------------------------------
    def add_instructions(
        self, messages: Sequence[StoredMessage], *, leased_until: Mapping[str, float] | None = None
    ) -> None:
        """Store instructions (all or none); a repeated message id raises ValueError.

        ``leased_until``: message id -> end of the lease of the instructions handed out
        as they are stored (to a node's waiting pull), as if leased at once.
        """
        ...

    def lease_instructions(
        self, node_id: int, *, now: float, lease_s: float, limit: int
    ) -> list[StoredMessage]:
        """Leases the node's unreplied, unexpired instructions of running runs (lease free)."""
        ...

    def release_leases(self, node_id: int, message_ids: Sequence[str] | None = None) -> int:
        """Make the node's leased, unreplied instructions (of ``message_ids`` only, if
        given) available again at once."""
        ...

    def add_replies(self, replies: Sequence[StoredMessage], *, now: float) -> list[str]:
        """Store replies to known instructions; the first reply to an instruction wins.

        Returns the ids of the replies that are stored (a repeated reply id counts as
        stored). Unknown instructions raise ``LookupError``; nothing is stored then.
        """
        ...

    def get_instructions(self, message_ids: Sequence[str]) -> list[StoredMessage]: ...

    def take_replies(
        self, run_id: int, instruction_ids: Sequence[str], *, now: float
    ) -> list[StoredMessage]:
        """Replies to the given instructions not taken before; marks them taken."""
        ...

    def unreplied_instructions(
        self, *, node_id: int | None = None, expired_at: float | None = None
    ) -> list[StoredMessage]:
        """Instructions without a reply: of one node and/or past their TTL at ``expired_at``."""
        ...

    def prune_messages(self, *, taken_before: float, run_id: int | None = None) -> int:
        """Forget replies taken before the time (of one run) and the instructions they answer."""
        ...

    def delete_run_messages(self, run_id: int) -> int: ...

    def referenced_objects(self) -> set[str]:
        """Object ids stored messages and unfinished runs (their bundles) refer to."""
        ...

    # -- users and login tokens -------------------------------------------------------------
    def add_user(self, user: UserInfo) -> None:
        """Store a new user; a taken name raises :class:`~glade.errors.InvalidStateError`."""
        ...

    def get_user(self, name: str) -> UserInfo | None: ...

    def find_user_by_api_key(self, api_key_hash: str) -> UserInfo | None: ...

    def list_users(self) -> list[UserInfo]:
        """Every user, by name."""
        ...

    def update_user(
        self,
        name: str,
        *,
        role: str | None = None,
        password_hash: str | None = None,
        api_key_hash: str | None = None,
    ) -> UserInfo | None:
        """Change some fields of a user (None: unknown user); returns the user as stored.

        Demoting the last admin raises :class:`~glade.errors.InvalidStateError`.
        """
        ...

    def remove_user(self, name: str) -> UserInfo | None:
        """Delete a user and its tokens; returns what was removed (None: unknown).

        Removing the last admin raises :class:`~glade.errors.InvalidStateError`.
        """
        ...

    def add_token(self, token: TokenInfo) -> None:
        """Store a login token of a known user (else :class:`~glade.errors.NotFoundError`)."""
        ...

    def get_token(self, token_hash: str) -> TokenInfo | None: ...

    def remove_token(self, token_hash: str) -> bool: ...

    def remove_user_tokens(self, user: str, *, keep: str = "") -> int:
        """End every login of ``user`` but the token (hash) ``keep``; returns how many."""
        ...

    def prune_tokens(self, *, expired_at: float) -> int:
        """Forget tokens that expired at ``expired_at``; returns how many."""
        ...

    # -- SuperNode keys (the allow-list) ---------------------------------------------------
    def add_node_key(self, key: NodeKey) -> None:
        """Allow a key; a taken name or key raises :class:`~glade.errors.InvalidStateError`."""
        ...

    def get_node_key(self, public_key: bytes) -> NodeKey | None: ...

    def list_node_keys(self) -> list[NodeKey]:
        """Every allowed key, in the order they were added."""
        ...

    def remove_node_key(self, name: str) -> NodeKey | None:
        """Disallow the key named ``name``; returns what was removed (None: unknown name)."""
        ...

    def bind_node_key(self, public_key: bytes, node_id: int) -> None:
        """Record the node id the key registered as (unknown key: NotFoundError)."""
        ...

    # -- audit log -------------------------------------------------------------------------
    def append_audit(self, entry: AuditEntry) -> int:
        """Append an entry (its ``entry_id`` is ignored); returns the id it got (increasing)."""
        ...

    def list_audit(self, *, limit: int = 100, after_id: int = 0) -> list[AuditEntry]:
        """The newest ``limit`` entries with an id above ``after_id``, oldest first."""
        ...

    def checkpoint(self) -> None:
        """Housekeeping of the storage, off the request path (SQLite: copy the write-ahead
        log into the database file); the SuperLink calls it every housekeeping tick."""
        ...

    def close(self) -> None: ...
