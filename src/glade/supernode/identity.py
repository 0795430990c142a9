"""`NodeIdentity`: the node id a SuperNode keeps in its data folder, so a restart rejoins.

The folder is locked while a SuperNode uses it (two live nodes must never share an id); the
lock goes with the process, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from glade.errors import ConfigError
from glade.files import write_json

__all__ = ["NodeIdentity"]

_FILE = "node.json"
_LOCK = "supernode.lock"


class NodeIdentity:
    """The node id stored in ``data_dir/node.json`` (0: none yet); :meth:`close` unlocks.

    Raises :class:`~glade.errors.ConfigError` if another SuperNode holds the folder.
    """

    def __init__(self, data_dir: Path) -> None:
        self._dir = Path(data_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = os.open(self._dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ConfigError(
                f"another SuperNode is running with the data folder {self._dir}; give each "
                "SuperNode its own folder (--data-dir)"
            ) from None
        self.node_id = self._load()

    @property
    def path(self) -> Path:
        return self._dir / _FILE

    def _load(self) -> int:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            node_id = int(data["node_id"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError, OSError):
            return 0  # unreadable: the SuperLink hands out a new id
        return node_id if node_id > 0 else 0

    def save(self, node_id: int) -> None:
        """Remember ``node_id`` (written atomically)."""
        self.node_id = node_id
        write_json(self.path, {"node_id": node_id})

    def close(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
