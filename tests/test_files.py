"""Atomic file writes: the target holds the old content or the new one, nothing in between."""

from __future__ import annotations

import json
import os

import pytest

from glade.files import write_atomic, write_json


def test_write_json_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "deep" / "ready.json"
    assert write_json(path, {"node_id": 1}) == path
    write_json(path, {"node_id": 2})
    assert json.loads(path.read_text()) == {"node_id": 2}
    assert [p.name for p in path.parent.iterdir()] == ["ready.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path, monkeypatch):
    path = write_atomic(tmp_path / "b.bin", b"old")
    with pytest.raises(TypeError):
        write_json(path, {"x": object()})  # not JSON: nothing is written

    def no_room(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_room)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"]  # the temporary file is gone
