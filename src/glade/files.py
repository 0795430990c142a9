"""Files written atomically: a reader sees the old content or the new one, never a part.

The bytes go to a temporary file in the same folder, which then replaces the target (a
rename, atomic on POSIX). Ready files, a SuperNode's node id and app bundles are written so.

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ready.json"
>>> write_json(path, {"node_id": 7}) == path
True
>>> path.read_text()
'{\\n  "node_id": 7\\n}\\n'
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_atomic", "write_json"]


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (its folder is created); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON (and a newline) to ``path`` atomically."""
    return write_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
