from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BoolList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, values: _Optional[_Iterable[bool]] = ...) -> None: ...

class SintList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class DoubleList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class BytesList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, values: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ArrayRef(_message.Message):
    __slots__ = ("dtype", "shape", "nbytes", "object_id")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    nbytes: int
    object_id: str
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., nbytes: _Optional[int] = ..., object_id: _Optional[str] = ...) -> None: ...

class ArrayRecord(_message.Message):
    __slots__ = ("entries",)
    class Entry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ArrayRef
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ArrayRef, _Mapping]] = ...) -> None: ...
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ArrayRecord.Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[ArrayRecord.Entry, _Mapping]]] = ...) -> None: ...

class MetricValue(_message.Message):
    __slots__ = ("sint64", "double", "sint_list", "double_list")
    SINT64_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_FIELD_NUMBER: _ClassVar[int]
    SINT_LIST_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_LIST_FIELD_NUMBER: _ClassVar[int]
    sint64: int
    double: float
    sint_list: SintList
    double_list: DoubleList
    def __init__(self, sint64: _Optional[int] = ..., double: _Optional[float] = ..., sint_list: _Optional[_Union[SintList, _Mapping]] = ..., double_list: _Optional[_Union[DoubleList, _Mapping]] = ...) -> None: ...

class MetricRecord(_message.Message):
    __slots__ = ("entries",)
    class Entry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: MetricValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[MetricValue, _Mapping]] = ...) -> None: ...
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[MetricRecord.Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[MetricRecord.Entry, _Mapping]]] = ...) -> None: ...

class ConfigValue(_message.Message):
    __slots__ = ("bool", "sint64", "double", "string", "bytes", "bool_list", "sint_list", "double_list", "string_list", "bytes_list")
    BOOL_FIELD_NUMBER: _ClassVar[int]
    SINT64_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_FIELD_NUMBER: _ClassVar[int]
    STRING_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    BOOL_LIST_FIELD_NUMBER: _ClassVar[int]
    SINT_LIST_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_LIST_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_FIELD_NUMBER: _ClassVar[int]
    BYTES_LIST_FIELD_NUMBER: _ClassVar[int]
    bool: bool
    sint64: int
    double: float
    string: str
    bytes: bytes
    bool_list: BoolList
    sint_list: SintList
    double_list: DoubleList
    string_list: StringList
    bytes_list: BytesList
    def __init__(self, bool: _Optional[bool] = ..., sint64: _Optional[int] = ..., double: _Optional[float] = ..., string: _Optional[str] = ..., bytes: _Optional[bytes] = ..., bool_list: _Optional[_Union[BoolList, _Mapping]] = ..., sint_list: _Optional[_Union[SintList, _Mapping]] = ..., double_list: _Optional[_Union[DoubleList, _Mapping]] = ..., string_list: _Optional[_Union[StringList, _Mapping]] = ..., bytes_list: _Optional[_Union[BytesList, _Mapping]] = ...) -> None: ...

class ConfigRecord(_message.Message):
    __slots__ = ("entries",)
    class Entry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ConfigValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ConfigValue, _Mapping]] = ...) -> None: ...
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ConfigRecord.Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[ConfigRecord.Entry, _Mapping]]] = ...) -> None: ...

class RecordDict(_message.Message):
    __slots__ = ("entries",)
    class Entry(_message.Message):
        __slots__ = ("key", "array_record", "metric_record", "config_record")
        KEY_FIELD_NUMBER: _ClassVar[int]
        ARRAY_RECORD_FIELD_NUMBER: _ClassVar[int]
        METRIC_RECORD_FIELD_NUMBER: _ClassVar[int]
        CONFIG_RECORD_FIELD_NUMBER: _ClassVar[int]
        key: str
        array_record: ArrayRecord
        metric_record: MetricRecord
        config_record: ConfigRecord
        def __init__(self, key: _Optional[str] = ..., array_record: _Optional[_Union[ArrayRecord, _Mapping]] = ..., metric_record: _Optional[_Union[MetricRecord, _Mapping]] = ..., config_record: _Optional[_Union[ConfigRecord, _Mapping]] = ...) -> None: ...
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[RecordDict.Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[RecordDict.Entry, _Mapping]]] = ...) -> None: ...

class Metadata(_message.Message):
    __slots__ = ("run_id", "message_id", "src_node_id", "dst_node_id", "reply_to_message_id", "group_id", "message_type", "ttl", "created_at")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SRC_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DST_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    message_id: str
    src_node_id: int
    dst_node_id: int
    reply_to_message_id: str
    group_id: str
    message_type: str
    ttl: float
    created_at: float
    def __init__(self, run_id: _Optional[int] = ..., message_id: _Optional[str] = ..., src_node_id: _Optional[int] = ..., dst_node_id: _Optional[int] = ..., reply_to_message_id: _Optional[str] = ..., group_id: _Optional[str] = ..., message_type: _Optional[str] = ..., ttl: _Optional[float] = ..., created_at: _Optional[float] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "reason")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: str
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("metadata", "content", "error")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    content: RecordDict
    error: Error
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., content: _Optional[_Union[RecordDict, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class UserConfigValue(_message.Message):
    __slots__ = ("bool", "sint64", "double", "string")
    BOOL_FIELD_NUMBER: _ClassVar[int]
    SINT64_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_FIELD_NUMBER: _ClassVar[int]
    STRING_FIELD_NUMBER: _ClassVar[int]
    bool: bool
    sint64: int
    double: float
    string: str
    def __init__(self, bool: _Optional[bool] = ..., sint64: _Optional[int] = ..., double: _Optional[float] = ..., string: _Optional[str] = ...) -> None: ...

class UserConfig(_message.Message):
    __slots__ = ("entries",)
    class Entry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: UserConfigValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[UserConfigValue, _Mapping]] = ...) -> None: ...
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[UserConfig.Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[UserConfig.Entry, _Mapping]]] = ...) -> None: ...

class Context(_message.Message):
    __slots__ = ("run_id", "node_id", "node_config", "run_config", "state")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    node_id: int
    node_config: UserConfig
    run_config: UserConfig
    state: RecordDict
    def __init__(self, run_id: _Optional[int] = ..., node_id: _Optional[int] = ..., node_config: _Optional[_Union[UserConfig, _Mapping]] = ..., run_config: _Optional[_Union[UserConfig, _Mapping]] = ..., state: _Optional[_Union[RecordDict, _Mapping]] = ...) -> None: ...

class ObjectChunk(_message.Message):
    __slots__ = ("object_id", "offset", "total_size", "data")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    offset: int
    total_size: int
    data: bytes
    def __init__(self, object_id: _Optional[str] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ObjectInfo(_message.Message):
    __slots__ = ("object_id", "size")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    size: int
    def __init__(self, object_id: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class MessageEnvelope(_message.Message):
    __slots__ = ("message", "objects")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    message: Message
    objects: _containers.RepeatedCompositeFieldContainer[ObjectInfo]
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ..., objects: _Optional[_Iterable[_Union[ObjectInfo, _Mapping]]] = ...) -> None: ...
