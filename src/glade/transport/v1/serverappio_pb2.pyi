from glade.transport.v1 import message_pb2 as _message_pb2
from glade.transport.v1 import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunTokenRequest(_message.Message):
    __slots__ = ("run_id", "token")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    token: str
    def __init__(self, run_id: _Optional[int] = ..., token: _Optional[str] = ...) -> None: ...

class GetRunInfoResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ...) -> None: ...

class GetNodesResponse(_message.Message):
    __slots__ = ("node_ids",)
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    node_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, node_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ServerPushRequest(_message.Message):
    __slots__ = ("run_id", "token", "messages", "objects", "inline_objects")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    INLINE_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    token: str
    messages: _containers.RepeatedCompositeFieldContainer[_message_pb2.Message]
    objects: _containers.RepeatedCompositeFieldContainer[_message_pb2.ObjectInfo]
    inline_objects: _containers.RepeatedCompositeFieldContainer[_message_pb2.ObjectChunk]
    def __init__(self, run_id: _Optional[int] = ..., token: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_message_pb2.Message, _Mapping]]] = ..., objects: _Optional[_Iterable[_Union[_message_pb2.ObjectInfo, _Mapping]]] = ..., inline_objects: _Optional[_Iterable[_Union[_message_pb2.ObjectChunk, _Mapping]]] = ...) -> None: ...

class ServerPushResponse(_message.Message):
    __slots__ = ("message_ids",)
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, message_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ServerPullRequest(_message.Message):
    __slots__ = ("run_id", "token", "message_ids", "wait_s")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    token: str
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    wait_s: float
    def __init__(self, run_id: _Optional[int] = ..., token: _Optional[str] = ..., message_ids: _Optional[_Iterable[str]] = ..., wait_s: _Optional[float] = ...) -> None: ...

class ReportEventRequest(_message.Message):
    __slots__ = ("run_id", "token", "event", "more_events")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    MORE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    token: str
    event: _run_pb2.RunEvent
    more_events: _containers.RepeatedCompositeFieldContainer[_run_pb2.RunEvent]
    def __init__(self, run_id: _Optional[int] = ..., token: _Optional[str] = ..., event: _Optional[_Union[_run_pb2.RunEvent, _Mapping]] = ..., more_events: _Optional[_Iterable[_Union[_run_pb2.RunEvent, _Mapping]]] = ...) -> None: ...

class ReportEventResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
