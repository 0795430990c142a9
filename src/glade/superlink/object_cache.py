"""Object bytes as :class:`~glade.superlink.delivery.Delivery` reads them: a bounded cache of
small objects' verified bytes, and the object store as the codec's object mapping."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator, Mapping

from glade.errors import InvalidArgumentError, NotFoundError
from glade.superlink.object_store import ObjectStore
from glade.transport.objects import SMALL_OBJECT

__all__ = ["SmallObjects", "StoredObjects"]

SMALL_CACHE_BYTES = 16 * 1024 * 1024
"""Bytes of small objects :class:`SmallObjects` keeps by default."""


class SmallObjects:
    """The bytes of recently seen small objects, least recently used first out (thread-safe).

    Only bytes verified against their id go in; objects are content-addressed, so an entry
    is right for as long as it stays, even after the object store let the object go.
    """

    def __init__(self, max_bytes: int = SMALL_CACHE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, object_id: str) -> bytes | None:
        with self._lock:
            data = self._items.get(object_id)
            if data is not None:
                self._items.move_to_end(object_id)
            return data

    def put(self, object_id: str, data: bytes) -> None:
        if len(data) > SMALL_OBJECT:
            return
        with self._lock:
            if object_id in self._items:
                self._items.move_to_end(object_id)
                return
            self._items[object_id] = data
            self._bytes += len(data)
            while self._bytes > self._max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)


class StoredObjects(Mapping[str, memoryview]):
    """The object store as the codec's object mapping (memory-mapped, loaded lazily).

    ``verified``: bytes of objects the request carried, checked against their ids and
    stored by now, used instead of mapping the store's file.
    """

    def __init__(self, store: ObjectStore, verified: Mapping[str, bytes] | None = None) -> None:
        self._store = store
        self._cache: dict[str, memoryview] = {
            object_id: memoryview(data) for object_id, data in (verified or {}).items()
        }
        self.verified = frozenset(self._cache)

    def __getitem__(self, object_id: str) -> memoryview:
        if object_id not in self._cache:
            try:
                self._cache[object_id] = self._store.map(object_id)
            except (NotFoundError, InvalidArgumentError):
                raise KeyError(object_id) from None
        return self._cache[object_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cache)

    def __len__(self) -> int:
        return len(self._cache)
