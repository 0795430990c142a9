"""`BundleCache`: each run's app bundle, fetched once by id, verified, extracted on disk."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

from glade.bundle import extract_bundle
from glade.bundle_policy import BundlePolicy
from glade.errors import AccessDeniedError, LimitExceededError, SerdeError

__all__ = ["BundleCache"]

logger = logging.getLogger(__name__)

Fetch = Callable[[str], bytes | memoryview]
_BUNDLE_ID = re.compile(r"[0-9a-f]{64}")


class BundleCache:
    """Extracted bundles under ``root/<bundle id>-<policy>``; ``fetch(bundle_id)`` downloads one.

    A folder there was written atomically after every check passed (the zip's SHA-256 is
    its id, each file matches the manifest, paths are safe, and the node's ``policy``:
    size cap, file types, trusted publishers), so a bundle used by many runs is downloaded
    and checked once. The folder name carries a digest of the policy: after the node's
    policy changes (another ``--trusted-publishers`` file, say), bundles are checked again.
    Bundles this node refuses raise :class:`~glade.errors.SerdeError` with the reason.
    """

    def __init__(self, root: Path, *, fetch: Fetch, policy: BundlePolicy | None = None) -> None:
        self._root = Path(root)
        self._fetch = fetch
        self._policy = policy if policy is not None else BundlePolicy.unrestricted()
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @property
    def policy(self) -> BundlePolicy:
        return self._policy

    def app_dir(self, bundle_id: str) -> Path:
        """The folder of the extracted bundle ``bundle_id`` (fetched if not cached)."""
        if not _BUNDLE_ID.fullmatch(bundle_id):
            raise SerdeError(
                f"invalid bundle id {bundle_id!r}: expected 64 hex digits (its content id)"
            )
        target = self._root / f"{bundle_id}-{self._policy.cache_key}"
        if target.is_dir():
            return target
        with self._lock:
            lock = self._locks.setdefault(bundle_id, threading.Lock())
        with lock:
            if target.is_dir():
                return target
            data = self._fetch(bundle_id)
            logger.info("fetched app bundle %s (%d bytes)", bundle_id[:12], len(data))
            try:
                return extract_bundle(bytes(data), target, bundle_id=bundle_id, policy=self._policy)
            except (AccessDeniedError, LimitExceededError) as exc:
                # refused by this node's policy: to the run, a bundle it cannot use
                raise SerdeError(str(exc)) from exc
