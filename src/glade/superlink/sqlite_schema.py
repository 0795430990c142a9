"""The SuperLink's SQLite schema and the conversions between its rows and State records."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from glade.superlink.state import NodeInfo, RunInfo, StoredMessage

__all__ = [
    "MSG_COLUMNS",
    "RUN_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "batches",
    "message_of",
    "message_row",
    "node_of",
    "run_of",
]

SCHEMA_VERSION = 2
"""1: nodes, runs, logs, messages. 2: + users, tokens, node_keys, audit (new tables only)."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    node_id INTEGER PRIMARY KEY, name TEXT NOT NULL, node_config TEXT NOT NULL,
    online INTEGER NOT NULL, registered_at REAL NOT NULL, last_seen_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, status TEXT NOT NULL, sub_status TEXT NOT NULL,
    reason TEXT NOT NULL, app_publisher TEXT NOT NULL, app_name TEXT NOT NULL,
    app_version TEXT NOT NULL, bundle_id TEXT NOT NULL, server_app TEXT NOT NULL,
    client_app TEXT NOT NULL, run_config TEXT NOT NULL, federation_options TEXT NOT NULL,
    created_at REAL NOT NULL, started_at REAL NOT NULL, finished_at REAL NOT NULL,
    owner TEXT NOT NULL, history_json TEXT NOT NULL, token_hash TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS logs (
    run_id INTEGER NOT NULL, start INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (run_id, start));
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY, run_id INTEGER NOT NULL, src INTEGER NOT NULL,
    dst INTEGER NOT NULL, reply_to TEXT NOT NULL, created_at REAL NOT NULL, ttl REAL NOT NULL,
    payload BLOB NOT NULL, objects TEXT NOT NULL, leased_until REAL NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 0, replied INTEGER NOT NULL DEFAULT 0,
    taken_at REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS messages_by_dst ON messages (dst, replied) WHERE reply_to = '';
CREATE UNIQUE INDEX IF NOT EXISTS replies_by_instruction ON messages (reply_to)
    WHERE reply_to != '';
CREATE INDEX IF NOT EXISTS messages_by_run ON messages (run_id);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    api_key_hash TEXT NOT NULL, created_at REAL NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS users_by_api_key ON users (api_key_hash)
    WHERE api_key_hash != '';
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, user TEXT NOT NULL, created_at REAL NOT NULL,
    expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens (user);
CREATE TABLE IF NOT EXISTS node_keys (
    public_key BLOB PRIMARY KEY, name TEXT NOT NULL UNIQUE, added_at REAL NOT NULL,
    added_by TEXT NOT NULL, node_id INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL);
"""
RUN_COLUMNS = (
    "run_id, status, sub_status, reason, app_publisher, app_name, app_version, bundle_id, "
    "server_app, client_app, run_config, federation_options, created_at, started_at, "
    "finished_at, owner, history_json"
)
MSG_COLUMNS = "message_id, run_id, src, dst, reply_to, created_at, ttl, payload, objects"


def batches(items: Sequence[str], size: int = 500) -> Iterator[list[str]]:
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i : i + size]


def node_of(row: Sequence[Any]) -> NodeInfo:
    return NodeInfo(
        node_id=row[0],
        name=row[1],
        node_config=json.loads(row[2]),
        online=bool(row[3]),
        registered_at=row[4],
        last_seen_at=row[5],
    )


def run_of(row: Sequence[Any]) -> RunInfo:
    return RunInfo(
        run_id=row[0],
        status=row[1],
        sub_status=row[2],
        reason=row[3],
        app_publisher=row[4],
        app_name=row[5],
        app_version=row[6],
        bundle_id=row[7],
        server_app=row[8],
        client_app=row[9],
        run_config=json.loads(row[10]),
        federation_options=json.loads(row[11]),
        created_at=row[12],
        started_at=row[13],
        finished_at=row[14],
        owner=row[15],
        history_json=row[16],
    )


def message_row(m: StoredMessage) -> tuple[Any, ...]:
    objects = json.dumps([list(o) for o in m.objects])
    return (
        m.message_id,
        m.run_id,
        m.src_node_id,
        m.dst_node_id,
        m.reply_to,
        m.created_at,
        m.ttl,
        m.payload,
        objects,
    )


def message_of(row: Sequence[Any]) -> StoredMessage:
    return StoredMessage(
        message_id=row[0],
        run_id=row[1],
        src_node_id=row[2],
        dst_node_id=row[3],
        reply_to=row[4],
        created_at=row[5],
        ttl=row[6],
        payload=bytes(row[7]),
        objects=tuple((oid, size) for oid, size in json.loads(row[8])),
    )
