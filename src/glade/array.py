"""`Array`: one n-dimensional tensor (dtype, shape, contiguous little-endian bytes)."""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from glade.digest import content_id
from glade.errors import NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable

__all__ = ["Array", "dtype_from_name"]

# Fixed-size numeric kinds that can travel as raw bytes: bool, int, uint, float, complex.
_NUMERIC_KINDS = frozenset("biufc")


def _is_ml_dtype(dtype: np.dtype[Any]) -> bool:
    """True for the extra float types of the ``ml_dtypes`` package (bfloat16, float8_*)."""
    return dtype.kind == "V" and dtype.type.__module__.startswith("ml_dtypes")


def dtype_from_name(name: str) -> np.dtype[Any]:
    """Turn a dtype name such as ``"float32"`` or ``"bfloat16"`` back into a NumPy dtype."""
    try:
        dtype = np.dtype(name)
    except TypeError:
        try:
            import ml_dtypes
        except ImportError:
            raise TypeError(
                f"unknown array dtype {name!r}; if it is a bfloat16/float8 type, "
                "install 'ml_dtypes' (pip install ml_dtypes)"
            ) from None
        try:
            dtype = np.dtype(getattr(ml_dtypes, name))
        except AttributeError:
            raise TypeError(f"unknown array dtype {name!r}") from None
    if dtype.kind not in _NUMERIC_KINDS and not _is_ml_dtype(dtype):
        raise TypeError(f"array dtype {name!r} is not a fixed-size numeric type")
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


def _normalize(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Return a read-only, C-contiguous, little-endian view (copying only when needed)."""
    if x.dtype.kind not in _NUMERIC_KINDS and not _is_ml_dtype(x.dtype):
        raise TypeError(
            f"Array needs a fixed-size numeric dtype (bool, int, uint, float, complex, "
            f"bfloat16), got dtype {x.dtype!s}"
        )
    if x.dtype.byteorder == ">" or (x.dtype.byteorder == "=" and np.little_endian is False):
        x = x.astype(x.dtype.newbyteorder("<"))
    if not x.flags.c_contiguous:
        x = np.array(x, order="C", copy=True)
    view = x.view()
    view.flags.writeable = False
    return view


class Array:
    """One tensor: a dtype name, a shape and contiguous little-endian bytes.

    Wrapping a NumPy array does not copy it (unless it is not C-contiguous or big-endian);
    :meth:`numpy` returns a read-only zero-copy view. Pass ``copy=True`` for a private,
    writable copy.

    >>> import numpy as np
    >>> a = Array(np.arange(6, dtype=np.float32).reshape(2, 3))
    >>> a.dtype, a.shape, a.nbytes
    ('float32', (2, 3), 24)
    >>> float(a.numpy().sum())
    15.0
    """

    __slots__ = ("__weakref__", "_data", "_digest")

    def __init__(self, data: np.ndarray[Any, Any], *, copy: bool = False) -> None:
        if isinstance(data, Array):
            data = data._data
        elif isinstance(data, np.generic):
            data = np.asarray(data)
        if not isinstance(data, np.ndarray):
            if type(data).__module__.startswith("torch"):
                # Training mutates tensors in place: a record must not change under it.
                data, copy = _torch_to_numpy(data), True
            else:
                raise TypeError(
                    f"Array wraps a numpy.ndarray (or a torch.Tensor), got "
                    f"{type(data).__name__}; use Array.from_bytes for raw bytes"
                )
        if copy:
            data = np.array(data, order="C", copy=True)
        self._data = _normalize(data)
        self._digest: str | None = None

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def from_numpy(cls, data: np.ndarray[Any, Any], *, copy: bool = False) -> Array:
        """Wrap a NumPy array (zero-copy unless ``copy`` or a layout change is needed)."""
        return cls(data, copy=copy)

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, *, dtype: str, shape: Iterable[int]
    ) -> Array:
        """Build an Array over raw little-endian bytes (zero-copy for bytes/memoryview)."""
        np_dtype = dtype_from_name(dtype)
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"array shape {shape} has a negative dimension")
        expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
        if len(memoryview(data).cast("B")) != expected:
            raise ValueError(
                f"array bytes do not match dtype/shape: got {len(memoryview(data).cast('B'))} "
                f"bytes, {dtype}{list(shape)} needs {expected}"
            )
        return cls(np.frombuffer(data, dtype=np_dtype).reshape(shape))

    @classmethod
    def from_torch(cls, tensor: Any, *, copy: bool = True) -> Array:
        """Convert a ``torch.Tensor`` (any device). Copies by default: training mutates tensors."""
        arr = _torch_to_numpy(tensor)
        return cls(arr, copy=copy)

    # -- properties ----------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        """Dtype name, e.g. ``"float32"`` or ``"bfloat16"``."""
        return str(self._data.dtype.name)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(self._data.size)

    @property
    def digest(self) -> str:
        """The array's content address: the BLAKE3 digest of its bytes in hex (computed once;
        see :mod:`glade.digest`)."""
        if self._digest is None:
            self._digest = content_id(self.memoryview())
        return self._digest

    @property
    def sha256(self) -> str:
        """Deprecated: hex SHA-256 of the bytes. Content addresses are :attr:`digest` (BLAKE3)."""
        warnings.warn(
            "Array.sha256 is deprecated: an Array's content address is now Array.digest "
            "(BLAKE3); use hashlib.sha256(array.memoryview()) if you need SHA-256",
            DeprecationWarning,
            stacklevel=2,
        )
        return hashlib.sha256(self.memoryview()).hexdigest()

    def _rebind(self, buffer: memoryview) -> None:
        """Point this Array at ``buffer``, another copy of the very same bytes (e.g. a memory
        map of the object as stored), so that the memory holding them now can be freed.

        Internal: callers guarantee the bytes are equal (they hashed them); the length is
        checked here."""
        if len(buffer) != self.nbytes:
            raise ValueError(f"cannot rebind {self.nbytes} bytes to a buffer of {len(buffer)}")
        data = np.frombuffer(buffer, dtype=self._data.dtype).reshape(self._data.shape)
        data.flags.writeable = False
        self._data = data

    # -- conversions ---------------------------------------------------------------------
    def numpy(self, *, copy: bool = False) -> np.ndarray[Any, Any]:
        """The data as a NumPy array: a read-only view, or a writable copy with ``copy=True``."""
        return self._data.copy() if copy else self._data

    def memoryview(self) -> memoryview:
        """The raw bytes as a flat read-only memoryview (zero-copy)."""
        flat: Any = self._data.reshape(-1).view(np.uint8)
        return memoryview(flat)

    def tobytes(self) -> bytes:
        return self._data.tobytes()

    def torch(self) -> Any:
        """A new ``torch.Tensor`` with a copy of the data (writable, CPU)."""
        import torch

        data = self._data
        if data.dtype.name == "bfloat16":
            return torch.from_numpy(data.view(np.int16).copy()).view(torch.bfloat16)
        return torch.from_numpy(data.copy())

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        out = self._data if dtype is None else self._data.astype(dtype)
        return out.copy() if copy else out

    # -- value semantics -----------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Array):
            return NotImplemented
        return (
            self.dtype == other.dtype
            and self.shape == other.shape
            and self.memoryview() == other.memoryview()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Array(dtype={self.dtype}, shape={self.shape}, nbytes={self.nbytes})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The ndarray pickles out-of-band with protocol 5 (shared memory in simulation).
        return (_array_from_pickle, (self._data,))


def _array_from_pickle(data: np.ndarray[Any, Any]) -> Array:
    return Array(data)


class StoredArray(Array):
    """Internal: an Array whose bytes another process stored already under its content id.

    A SuperNode's ClientApp process uploads a large reply array to the SuperLink itself (see
    :mod:`glade.transport.bulk`) and hands the node this stand-in: dtype, shape and digest,
    which is all the node needs to send the reply. It holds no bytes; anything that asks for
    them gets a :class:`~glade.errors.NotFoundError` saying where they went.
    """

    __slots__ = ()

    def __init__(self, dtype: str, shape: Iterable[int], digest: str) -> None:
        zero = np.zeros((), dtype=dtype_from_name(dtype))
        self._data = np.broadcast_to(zero, tuple(int(s) for s in shape))  # no memory
        self._digest = digest

    def _bytes_elsewhere(self) -> NotFoundError:
        return NotFoundError(
            f"the bytes of array {self._digest} ({self.dtype}{list(self.shape)}) were stored "
            "by the process that made it (a ClientApp's upload to the SuperLink); this "
            "process knows their dtype, shape and content id only"
        )

    def _rebind(self, buffer: memoryview) -> None:
        raise self._bytes_elsewhere()

    def numpy(self, *, copy: bool = False) -> np.ndarray[Any, Any]:
        raise self._bytes_elsewhere()

    def memoryview(self) -> memoryview:
        raise self._bytes_elsewhere()

    def tobytes(self) -> bytes:
        raise self._bytes_elsewhere()

    def torch(self) -> Any:
        raise self._bytes_elsewhere()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        raise self._bytes_elsewhere()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Array):
            return NotImplemented
        return (self.dtype, self.shape, self._digest) == (other.dtype, other.shape, other.digest)

    __hash__ = None

    def __repr__(self) -> str:
        return f"StoredArray(dtype={self.dtype}, shape={self.shape}, digest={self._digest})"

    def __reduce__(self) -> tuple[Any, ...]:
        assert self._digest is not None
        return (StoredArray, (self.dtype, self.shape, self._digest))


def _torch_to_numpy(tensor: Any) -> np.ndarray[Any, Any]:
    import torch

    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        out: np.ndarray[Any, Any] = t.contiguous().view(torch.int16).numpy()
        return out.view(ml_dtypes.bfloat16)
    arr: np.ndarray[Any, Any] = t.contiguous().numpy()
    return arr


def torch_state_dict(arrays: Iterable[tuple[str, Array]]) -> OrderedDict[str, Any]:
    """Build an ordered ``state_dict`` of new torch tensors from (name, Array) pairs."""
    return OrderedDict((name, array.torch()) for name, array in arrays)
