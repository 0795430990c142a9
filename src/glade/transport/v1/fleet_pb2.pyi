from glade.transport.v1 import message_pb2 as _message_pb2
from glade.transport.v1 import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterRequest(_message.Message):
    __slots__ = ("node_id", "name", "node_config")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    name: str
    node_config: _message_pb2.UserConfig
    def __init__(self, node_id: _Optional[int] = ..., name: _Optional[str] = ..., node_config: _Optional[_Union[_message_pb2.UserConfig, _Mapping]] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("node_id", "heartbeat_interval_s")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    heartbeat_interval_s: float
    def __init__(self, node_id: _Optional[int] = ..., heartbeat_interval_s: _Optional[float] = ...) -> None: ...

class UnregisterRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    def __init__(self, node_id: _Optional[int] = ...) -> None: ...

class UnregisterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    def __init__(self, node_id: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("known",)
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    known: bool
    def __init__(self, known: _Optional[bool] = ...) -> None: ...

class PullMessagesRequest(_message.Message):
    __slots__ = ("node_id", "wait_s", "max_messages")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    wait_s: float
    max_messages: int
    def __init__(self, node_id: _Optional[int] = ..., wait_s: _Optional[float] = ..., max_messages: _Optional[int] = ...) -> None: ...

class PushMessagesRequest(_message.Message):
    __slots__ = ("node_id", "messages", "objects", "inline_objects")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    INLINE_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    messages: _containers.RepeatedCompositeFieldContainer[_message_pb2.Message]
    objects: _containers.RepeatedCompositeFieldContainer[_message_pb2.ObjectInfo]
    inline_objects: _containers.RepeatedCompositeFieldContainer[_message_pb2.ObjectChunk]
    def __init__(self, node_id: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[_message_pb2.Message, _Mapping]]] = ..., objects: _Optional[_Iterable[_Union[_message_pb2.ObjectInfo, _Mapping]]] = ..., inline_objects: _Optional[_Iterable[_Union[_message_pb2.ObjectChunk, _Mapping]]] = ...) -> None: ...

class PushMessagesResponse(_message.Message):
    __slots__ = ("accepted_message_ids",)
    ACCEPTED_MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    accepted_message_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted_message_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("node_id", "run_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    run_id: int
    def __init__(self, node_id: _Optional[int] = ..., run_id: _Optional[int] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ...) -> None: ...

class OpenBulkRequest(_message.Message):
    __slots__ = ("node_id", "object_id", "upload", "size")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    object_id: str
    upload: bool
    size: int
    def __init__(self, node_id: _Optional[int] = ..., object_id: _Optional[str] = ..., upload: _Optional[bool] = ..., size: _Optional[int] = ...) -> None: ...

class OpenBulkResponse(_message.Message):
    __slots__ = ("ticket", "port", "size")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ticket: bytes
    port: int
    size: int
    def __init__(self, ticket: _Optional[bytes] = ..., port: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...
