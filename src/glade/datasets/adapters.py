"""Uniform row access to the data containers partitioners work on.

Supported containers, all selected by row position:

- a NumPy array (or anything ``np.asarray`` accepts) — rows are the first axis,
- a tuple of arrays of equal length, such as ``(X, y)``,
- a dict of arrays of equal length (``{"x": X, "label": y}``),
- a pandas ``DataFrame`` (positions via ``.iloc``; the original index is kept),
- a Hugging Face ``datasets.Dataset`` (positions via ``.select``).

pandas and ``datasets`` are never imported here: a container is recognised only when its library
has already been imported by the caller.

>>> import numpy as np
>>> X, y = np.arange(8).reshape(4, 2), np.array([0, 1, 0, 1])
>>> num_rows((X, y))
4
>>> select_rows((X, y), np.array([1, 3]))[1]
array([1, 1])
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from glade.errors import ConfigError

__all__ = ["ColumnKey", "column", "num_rows", "select_rows"]

ColumnKey = str | int
"""A column name (dict, DataFrame, Dataset) or a position in a ``(X, y)`` tuple."""


def _is_dataframe(data: object) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(data, pd.DataFrame)


def _is_hf_dataset(data: object) -> bool:
    hf = sys.modules.get("datasets")
    return hf is not None and isinstance(data, hf.Dataset)


def _is_array_tuple(data: object) -> bool:
    """A tuple of arrays such as ``(X, y)`` (a list is a list of samples, not of columns)."""
    return isinstance(data, tuple) and len(data) > 0 and all(np.ndim(a) > 0 for a in data)


def _common_length(lengths: Mapping[str, int], what: str) -> int:
    distinct = set(lengths.values())
    if len(distinct) != 1:
        detail = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise ValueError(f"all arrays of a {what} must have the same number of rows ({detail})")
    return distinct.pop()


def num_rows(data: Any) -> int:
    """Number of rows (samples) in ``data``."""
    if _is_dataframe(data) or _is_hf_dataset(data):
        return len(data)
    if isinstance(data, Mapping):
        if not data:
            raise ValueError("an empty dict has no rows; pass a dict of arrays")
        return _common_length({str(k): len(v) for k, v in data.items()}, "dict")
    if _is_array_tuple(data):
        return _common_length({f"[{i}]": len(a) for i, a in enumerate(data)}, "tuple")
    arr = np.asarray(data)
    if arr.ndim == 0:
        raise TypeError(f"cannot count rows of a {type(data).__name__}; pass an array-like")
    return int(arr.shape[0])


def _unknown(key: ColumnKey, available: Sequence[Any]) -> ConfigError:
    names = ", ".join(repr(a) for a in available)
    return ConfigError(
        f"unknown column {key!r} (label_key/id_key); the data has: {names}. "
        "Pass the right column name, or the values themselves (labels=... / ids=...)"
    )


def column(data: Any, key: ColumnKey) -> np.ndarray:
    """The values of column ``key`` of ``data`` as a 1-D NumPy array.

    For a ``(X, y)`` tuple an int ``key`` is a position and a string key selects the last array
    (``y``): tuples have no column names.
    """
    if _is_hf_dataset(data):
        if key not in data.column_names:
            raise _unknown(key, data.column_names)
        table = data.select_columns([key]).with_format("arrow")[:]
        return np.asarray(table.column(key).to_numpy())
    if _is_dataframe(data) or isinstance(data, Mapping):
        if key not in data:
            raise _unknown(key, list(data.keys()))
        return np.asarray(data[key])
    if _is_array_tuple(data):
        if isinstance(key, int):
            if not -len(data) <= key < len(data):
                raise _unknown(key, list(range(len(data))))
            return np.asarray(data[key])
        return np.asarray(data[-1])
    raise TypeError(
        f"cannot read column {key!r} from a {type(data).__name__}; use a (X, y) tuple, a dict "
        "of arrays, a pandas DataFrame or a datasets.Dataset, or pass the values directly"
    )


def select_rows(data: Any, indices: npt.ArrayLike) -> Any:
    """The rows of ``data`` at positions ``indices``, in the same kind of container."""
    idx = np.asarray(indices, dtype=np.int64)
    if _is_hf_dataset(data):
        return data.select(idx)
    if _is_dataframe(data):
        return data.iloc[idx]
    if isinstance(data, Mapping):
        return {k: np.asarray(v)[idx] for k, v in data.items()}
    if _is_array_tuple(data):
        return tuple(np.asarray(a)[idx] for a in data)
    return np.asarray(data)[idx]
