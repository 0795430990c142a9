"""Fuzzing of every gRPC method of a real ``glade superlink`` process.

Each method of the Control, Fleet and ServerAppIO services (read from the generated
descriptors, so a new RPC is fuzzed without touching this file) receives random bytes and
mutations of a valid request (bit flips, truncations, insertions, duplicated or huge fields).
Every answer must be an error status the SuperLink chose on purpose (or OK): never
INTERNAL/UNKNOWN (an unhandled exception) and never UNAVAILABLE (a dead server). The state
(runs, logs, users, node keys, registered nodes) must be the same afterwards.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message as ProtoMessage

from glade.transport.grpc_options import channel as open_channel
from glade.transport.v1 import control_pb2, fleet_pb2, serverappio_pb2

BAD_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE}
SERVICES = {
    "control": control_pb2.DESCRIPTOR.services_by_name["Control"],
    "fleet": fleet_pb2.DESCRIPTOR.services_by_name["Fleet"],
    "serverappio": serverappio_pb2.DESCRIPTOR.services_by_name["ServerAppIo"],
}
_MESSAGE_CLASSES: dict[str, type[ProtoMessage]] = {}
for _module in (control_pb2, fleet_pb2, serverappio_pb2):
    from glade.transport.v1 import message_pb2, run_pb2

    for _mod in (_module, message_pb2, run_pb2):
        for _name in _mod.DESCRIPTOR.message_types_by_name:
            cls = getattr(_mod, _name)
            _MESSAGE_CLASSES[cls.DESCRIPTOR.full_name] = cls


@dataclass(frozen=True)
class Method:
    api: str  # control | fleet | serverappio
    path: str  # /glade.v1.Fleet/Register
    request_type: type[ProtoMessage]
    client_streaming: bool
    server_streaming: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


def all_methods() -> list[Method]:
    out = []
    for api, service in SERVICES.items():
        proto = descriptor_pb2.ServiceDescriptorProto()
        service.CopyToProto(proto)
        for m in proto.method:
            out.append(
                Method(
                    api=api,
                    path=f"/{service.full_name}/{m.name}",
                    request_type=_MESSAGE_CLASSES[m.input_type.lstrip(".")],
                    client_streaming=m.client_streaming,
                    server_streaming=m.server_streaming,
                )
            )
    return out


def seed_request(method: Method, *, node_id: int, run_id: int) -> bytes:
    """A plausible request of the method: every scalar field set, ids pointing at real things."""
    msg = method.request_type()
    _fill(msg, node_id=node_id, run_id=run_id, depth=0)
    return msg.SerializeToString()


def _fill(msg: ProtoMessage, *, node_id: int, run_id: int, depth: int) -> None:
    from google.protobuf.descriptor import FieldDescriptor as F

    for field in msg.DESCRIPTOR.fields:
        name = field.name
        repeated = field.is_repeated
        if field.type == F.TYPE_MESSAGE:
            if depth >= 2 or field.message_type.GetOptions().map_entry:
                continue
            child = getattr(msg, name).add() if repeated else getattr(msg, name)
            _fill(child, node_id=node_id, run_id=run_id, depth=depth + 1)
            continue
        if field.type == F.TYPE_STRING:
            value: Any = {"bundle_id": "ab" * 32, "object_id": "cd" * 32}.get(name, "fuzz")
        elif field.type == F.TYPE_BYTES:
            value = b"\x00fuzz"
        elif field.type == F.TYPE_BOOL:
            value = True
        elif field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            value = 0.2 if "wait" in name else 1.5
        elif field.type == F.TYPE_ENUM:
            value = 1
        elif "node_id" in name:
            value = node_id
        elif "run_id" in name:
            value = run_id
        else:
            value = 3
        if repeated:
            getattr(msg, name).append(value)
        else:
            setattr(msg, name, value)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation of ``data`` (a serialized request)."""
    buf = bytearray(data)
    kind = rng.randrange(7)
    if kind == 0 and buf:  # flip bits
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif kind == 1 and buf:  # truncate
        del buf[rng.randrange(len(buf)) :]
    elif kind == 2:  # insert random bytes
        at = rng.randint(0, len(buf))
        buf[at:at] = rng.randbytes(rng.randint(1, 16))
    elif kind == 3:  # duplicate the message (repeated fields, last-one-wins scalars)
        buf = buf * rng.randint(2, 4)
    elif kind == 4:  # a huge varint field / length
        buf += bytes([0x08]) + b"\xff" * 9 + b"\x01"
    elif kind == 5:  # a length-delimited field claiming more bytes than follow
        buf += bytes([(rng.randint(1, 15) << 3) | 2]) + b"\xff\xff\xff\x7f" + b"x"
    else:  # replace a byte with an extreme one
        if buf:
            buf[rng.randrange(len(buf))] = rng.choice([0x00, 0x7F, 0x80, 0xFF])
    return bytes(buf)


class Caller:
    """Sends raw request bytes to one API of the SuperLink and classifies the answer."""

    def __init__(self, addresses: dict[str, str]) -> None:
        self.channels = {api: open_channel(addresses[api]) for api in SERVICES}

    def call(
        self,
        method: Method,
        payload: bytes | Sequence[bytes],
        *,
        metadata: Sequence[tuple[str, str | bytes]] = (),
        timeout: float = 3.0,
    ) -> grpc.StatusCode:
        ch = self.channels[method.api]
        ident = {"request_serializer": None, "response_deserializer": None}
        try:
            if method.client_streaming:
                chunks = [payload] if isinstance(payload, bytes) else list(payload)
                if method.server_streaming:
                    stream = ch.stream_stream(method.path, **ident)
                    _drain(stream(iter(chunks), timeout=timeout, metadata=metadata))
                else:
                    ch.stream_unary(method.path, **ident)(
                        iter(chunks), timeout=timeout, metadata=metadata
                    )
            elif method.server_streaming:
                stream = ch.unary_stream(method.path, **ident)
                _drain(stream(payload, timeout=timeout, metadata=metadata))
            else:
                ch.unary_unary(method.path, **ident)(payload, timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
        return grpc.StatusCode.OK

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()


def _drain(responses: Iterator[Any]) -> None:
    for _ in responses:
        pass


# -- state snapshots -------------------------------------------------------------------------
VOLATILE_COLUMNS = {
    "nodes": {"online", "last_seen_at"},
}
SKIPPED_TABLES = {"audit", "tokens", "sqlite_sequence"}


State = dict[str, list[tuple[Any, ...]]]


def snapshot(database: Path) -> State:
    """Every table's rows (read-only), without columns that change by themselves."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out = {}
        for table in sorted(set(tables) - SKIPPED_TABLES):
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            keep = [c for c in columns if c not in VOLATILE_COLUMNS.get(table, set())]
            rows = db.execute(f"SELECT {', '.join(keep)} FROM {table}").fetchall()
            out[table] = sorted(rows, key=repr)
        return out
    finally:
        db.close()
