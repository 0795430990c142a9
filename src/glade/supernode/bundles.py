"""`BundleCache`: each run's app bundle, fetched once by id, verified, extracted on disk."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

from glade.bundle import MAX_BUNDLE_BYTES, extract_bundle
from glade.errors import SerdeError

__all__ = ["BundleCache"]

logger = logging.getLogger(__name__)

Fetch = Callable[[str], bytes | memoryview]
_BUNDLE_ID = re.compile(r"[0-9a-f]{64}")


class BundleCache:
    """Extracted bundles under ``root/<bundle id>``; ``fetch(bundle_id)`` downloads a zip.

    A folder there was written atomically after every check passed (the zip's SHA-256 is
    its id, each file matches the manifest, paths are safe, sizes are capped), so a bundle
    used by many runs is downloaded and checked once. Bad bundles raise
    :class:`~glade.errors.SerdeError`.
    """

    def __init__(self, root: Path, *, fetch: Fetch, max_bytes: int = MAX_BUNDLE_BYTES) -> None:
        self._root = Path(root)
        self._fetch = fetch
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def app_dir(self, bundle_id: str) -> Path:
        """The folder of the extracted bundle ``bundle_id`` (fetched if not cached)."""
        if not _BUNDLE_ID.fullmatch(bundle_id):
            raise SerdeError(f"invalid bundle id {bundle_id!r}: expected a hex sha256")
        target = self._root / bundle_id
        if target.is_dir():
            return target
        with self._lock:
            lock = self._locks.setdefault(bundle_id, threading.Lock())
        with lock:
            if target.is_dir():
                return target
            data = self._fetch(bundle_id)
            logger.info("fetched app bundle %s (%d bytes)", bundle_id[:12], len(data))
            return extract_bundle(
                bytes(data), target, bundle_id=bundle_id, max_bytes=self._max_bytes
            )
