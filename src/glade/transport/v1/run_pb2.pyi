from glade.transport.v1 import message_pb2 as _message_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_PENDING: _ClassVar[RunStatus]
    RUN_STATUS_STARTING: _ClassVar[RunStatus]
    RUN_STATUS_RUNNING: _ClassVar[RunStatus]
    RUN_STATUS_FINISHED: _ClassVar[RunStatus]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_PENDING: RunStatus
RUN_STATUS_STARTING: RunStatus
RUN_STATUS_RUNNING: RunStatus
RUN_STATUS_FINISHED: RunStatus

class Run(_message.Message):
    __slots__ = ("run_id", "status", "sub_status", "reason", "app_publisher", "app_name", "app_version", "bundle_id", "run_config", "created_at", "started_at", "finished_at", "owner", "history_json", "federation_options")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUB_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    APP_PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    APP_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    HISTORY_JSON_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    status: RunStatus
    sub_status: str
    reason: str
    app_publisher: str
    app_name: str
    app_version: str
    bundle_id: str
    run_config: _message_pb2.UserConfig
    created_at: float
    started_at: float
    finished_at: float
    owner: str
    history_json: str
    federation_options: _message_pb2.UserConfig
    def __init__(self, run_id: _Optional[int] = ..., status: _Optional[_Union[RunStatus, str]] = ..., sub_status: _Optional[str] = ..., reason: _Optional[str] = ..., app_publisher: _Optional[str] = ..., app_name: _Optional[str] = ..., app_version: _Optional[str] = ..., bundle_id: _Optional[str] = ..., run_config: _Optional[_Union[_message_pb2.UserConfig, _Mapping]] = ..., created_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., owner: _Optional[str] = ..., history_json: _Optional[str] = ..., federation_options: _Optional[_Union[_message_pb2.UserConfig, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("node_id", "name", "online", "last_seen_at", "node_config", "registered_at")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    NODE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    name: str
    online: bool
    last_seen_at: float
    node_config: _message_pb2.UserConfig
    registered_at: float
    def __init__(self, node_id: _Optional[int] = ..., name: _Optional[str] = ..., online: _Optional[bool] = ..., last_seen_at: _Optional[float] = ..., node_config: _Optional[_Union[_message_pb2.UserConfig, _Mapping]] = ..., registered_at: _Optional[float] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("run_id", "offset", "text")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    offset: int
    text: str
    def __init__(self, run_id: _Optional[int] = ..., offset: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("kind", "server_round", "num_rounds", "stage", "metrics", "num_replies", "num_failures", "elapsed_s")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SERVER_ROUND_FIELD_NUMBER: _ClassVar[int]
    NUM_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    NUM_REPLIES_FIELD_NUMBER: _ClassVar[int]
    NUM_FAILURES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    kind: str
    server_round: int
    num_rounds: int
    stage: str
    metrics: _message_pb2.MetricRecord
    num_replies: int
    num_failures: int
    elapsed_s: float
    def __init__(self, kind: _Optional[str] = ..., server_round: _Optional[int] = ..., num_rounds: _Optional[int] = ..., stage: _Optional[str] = ..., metrics: _Optional[_Union[_message_pb2.MetricRecord, _Mapping]] = ..., num_replies: _Optional[int] = ..., num_failures: _Optional[int] = ..., elapsed_s: _Optional[float] = ...) -> None: ...

class MessageBatch(_message.Message):
    __slots__ = ("messages", "objects", "inline_objects")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    INLINE_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_message_pb2.Message]
    objects: _containers.RepeatedCompositeFieldContainer[_message_pb2.ObjectInfo]
    inline_objects: _containers.RepeatedCompositeFieldContainer[_message_pb2.ObjectChunk]
    def __init__(self, messages: _Optional[_Iterable[_Union[_message_pb2.Message, _Mapping]]] = ..., objects: _Optional[_Iterable[_Union[_message_pb2.ObjectInfo, _Mapping]]] = ..., inline_objects: _Optional[_Iterable[_Union[_message_pb2.ObjectChunk, _Mapping]]] = ...) -> None: ...

class PullObjectRequest(_message.Message):
    __slots__ = ("object_id", "offset")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    offset: int
    def __init__(self, object_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class PushObjectResponse(_message.Message):
    __slots__ = ("object_id", "size")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    size: int
    def __init__(self, object_id: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class HasObjectsRequest(_message.Message):
    __slots__ = ("object_ids",)
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, object_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class HasObjectsResponse(_message.Message):
    __slots__ = ("missing",)
    MISSING_FIELD_NUMBER: _ClassVar[int]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, missing: _Optional[_Iterable[str]] = ...) -> None: ...
