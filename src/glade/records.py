"""Records: the typed, validated content of a message.

- :class:`ArrayRecord`: ordered name -> :class:`~glade.Array` (model weights).
- :class:`MetricRecord`: name -> int | float | list[int] | list[float].
- :class:`ConfigRecord`: name -> bool | int | float | str | bytes, or a list of one of those.
- :class:`RecordDict`: name -> any of the three.

Values are checked on insertion; a wrong type raises :class:`TypeError` naming the key and type.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any, TypeAlias, TypeVar, cast

import numpy as np

from glade.array import Array, torch_state_dict

__all__ = [
    "ArrayRecord",
    "ConfigRecord",
    "ConfigValue",
    "MetricRecord",
    "MetricValue",
    "Record",
    "RecordDict",
]

MetricValue: TypeAlias = int | float | list[int] | list[float]
ConfigScalar: TypeAlias = bool | int | float | str | bytes
ConfigValue: TypeAlias = (
    ConfigScalar | list[bool] | list[int] | list[float] | list[str] | list[bytes]
)

V = TypeVar("V")


class _TypedMapping(MutableMapping[str, V]):
    """An insertion-ordered ``dict`` that validates each value through ``_check``."""

    __slots__ = ("_items",)
    _kind = "record"

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items: dict[str, V] = {}
        if items is not None:
            if not isinstance(items, Mapping):
                raise TypeError(
                    f"{type(self).__name__} takes a mapping of name -> value, "
                    f"got {type(items).__name__}"
                )
            for key, value in items.items():
                self[key] = value

    def _check(self, key: str, value: Any) -> V:  # pragma: no cover - overridden
        raise NotImplementedError

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError(
                f"{type(self).__name__} keys must be non-empty str, got {key!r} "
                f"({type(key).__name__})"
            )
        self._items[key] = self._check(key, value)

    def __getitem__(self, key: str) -> V:
        try:
            return self._items[key]
        except KeyError:
            known = ", ".join(repr(k) for k in self._items) or "none"
            raise KeyError(f"{type(self).__name__} has no key {key!r} (keys: {known})") from None

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._items == other._items

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"

    def copy(self: _T) -> _T:
        """A shallow copy (arrays are immutable and shared)."""
        new = type(self)()
        new._items = dict(self._items)
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._items))


_T = TypeVar("_T", bound=_TypedMapping[Any])


def _rebuild(cls: type[_T], items: dict[str, Any]) -> _T:
    # Values were validated when first inserted; unpickling trusts them (fast path).
    obj = cls()
    obj._items = items
    return obj


def _type_error(record: str, key: str, value: Any, allowed: str) -> TypeError:
    return TypeError(
        f"{record}[{key!r}]: unsupported value type {type(value).__name__}; allowed: {allowed}"
    )


# ---------------------------------------------------------------------------------------
class ArrayRecord(_TypedMapping[Array]):
    """Named arrays, e.g. model weights. Order is kept.

    Accepts a mapping of name -> ``Array`` / ``numpy.ndarray`` / ``torch.Tensor`` (so a
    PyTorch ``state_dict`` works directly), or a list of NumPy arrays (named ``"0"``, ``"1"``...).

    >>> import numpy as np
    >>> rec = ArrayRecord([np.zeros(3, np.float32), np.ones((2, 2))])
    >>> list(rec), rec.nbytes
    (['0', '1'], 44)
    """

    __slots__ = ()

    def __init__(self, arrays: Mapping[str, Any] | Sequence[Any] | None = None) -> None:
        if arrays is not None and not isinstance(arrays, Mapping):
            if isinstance(arrays, str | bytes) or not isinstance(arrays, Sequence):
                raise TypeError(
                    "ArrayRecord takes a mapping of name -> array or a list of arrays, "
                    f"got {type(arrays).__name__}"
                )
            arrays = {str(i): a for i, a in enumerate(arrays)}
        super().__init__(arrays)

    def _check(self, key: str, value: Any) -> Array:
        if isinstance(value, Array):
            return value
        if isinstance(value, np.ndarray) or type(value).__module__.startswith("torch"):
            try:
                return Array(value)
            except TypeError as exc:
                raise TypeError(f"ArrayRecord[{key!r}]: {exc}") from None
        raise _type_error("ArrayRecord", key, value, "Array, numpy.ndarray, torch.Tensor")

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._items.values())

    def to_numpy_ndarrays(self, *, copy: bool = False) -> list[np.ndarray[Any, Any]]:
        """The arrays as a list of NumPy arrays (read-only views unless ``copy``)."""
        return [a.numpy(copy=copy) for a in self._items.values()]

    def to_torch_state_dict(self) -> dict[str, Any]:
        """An ordered ``state_dict`` of new tensors, for ``model.load_state_dict``."""
        return torch_state_dict(self._items.items())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {a.dtype}{list(a.shape)}" for k, a in self._items.items())
        return f"ArrayRecord({{{inner}}})"


# ---------------------------------------------------------------------------------------
def _scalar(value: Any) -> Any:
    """Unwrap NumPy scalars into Python scalars; return anything else unchanged."""
    if isinstance(value, np.generic):
        return value.item()
    return value


class MetricRecord(_TypedMapping[MetricValue]):
    """Named metrics: int, float, or a list of ints or floats.

    >>> MetricRecord({"accuracy": 0.9, "num-examples": 128})
    MetricRecord({'accuracy': 0.9, 'num-examples': 128})
    """

    __slots__ = ()
    _allowed = "int, float, list[int], list[float]"

    def _check(self, key: str, value: Any) -> MetricValue:
        value = _scalar(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, list | tuple | np.ndarray):
            items = [_scalar(v) for v in value]
            if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
                return cast(list[int], items)
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
                return [float(v) for v in items]
            bad = next(v for v in items if not isinstance(v, int | float) or isinstance(v, bool))
            raise TypeError(
                f"MetricRecord[{key!r}]: list holds a {type(bad).__name__}; "
                f"allowed: {self._allowed}"
            )
        raise _type_error("MetricRecord", key, value, self._allowed)


_CONFIG_SCALARS: tuple[type, ...] = (bool, int, float, str, bytes)


class ConfigRecord(_TypedMapping[ConfigValue]):
    """Named configuration values: bool, int, float, str, bytes, or a list of one of those.

    >>> ConfigRecord({"lr": 0.1, "local-epochs": 2, "optimizer": "sgd"})["optimizer"]
    'sgd'
    """

    __slots__ = ()
    _allowed = "bool, int, float, str, bytes, or a list of one of those"

    def _check(self, key: str, value: Any) -> ConfigValue:
        value = _scalar(value)
        if isinstance(value, _CONFIG_SCALARS):
            return cast(ConfigValue, value)
        if isinstance(value, list | tuple):
            items = [_scalar(v) for v in value]
            if not items:
                return []
            kinds = {type(v) for v in items}
            if kinds <= {int, float}:
                return cast(ConfigValue, [float(v) for v in items] if float in kinds else items)
            if len(kinds) == 1 and kinds <= set(_CONFIG_SCALARS):
                return cast(ConfigValue, items)
            names = sorted(k.__name__ for k in kinds)
            raise TypeError(
                f"ConfigRecord[{key!r}]: a list must hold one type, got {names}; "
                f"allowed: {self._allowed}"
            )
        raise _type_error("ConfigRecord", key, value, self._allowed)


Record: TypeAlias = ArrayRecord | MetricRecord | ConfigRecord


class RecordDict(_TypedMapping[Record]):
    """The content of a message: name -> ArrayRecord | MetricRecord | ConfigRecord.

    >>> import numpy as np
    >>> content = RecordDict({"arrays": ArrayRecord([np.zeros(2)]),
    ...                       "config": ConfigRecord({"lr": 0.1})})
    >>> sorted(content.config_records)
    ['config']
    """

    __slots__ = ()

    def _check(self, key: str, value: Any) -> Record:
        if isinstance(value, ArrayRecord | MetricRecord | ConfigRecord):
            return value
        raise _type_error("RecordDict", key, value, "ArrayRecord, MetricRecord, ConfigRecord")

    def _of(self, kind: type[V]) -> dict[str, V]:
        return {k: v for k, v in self._items.items() if isinstance(v, kind)}

    @property
    def array_records(self) -> dict[str, ArrayRecord]:
        return self._of(ArrayRecord)

    @property
    def metric_records(self) -> dict[str, MetricRecord]:
        return self._of(MetricRecord)

    @property
    def config_records(self) -> dict[str, ConfigRecord]:
        return self._of(ConfigRecord)

    def copy(self) -> RecordDict:
        """A copy whose records are copies too (arrays are shared: they are immutable)."""
        new = RecordDict()
        new._items = {k: v.copy() for k, v in self._items.items()}
        return new
