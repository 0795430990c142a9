"""Workers that upload their large reply arrays themselves (a SuperNode's ClientApp process):
the parent gets StoredArray stand-ins, asks for tickets on the workers' behalf, and takes
the arrays back whenever an upload cannot happen."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from sim_apps import BrokenUploader, FolderUploader
from sim_harness import StartBackend

from glade import Array, ArrayRecord, Message, RecordDict, keys
from glade.array import StoredArray
from glade.digest import content_id
from glade.simulation.wire import dump_each, load_each


def _model() -> RecordDict:
    values = np.linspace(0, 1, 200_000, dtype=np.float32)  # 800 kB: uploaded
    return RecordDict({keys.ARRAYS: ArrayRecord({"w": values, "b": np.arange(4.0)})})


def _start(
    start_backend: StartBackend, folder: Path, answer: str | None
) -> tuple[object, list[int]]:
    asked: list[int] = []

    def ticket(size: int) -> str | None:
        asked.append(size)
        return answer

    harness = start_backend(nodes=1, uploader=FolderUploader(str(folder)), upload_ticket=ticket)
    return harness, asked


def test_a_worker_uploads_large_reply_arrays_and_the_parent_gets_their_ids(
    start_backend: StartBackend, tmp_path: Path
) -> None:
    harness, asked = _start(start_backend, tmp_path, "go")
    expected = np.linspace(0, 1, 200_000, dtype=np.float32) + 1
    for _ in range(2):
        [reply] = harness.to_all("train", _model()).values()  # type: ignore[attr-defined]
        w = reply.content[keys.ARRAYS]["w"]
        assert isinstance(w, StoredArray)
        assert (w.dtype, w.shape, w.nbytes) == ("float32", (200_000,), expected.nbytes)
        assert w.digest == content_id(memoryview(expected).cast("B"))
        assert (tmp_path / w.digest).read_bytes() == expected.tobytes()
        b = reply.content[keys.ARRAYS]["b"]  # small: with the reply, as always
        assert not isinstance(b, StoredArray) and list(b.numpy()) == [1.0, 2.0, 3.0, 4.0]
    assert asked == [expected.nbytes, expected.nbytes]  # a ticket per upload


def test_without_a_ticket_the_reply_arrays_come_to_the_parent(
    start_backend: StartBackend, tmp_path: Path
) -> None:
    harness, asked = _start(start_backend, tmp_path, None)
    [reply] = harness.to_all("train", _model()).values()  # type: ignore[attr-defined]
    w = reply.content[keys.ARRAYS]["w"]
    assert not isinstance(w, StoredArray)
    assert np.array_equal(w.numpy(), np.linspace(0, 1, 200_000, dtype=np.float32) + 1)
    assert len(asked) == 1 and list(tmp_path.iterdir()) == []


def test_a_failed_upload_falls_back_and_pauses_uploads(
    start_backend: StartBackend, tmp_path: Path
) -> None:
    harness, asked = _start(start_backend, tmp_path, "broken")
    for _ in range(2):
        [reply] = harness.to_all("train", _model()).values()  # type: ignore[attr-defined]
        w = reply.content[keys.ARRAYS]["w"]
        assert not isinstance(w, StoredArray)
        assert np.array_equal(w.numpy(), np.linspace(0, 1, 200_000, dtype=np.float32) + 1)
    assert len(asked) == 1  # the second reply did not try again (paused)


def test_an_uploader_that_cannot_start_leaves_the_replies_to_the_parent(
    start_backend: StartBackend, tmp_path: Path
) -> None:
    asked: list[int] = []
    harness = start_backend(
        nodes=1,
        uploader=BrokenUploader(str(tmp_path)),
        upload_ticket=lambda size: asked.append(size) or "go",
    )
    [reply] = harness.to_all("train", _model()).values()  # type: ignore[attr-defined]
    w = reply.content[keys.ARRAYS]["w"]
    assert not isinstance(w, StoredArray)
    assert np.array_equal(w.numpy(), np.linspace(0, 1, 200_000, dtype=np.float32) + 1)
    assert asked == []  # the ClientApp still loaded and ran; no upload was tried


def test_uploaded_arrays_pickle_as_stored_arrays_and_the_originals_stay_as_they_were() -> None:
    big, small = Array(np.arange(10_000.0)), Array(np.arange(3.0))
    reply = Message.reply(
        Message(RecordDict(), dst_node_id=3, message_type="train"),
        RecordDict({keys.ARRAYS: ArrayRecord({"big": big, "small": small})}),
    )
    out, entries = dump_each(
        [reply], threshold=1 << 30, store=lambda b: ("", [], 0), stored={id(big): "ab" * 32}
    )
    assert big._digest is None  # the ClientApp's own Array is not touched
    [got] = load_each(out.getbuffer(), entries, lambda path, size: memoryview(b""))
    stand_in = got.content[keys.ARRAYS]["big"]
    assert isinstance(stand_in, StoredArray) and stand_in.digest == "ab" * 32
    assert (stand_in.dtype, stand_in.shape) == ("float64", (10_000,))
    assert len(out.getbuffer()) < 10_000  # its bytes were not pickled
    assert np.array_equal(got.content[keys.ARRAYS]["small"].numpy(), [0.0, 1.0, 2.0])


def test_a_stored_array_knows_its_metadata_and_refuses_to_hand_out_bytes() -> None:
    values = np.arange(12, dtype=np.int32).reshape(3, 4)
    real = Array(values)
    stored = StoredArray("int32", (3, 4), real.digest)
    assert (stored.dtype, stored.shape, stored.nbytes, stored.size) == ("int32", (3, 4), 48, 12)
    assert stored == real and real == stored
    assert stored != Array(values + 1)
    for access in (stored.numpy, stored.memoryview, stored.tobytes, np.asarray):
        with pytest.raises(Exception, match="stored by the process that made it") as info:
            access(stored) if access is np.asarray else access()  # type: ignore[operator]
        assert type(info.value).__name__ == "NotFoundError"
    again = pickle.loads(pickle.dumps(stored))
    assert isinstance(again, StoredArray) and again.digest == real.digest
    assert again.shape == (3, 4)
