"""Records and user config to and from their ``glade.v1`` protobuf form (used by the codec).

Encoding collects the arrays it meets as objects keyed by object id; decoding resolves array
references against such a mapping. Failures raise :class:`~glade.errors.SerdeError` naming the
path of the offending entry, e.g. ``content['arrays']['fc.weight']``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np

from glade import digest
from glade.array import Array, dtype_from_name
from glade.context import UserConfig
from glade.errors import SerdeError
from glade.records import ArrayRecord, ConfigRecord, MetricRecord, Record, RecordDict
from glade.transport.v1 import message_pb2 as pb

__all__ = [
    "ENCODE_ERRORS",
    "ObjectSource",
    "RecordDecoder",
    "records_to_proto",
    "user_config_from_proto",
    "user_config_to_proto",
]

ObjectSource: TypeAlias = Array | bytes | bytearray | memoryview
"""What an object id may resolve to: an Array, or the raw bytes of one."""

ENCODE_ERRORS = (TypeError, ValueError, OverflowError)
"""What protobuf setters raise on a value they cannot store (wrong type, out of range)."""


# -- encoding ------------------------------------------------------------------------------
def records_to_proto(
    records: RecordDict, out: pb.RecordDict, objects: dict[str, Array], *, where: str
) -> None:
    """Fill ``out`` from ``records``; the arrays met are added to ``objects``."""
    out.SetInParent()
    for key, record in records.items():
        try:
            entry = out.entries.add(key=key)
            if isinstance(record, ArrayRecord):
                _arrays_to_proto(record, entry.array_record, objects)
            elif isinstance(record, MetricRecord):
                _values_to_proto(record, entry.metric_record)
            else:
                _values_to_proto(record, entry.config_record)
        except ENCODE_ERRORS as exc:
            raise SerdeError(f"cannot encode {where}[{key!r}]: {exc}") from exc


def _arrays_to_proto(record: ArrayRecord, out: pb.ArrayRecord, objects: dict[str, Array]) -> None:
    out.SetInParent()
    for key, array in record.items():
        object_id = array.digest  # cached on the Array: a broadcast hashes once
        ref = pb.ArrayRef(
            dtype=array.dtype, shape=array.shape, nbytes=array.nbytes, object_id=object_id
        )
        out.entries.add(key=key, value=ref)
        objects.setdefault(object_id, array)


def _values_to_proto(record: MetricRecord | ConfigRecord, out: Any) -> None:
    """Fill a ``pb.MetricRecord`` or ``pb.ConfigRecord`` (their entries share one shape)."""
    out.SetInParent()
    for key, value in record.items():
        _value_to_proto(value, out.entries.add(key=key).value)


def _value_to_proto(value: Any, out: Any) -> None:
    """Set the oneof of a MetricValue / ConfigValue / UserConfigValue from a Python value."""
    if isinstance(value, list):
        field = _LIST_FIELDS[_scalar_field(value[0]) if value else "sint64"]
        _check_field(out, field, value)
        values = getattr(out, field)
        values.SetInParent()  # an empty list still selects the oneof
        values.values.extend(value)
    else:
        field = _scalar_field(value)
        _check_field(out, field, value)
        setattr(out, field, value)


_LIST_FIELDS = {
    "bool": "bool_list",
    "sint64": "sint_list",
    "double": "double_list",
    "string": "string_list",
    "bytes": "bytes_list",
}


def _scalar_field(value: Any) -> str:
    # bool before int: bool is an int subclass
    for kind, field in ((bool, "bool"), (int, "sint64"), (float, "double"), (str, "string")):
        if isinstance(value, kind):
            return field
    if isinstance(value, bytes):
        return "bytes"
    raise TypeError(f"unsupported value type {type(value).__name__}")


def _check_field(out: Any, field: str, value: Any) -> None:
    if field not in out.DESCRIPTOR.fields_by_name:
        raise TypeError(f"a {out.DESCRIPTOR.name} cannot hold {value!r}")


def user_config_to_proto(config: UserConfig, out: pb.UserConfig, *, where: str) -> None:
    """Fill ``out`` from a node/run config (str keys, bool/int/float/str values)."""
    out.SetInParent()
    for key, value in config.items():
        plain = value.item() if isinstance(value, np.generic) else value
        if not isinstance(key, str) or not isinstance(plain, bool | int | float | str):
            raise SerdeError(
                f"cannot encode {where}[{key!r}]: user config keys are str and values are "
                f"bool, int, float or str, got {type(value).__name__}"
            )
        try:
            _value_to_proto(plain, out.entries.add(key=key).value)
        except ENCODE_ERRORS as exc:
            raise SerdeError(f"cannot encode {where}[{key!r}]: {exc}") from exc


# -- decoding ------------------------------------------------------------------------------
def _value_from_proto(value: Any, where: str) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        raise SerdeError(f"{where} has no value")
    if kind.endswith("_list"):
        return list(getattr(value, kind).values)
    return getattr(value, kind)


def _entries(proto: Any, where: str) -> dict[str, Any]:
    """The entries of a repeated-Entry message as an ordered dict, refusing duplicate keys."""
    out: dict[str, Any] = {}
    for entry in proto.entries:
        if entry.key in out:
            raise SerdeError(f"{where} has the key {entry.key!r} twice")
        out[entry.key] = entry
    return out


def _values(proto: Any, where: str) -> dict[str, Any]:
    return {
        key: _value_from_proto(entry.value, f"{where}[{key!r}]")
        for key, entry in _entries(proto, where).items()
    }


def user_config_from_proto(proto: pb.UserConfig, *, where: str) -> UserConfig:
    """Decode a node/run config."""
    return _values(proto, where)


class RecordDecoder:
    """Decodes RecordDicts, resolving array references against ``objects``.

    With ``verify``, each object is hashed (once) and checked against its id.
    """

    def __init__(self, objects: Mapping[str, ObjectSource], *, verify: bool) -> None:
        self._objects = objects
        self._verify = verify
        self._verified: set[str] = set()

    def records(self, proto: pb.RecordDict, *, where: str) -> RecordDict:
        out = RecordDict()
        for key, entry in _entries(proto, where).items():
            path = f"{where}[{key!r}]"
            try:
                out[key] = self._record(entry, path)
            except SerdeError:
                raise
            except (TypeError, ValueError) as exc:
                raise SerdeError(f"invalid {path}: {exc}") from exc
        return out

    def _record(self, entry: pb.RecordDict.Entry, path: str) -> Record:
        kind = entry.WhichOneof("record")
        if kind == "array_record":
            refs = _entries(entry.array_record, path)
            return ArrayRecord({k: self.array(e.value, f"{path}[{k!r}]") for k, e in refs.items()})
        if kind == "metric_record":
            return MetricRecord(_values(entry.metric_record, path))
        if kind == "config_record":
            return ConfigRecord(_values(entry.config_record, path))
        raise SerdeError(f"{path} holds no record")

    def array(self, ref: pb.ArrayRef, where: str) -> Array:
        """The Array that ``ref`` points to (a zero-copy view of the object's bytes)."""
        object_id = ref.object_id
        try:
            source = self._objects[object_id]
        except KeyError:
            raise SerdeError(f"{where}: array object {object_id!r} is missing") from None
        try:
            dtype = dtype_from_name(ref.dtype)
        except TypeError as exc:
            raise SerdeError(f"{where}: {exc}") from None
        shape = tuple(ref.shape)
        described = f"{ref.dtype}{list(shape)}"
        if math.prod(shape) * dtype.itemsize != ref.nbytes:
            raise SerdeError(f"{where}: {described} does not take the {ref.nbytes} bytes it claims")
        if isinstance(source, Array):
            if source.dtype == ref.dtype and source.shape == shape:
                self._verify_hash(object_id, source, where)
                return source
            source = source.memoryview()  # same bytes, another dtype/shape: reinterpret
        try:
            view = memoryview(source).cast("B")
        except TypeError as exc:
            raise SerdeError(f"{where}: object {object_id!r} is not a flat buffer: {exc}") from None
        if len(view) != ref.nbytes:
            raise SerdeError(
                f"{where}: object {object_id!r} has {len(view)} bytes, {described} needs "
                f"{ref.nbytes}"
            )
        self._verify_hash(object_id, view, where)
        array = Array.from_bytes(view, dtype=ref.dtype, shape=shape)
        if object_id in self._verified:
            array._digest = object_id  # verified above: forwarding it needs no re-hash
        return array

    def _verify_hash(self, object_id: str, data: Array | memoryview, where: str) -> None:
        if not self._verify or object_id in self._verified:
            return
        actual = data.digest if isinstance(data, Array) else digest.content_id(data)
        if actual != object_id:
            raise SerdeError(
                f"{where}: object {object_id!r} does not match its bytes (blake3 {actual})"
            )
        self._verified.add(object_id)
