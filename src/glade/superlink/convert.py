"""SuperLink records and run events to and from their ``glade.v1`` protobuf form."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from glade.records import MetricRecord, RecordDict
from glade.server.events import RunEvent
from glade.superlink.accounts import UserSummary
from glade.superlink.state import AuditEntry, NodeInfo, NodeKey, RunInfo, RunStatus
from glade.transport._record_codec import (
    RecordDecoder,
    records_to_proto,
    user_config_from_proto,
    user_config_to_proto,
)
from glade.transport.v1 import control_pb2 as cpb
from glade.transport.v1 import message_pb2 as pb
from glade.transport.v1 import run_pb2

__all__ = [
    "audit_from_proto",
    "audit_to_proto",
    "event_from_proto",
    "event_to_proto",
    "node_from_proto",
    "node_key_from_proto",
    "node_key_to_proto",
    "node_to_proto",
    "run_from_proto",
    "run_to_proto",
    "user_config",
    "user_from_proto",
    "user_to_proto",
]

_STATUS = {
    RunStatus.PENDING: run_pb2.RUN_STATUS_PENDING,
    RunStatus.STARTING: run_pb2.RUN_STATUS_STARTING,
    RunStatus.RUNNING: run_pb2.RUN_STATUS_RUNNING,
    RunStatus.FINISHED: run_pb2.RUN_STATUS_FINISHED,
}
_STATUS_NAME = {v: k for k, v in _STATUS.items()}


def user_config(proto: pb.UserConfig, *, where: str) -> dict[str, Any]:
    """Decode a UserConfig (SerdeError names ``where`` if it is malformed)."""
    return dict(user_config_from_proto(proto, where=where))


def run_to_proto(run: RunInfo) -> run_pb2.Run:
    out = run_pb2.Run(
        run_id=run.run_id,
        status=_STATUS[run.status],
        sub_status=run.sub_status,
        reason=run.reason,
        app_publisher=run.app_publisher,
        app_name=run.app_name,
        app_version=run.app_version,
        bundle_id=run.bundle_id,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        owner=run.owner,
        history_json=run.history_json,
    )
    user_config_to_proto(dict(run.run_config), out.run_config, where="run_config")
    user_config_to_proto(
        dict(run.federation_options), out.federation_options, where="federation_options"
    )
    return out


def run_from_proto(proto: run_pb2.Run) -> RunInfo:
    """The inverse of :func:`run_to_proto` (app references are not on the wire)."""
    return RunInfo(
        run_id=proto.run_id,
        status=_STATUS_NAME.get(proto.status, RunStatus.PENDING),
        bundle_id=proto.bundle_id,
        server_app="",
        client_app="",
        app_publisher=proto.app_publisher,
        app_name=proto.app_name,
        app_version=proto.app_version,
        sub_status=proto.sub_status,
        reason=proto.reason,
        run_config=user_config(proto.run_config, where="run_config"),
        federation_options=user_config(proto.federation_options, where="federation_options"),
        created_at=proto.created_at,
        started_at=proto.started_at,
        finished_at=proto.finished_at,
        owner=proto.owner,
        history_json=proto.history_json,
    )


def node_to_proto(node: NodeInfo) -> run_pb2.Node:
    out = run_pb2.Node(
        node_id=node.node_id,
        name=node.name,
        online=node.online,
        last_seen_at=node.last_seen_at,
        registered_at=node.registered_at,
    )
    user_config_to_proto(dict(node.node_config), out.node_config, where="node_config")
    return out


def event_to_proto(event: RunEvent) -> run_pb2.RunEvent:
    out = run_pb2.RunEvent(
        kind=event.kind,
        server_round=event.server_round,
        num_rounds=event.num_rounds,
        stage=event.stage,
        num_replies=event.num_replies,
        num_failures=event.num_failures,
        elapsed_s=event.elapsed_s,
    )
    if event.metrics:
        records = RecordDict({"m": MetricRecord(dict(event.metrics))})
        holder = pb.RecordDict()
        records_to_proto(records, holder, {}, where="event.metrics")
        out.metrics.CopyFrom(holder.entries[0].metric_record)
    return out


def event_from_proto(proto: run_pb2.RunEvent) -> RunEvent:
    holder = pb.RecordDict()
    holder.entries.add(key="m").metric_record.CopyFrom(proto.metrics)
    metrics: Mapping[str, Any] = RecordDecoder({}, verify=False).records(
        holder, where="event.metrics"
    )["m"]
    return RunEvent(
        kind=proto.kind,
        server_round=proto.server_round,
        num_rounds=proto.num_rounds,
        stage=proto.stage,
        metrics=dict(metrics),
        num_replies=proto.num_replies,
        num_failures=proto.num_failures,
        elapsed_s=proto.elapsed_s,
    )


def node_from_proto(proto: run_pb2.Node) -> NodeInfo:
    """The inverse of :func:`node_to_proto`."""
    return NodeInfo(
        node_id=proto.node_id,
        name=proto.name,
        node_config=user_config(proto.node_config, where="node_config"),
        online=proto.online,
        registered_at=proto.registered_at,
        last_seen_at=proto.last_seen_at,
    )


# Users, node keys and audit entries have the same fields in both forms: copied by name.
_Value = TypeVar("_Value", UserSummary, NodeKey, AuditEntry)
_Proto = TypeVar("_Proto", cpb.User, cpb.NodeKey, cpb.AuditEntry)


def _to_proto(value: Any, proto_type: type[_Proto]) -> _Proto:
    return proto_type(**{f.name: getattr(value, f.name) for f in dataclasses.fields(value)})


def _from_proto(proto: Any, value_type: type[_Value]) -> _Value:
    return value_type(**{f.name: getattr(proto, f.name) for f in dataclasses.fields(value_type)})


def user_to_proto(user: UserSummary) -> cpb.User:
    return _to_proto(user, cpb.User)


def user_from_proto(proto: cpb.User) -> UserSummary:
    """The inverse of :func:`user_to_proto`."""
    return _from_proto(proto, UserSummary)


def node_key_to_proto(key: NodeKey) -> cpb.NodeKey:
    return _to_proto(key, cpb.NodeKey)


def node_key_from_proto(proto: cpb.NodeKey) -> NodeKey:
    """The inverse of :func:`node_key_to_proto`."""
    return _from_proto(proto, NodeKey)


def audit_to_proto(entry: AuditEntry) -> cpb.AuditEntry:
    return _to_proto(entry, cpb.AuditEntry)


def audit_from_proto(proto: cpb.AuditEntry) -> AuditEntry:
    """The inverse of :func:`audit_to_proto`."""
    return _from_proto(proto, AuditEntry)
