"""Object garbage collection: what may go, and what must stay although nothing refers to it.

An object is kept while a stored message or an unfinished run (its bundle) refers to it,
while it is younger than ``min_age_s`` (an upload that just finished), and while it is
*pinned*: an uploader (a run's ServerApp, a node, a user) pins the objects it
uploads or asks about until the message or run referring to them is stored. Pins expire
after ``grace_s`` (an upload whose reference never comes). Everything else is deleted.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator

from glade.superlink.object_store import ObjectStore
from glade.superlink.state import State

__all__ = ["APPS_DIR", "GarbageCollector"]

APPS_DIR = "apps"
"""Folder of the object store root that holds extracted app bundles, by bundle id."""

logger = logging.getLogger(__name__)


class GarbageCollector:
    """Pins and the collection pass (see the module docstring); thread-safe."""

    def __init__(
        self,
        state: State,
        store: ObjectStore,
        *,
        grace_s: float,
        min_age_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self._store = store
        self._grace_s = grace_s
        self._min_age_s = min_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pins: dict[Hashable, dict[str, float]] = {}
        self._dirty = True

    def pin(self, owner: Hashable, object_ids: Iterable[str]) -> None:
        until = self._clock() + self._grace_s
        with self._lock:
            pins = self._pins.setdefault(owner, {})
            for object_id in object_ids:
                pins[object_id] = until

    def release(self, owner: Hashable) -> None:
        """Drop the owner's pins (its references are stored now, or it is gone)."""
        with self._lock:
            if self._pins.pop(owner, None):
                self._dirty = True

    def mark_dirty(self) -> None:
        """Something may have become garbage (messages pruned, a run finished)."""
        with self._lock:
            self._dirty = True

    @contextlib.contextmanager
    def _unpinned(self, object_id: str) -> Iterator[bool]:
        """True while ``object_id`` is not pinned: a pin taken after ``keep`` was computed
        (HasObjects for a model stored rounds ago) must win. Held across the deletion, so
        that a pin comes either before it (kept) or after it (the uploader hears the object
        is missing and uploads it again)."""
        with self._lock:
            now = self._clock()
            yield not any(pins.get(object_id, 0.0) > now for pins in self._pins.values())

    def pinned(self) -> set[str]:
        now = self._clock()
        with self._lock:
            out: set[str] = set()
            for owner in list(self._pins):
                pins = {oid: t for oid, t in self._pins[owner].items() if t > now}
                if pins:
                    self._pins[owner] = pins
                    out.update(pins)
                else:
                    del self._pins[owner]
                    self._dirty = True
            return out

    def collect(self, *, force: bool = False) -> list[str]:
        """Delete the objects nothing keeps; returns their ids."""
        keep = self.pinned()  # pins first: a pin is released only after its reference is stored
        self._store.expire_spares()
        with self._lock:
            if not (self._dirty or force):
                return []
            self._dirty = False
        keep |= self._state.referenced_objects()
        removed, young = self._store.collect_garbage(
            keep, grace_s=self._min_age_s, still_garbage=self._unpinned
        )
        if young:
            self.mark_dirty()  # look again once they are old enough
        for object_id in removed:  # an extracted bundle goes with its bundle
            shutil.rmtree(self._store.root / APPS_DIR / object_id, ignore_errors=True)
        if removed:
            logger.debug("garbage collection removed %d objects", len(removed))
        return removed
