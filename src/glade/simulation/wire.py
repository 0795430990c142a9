"""Frames between the local backend and its workers, and pickling with out-of-band buffers.

A frame is ``payload + header + trailer``: the payload holds pickles (protocol 5) whose large
buffers travel out-of-band in shared-memory segments, the header is a small pickle that says
where they are, and the trailer holds the header's length and the frame kind. Building the
header last lets the payloads of several frames share one segment.

- Instructions (parent -> worker): one pickle per batch; its large buffers go into one
  segment per push, shared by every worker's batch (:class:`BufferTable` de-duplicates them).
  Header: ``(segment path | None, its capacity, [(offset, nbytes), ...])``.
- Replies (worker -> parent): one pickle per reply, each with its own segment (replies are
  released one by one, and same-sized segments are easy to reuse). Header: a list of
  :data:`Entry`, and the paths of segments the worker deleted since its last frame.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from glade.array import Array, StoredArray
from glade.simulation.shm import address

__all__ = [
    "BatchSpan",
    "BufferTable",
    "Entry",
    "Kind",
    "batch_spans",
    "control",
    "dump_each",
    "finish",
    "load_each",
    "parse",
]

_TRAILER = struct.Struct("<IB")
Span = tuple[int, int]  # (offset, nbytes) of one buffer in a segment
Entry = tuple[int, "str | None", int, list[Span]]
"""One pickle of a frame: (end offset in the payload, segment path, its capacity, spans)."""
Store = Callable[[list[memoryview]], tuple[str, list[int], int]]


class Kind:
    """Frame kinds. Both ways: RELEASE (segments the sender no longer uses), TICKET (a
    worker asks for a bulk-port upload ticket: ``(request, size)``; the answer is
    ``(request, ticket or None)``). Parent -> worker: BATCH, DROP (segments deleted), STOP.
    Worker -> parent: READY, LOAD_FAILED, REPLIES."""

    BATCH = 1
    DROP = 2
    STOP = 3
    RELEASE = 4
    READY = 5
    LOAD_FAILED = 6
    REPLIES = 7
    TICKET = 8


class BufferTable:
    """Pickles objects, collecting their large buffers; the same memory is kept only once.

    Buffers smaller than ``threshold`` bytes stay in the pickle. Larger ones are appended to
    :attr:`buffers` (de-duplicated by address, so a model sent to many nodes is stored once)
    and :meth:`dump` returns the indices the pickle refers to, in order.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.buffers: list[memoryview] = []
        self._index: dict[tuple[int, int], int] = {}
        self._used: list[int] = []

    def _callback(self, buf: pickle.PickleBuffer) -> bool:
        view = buf.raw()
        if view.nbytes < self.threshold:
            return True  # in-band
        key = (address(view), view.nbytes)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.buffers)
            self.buffers.append(view)
        self._used.append(index)
        return False

    def dump(self, obj: Any) -> tuple[io.BytesIO, list[int]]:
        out = io.BytesIO()
        used: list[int] = []
        self._used = used
        pickle.Pickler(out, protocol=5, buffer_callback=self._callback).dump(obj)
        return out, used


def dump_each(
    objs: Iterable[Any],
    *,
    threshold: int,
    store: Store,
    stored: Mapping[int, str] | None = None,
) -> tuple[io.BytesIO, list[Entry]]:
    """Pickle each object on its own; ``store`` writes the large buffers of each to a segment.

    If ``store`` raises :class:`OSError` (shared memory is full), that object's buffers go
    in-band instead: slower, but the reply still arrives. ``stored`` maps ``id(array)`` to
    the content id of each :class:`~glade.Array` whose bytes were stored elsewhere already:
    those are pickled as a :class:`~glade.array.StoredArray` (dtype, shape, id), bytes left
    out.
    """
    out = io.BytesIO()
    large: list[memoryview] = []
    limit = [threshold]

    def callback(buf: pickle.PickleBuffer) -> bool:
        view = buf.raw()
        if view.nbytes < limit[0]:
            return True
        large.append(view)
        return False

    pickler = (
        _StoredPickler(out, stored, protocol=5, buffer_callback=callback)
        if stored
        else pickle.Pickler(out, protocol=5, buffer_callback=callback)
    )
    entries: list[Entry] = []
    for obj in objs:
        start = out.tell()
        pickler.clear_memo()
        pickler.dump(obj)
        if not large:
            entries.append((out.tell(), None, 0, []))
            continue
        try:
            path, offsets, capacity = store(large)
        except OSError:
            out.seek(start)
            out.truncate()
            pickler.clear_memo()
            limit[0] = sys.maxsize
            pickler.dump(obj)
            limit[0] = threshold
            entries.append((out.tell(), None, 0, []))
        else:
            spans = [(offset, buf.nbytes) for offset, buf in zip(offsets, large, strict=True)]
            entries.append((out.tell(), path, capacity, spans))
        large.clear()
    return out, entries


class _StoredPickler(pickle.Pickler):
    """Pickles the Arrays named in ``stored`` as StoredArrays (see :func:`dump_each`)."""

    def __init__(self, out: io.BytesIO, stored: Mapping[int, str], **kwargs: Any) -> None:
        super().__init__(out, **kwargs)
        self._stored = stored

    def reducer_override(self, obj: Any) -> Any:
        object_id = self._stored.get(id(obj)) if isinstance(obj, Array) else None
        if object_id is None:
            return NotImplemented
        return (StoredArray, (obj.dtype, obj.shape, object_id))


def load_each(
    payload: memoryview, entries: Sequence[Entry], open_segment: Callable[[str, int], memoryview]
) -> list[Any]:
    """Unpickle what :func:`dump_each` wrote; ``open_segment(path, capacity)`` maps a segment."""
    objs: list[Any] = []
    start = 0
    for end, path, capacity, spans in entries:
        buffers: list[memoryview] = []
        if path is not None:
            whole = open_segment(path, capacity)
            buffers = [whole[offset : offset + nbytes] for offset, nbytes in spans]
        objs.append(pickle.loads(payload[start:end], buffers=buffers))
        start = end
    return objs


def finish(out: io.BytesIO, kind: int, header: Any) -> memoryview:
    """Append ``header`` and the trailer to a payload; return the frame."""
    blob = pickle.dumps(header, protocol=5)
    out.write(blob)
    out.write(_TRAILER.pack(len(blob), kind))
    return out.getbuffer()


def control(kind: int, header: Any = None) -> bytes:
    """A frame without payload."""
    blob = pickle.dumps(header, protocol=5)
    return blob + _TRAILER.pack(len(blob), kind)


def parse(frame: bytes) -> tuple[int, Any, memoryview]:
    """Split a frame into kind, header and payload (a zero-copy view)."""
    view = memoryview(frame)
    end = len(view) - _TRAILER.size
    size, kind = _TRAILER.unpack_from(view, end)
    header = pickle.loads(view[end - size : end])
    return kind, header, view[: end - size]


BatchSpan = tuple[int, int] | tuple[int, int, str, int]
"""A buffer of a batch: in the push's segment, or in a shared buffer of the parent."""


def batch_spans(
    buffers: list[memoryview], places: list[tuple[str, int, int] | None], offsets: list[int]
) -> list[BatchSpan]:
    """Each buffer's span in a batch header: ``(offset, nbytes)`` in the push's segment, or
    ``(offset, nbytes, path, capacity)`` in a shared buffer of the caller."""
    spans: list[BatchSpan] = []
    own = iter(offsets)
    for i, buf in enumerate(buffers):
        place = places[i] if places else None
        if place is None:
            spans.append((next(own), buf.nbytes))
        else:
            path, capacity, offset = place
            spans.append((offset, buf.nbytes, path, capacity))
    return spans
