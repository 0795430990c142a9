"""Named arrays to and from files, bit for bit: ``.npz`` (NumPy) and ``.safetensors``.

Both formats keep every dtype Glade arrays can have: NumPy dtypes as themselves,
``ml_dtypes`` ones (bfloat16, float8) natively in safetensors and as an unsigned-integer
view of the same width in ``.npz`` (the caller keeps the real dtype name next to the
file, see :mod:`glade.strategies.checkpoint`).

The safetensors writer follows the published format (an 8-byte little-endian header
size, a JSON header of dtype/shape/byte offsets, then the raw bytes), so PyTorch users
can ``safetensors.torch.load_file`` a checkpoint without Glade; the ``safetensors``
package is not needed to write or read it here.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from glade.array import Array, dtype_from_name
from glade.errors import SerdeError

__all__ = ["read_npz", "read_safetensors", "write_npz", "write_safetensors"]

_SAFETENSORS_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
}
_FROM_SAFETENSORS = {v: k for k, v in _SAFETENSORS_DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


def _storable(array: Array) -> np.ndarray[Any, Any]:
    """The array as a NumPy-native dtype (ml_dtypes viewed as same-width unsigned ints)."""
    data = array.numpy()
    if data.dtype.kind == "V":
        return data.view(np.dtype(f"<u{data.dtype.itemsize}"))
    return data


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, Array]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` (``np.load(path)[name]`` reads one)."""
    with open(path, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, _storable(array), allow_pickle=False)
        raw.flush()
        os.fsync(raw.fileno())


def read_npz(path: str | os.PathLike[str], dtypes: Mapping[str, str]) -> dict[str, Array]:
    """Read the arrays named in ``dtypes`` (name -> dtype name) from a ``.npz``."""
    out: dict[str, Array] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for name, dtype_name in dtypes.items():
                data = npz[name]
                dtype = dtype_from_name(dtype_name)
                if data.dtype != dtype:
                    data = data.view(dtype)
                out[name] = Array(data)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise SerdeError(f"cannot read arrays from {path}: {exc}") from exc
    return out


def write_safetensors(
    path: str | os.PathLike[str],
    arrays: Mapping[str, Array],
    *,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``arrays`` in the safetensors format (``metadata``: str -> str)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, array in arrays.items():
        code = _SAFETENSORS_DTYPES.get(array.dtype)
        if code is None:
            raise TypeError(
                f"array {name!r} has dtype {array.dtype}, which safetensors cannot hold; "
                "use the npz format"
            )
        header[name] = {
            "dtype": code,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    if metadata:
        header["__metadata__"] = dict(metadata)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for array in arrays.values():
            f.write(array.memoryview())
        f.flush()
        os.fsync(f.fileno())


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, Array]:
    """Read every tensor of a safetensors file, in file order, as :class:`~glade.Array`."""
    data = Path(path).read_bytes()
    try:
        (size,) = struct.unpack_from("<Q", data)
        if size > min(_MAX_HEADER, len(data) - 8):
            raise ValueError(f"header size {size} exceeds the file")
        header = json.loads(data[8 : 8 + size])
        body = memoryview(data)[8 + size :]
        entries = sorted(
            ((k, v) for k, v in header.items() if k != "__metadata__"),
            key=lambda kv: kv[1]["data_offsets"][0],
        )
        out: dict[str, Array] = {}
        for name, entry in entries:
            begin, end = entry["data_offsets"]
            out[name] = Array.from_bytes(
                body[begin:end], dtype=_FROM_SAFETENSORS[entry["dtype"]], shape=entry["shape"]
            )
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise SerdeError(f"{path} is not a readable safetensors file: {exc}") from exc
    return out
