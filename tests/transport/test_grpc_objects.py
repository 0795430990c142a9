"""push_objects / pull_object against a real SuperLink process: dedup, verification, memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from glade import Array, SerdeError
from glade.digest import content_id
from glade.errors import AccessDeniedError, InvalidArgumentError, NotFoundError
from glade.transport.grpc_options import channel
from glade.transport.objects import (
    missing_objects,
    node_metadata,
    pull_object,
    pull_objects,
    push_objects,
)
from glade.transport.v1 import fleet_pb2 as fpb
from glade.transport.v1 import fleet_pb2_grpc

LINK_MAIN = """
import signal, sys, threading
from pathlib import Path
from glade.superlink import SuperLink, SuperLinkConfig
config = SuperLinkConfig(
    control_address="127.0.0.1:0", fleet_address="127.0.0.1:0",
    serverappio_address="127.0.0.1:0", object_dir=Path(sys.argv[1]),
    ready_file=Path(sys.argv[2]))
link = SuperLink(config)
link.start()
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=link.stop).start())
link.wait()
"""


class LinkProcess:
    def __init__(self, tmp: Path) -> None:
        ready = tmp / "ready.json"
        self.objects = tmp / "objects"
        self.proc = subprocess.Popen([sys.executable, "-c", LINK_MAIN, str(self.objects), ready])
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert self.proc.poll() is None, "the SuperLink process died"
            assert time.monotonic() < deadline, "the SuperLink did not become ready"
            time.sleep(0.05)
        self.addresses = json.loads(ready.read_text())

    def memory_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(field)

    def stop(self) -> None:
        self.proc.terminate()
        assert self.proc.wait(timeout=10) == 0


@pytest.fixture(scope="module")
def link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LinkProcess]:
    process = LinkProcess(tmp_path_factory.mktemp("link"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def fleet(link: LinkProcess) -> Iterator[tuple[object, tuple[tuple[str, str], ...]]]:
    with channel(link.addresses["fleet"]) as chan:
        stub = fleet_pb2_grpc.FleetStub(chan)
        node_id = stub.Register(fpb.RegisterRequest(name="t")).node_id
        yield stub, tuple(node_metadata(node_id))


def test_push_uploads_only_what_is_missing_and_pull_verifies(fleet) -> None:
    stub, md = fleet
    a = Array(np.arange(30_000, dtype=np.float64))  # larger than SMALL_OBJECT
    b = b"some bundle bytes"
    objects = {a.digest: a, content_id(b): b}
    assert sorted(push_objects(stub, objects, metadata=md, chunk_size=1000)) == sorted(objects)
    # already there: the large one is not sent again (small ones are, asking costs more)
    assert push_objects(stub, objects, metadata=md) == [content_id(b)]
    assert missing_objects(stub, [*objects, "0" * 64], metadata=md) == ["0" * 64]
    got = pull_objects(stub, objects, metadata=md)
    assert bytes(got[a.digest]) == a.tobytes() and bytes(got[content_id(b)]) == b


def test_a_corrupted_stored_object_fails_verification_on_pull(fleet, link) -> None:
    stub, md = fleet
    data = b"will be tampered with"
    oid = content_id(data)
    push_objects(stub, {oid: data}, metadata=md)
    (link.objects / oid[:2] / oid).write_bytes(b"tampered")
    with pytest.raises(SerdeError, match="does not match"):
        pull_object(stub, oid, metadata=md)


def test_wrong_ids_credentials_and_limits(fleet) -> None:
    stub, md = fleet
    with pytest.raises(NotFoundError):
        pull_object(stub, "0" * 64, metadata=md)
    with pytest.raises(InvalidArgumentError):
        missing_objects(stub, ["not-an-id"], metadata=md)
    with pytest.raises(AccessDeniedError, match="glade-node-id"):
        missing_objects(stub, ["0" * 64])
    with pytest.raises(NotFoundError, match="register"):
        missing_objects(stub, ["0" * 64], metadata=node_metadata(12345))
    # a sender lying about the id: the receiver refuses it and keeps nothing
    with pytest.raises(InvalidArgumentError, match="does not match"):
        push_objects(stub, {"1" * 64: b"not those bytes"}, metadata=md)
    assert missing_objects(stub, ["1" * 64], metadata=md) == ["1" * 64]
    ten = content_id(b"0123456789")
    push_objects(stub, {ten: b"0123456789"}, metadata=md)
    with pytest.raises(SerdeError, match="more than"):
        pull_object(stub, ten, metadata=md, max_size=5)


def test_a_large_object_streams_through_with_bounded_memory(fleet, link) -> None:
    stub, md = fleet
    size = 160 * 1024 * 1024
    data = Array(np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8))
    before = link.memory_kib("VmRSS")
    push_objects(stub, {data.digest: data}, metadata=md)
    after_push = link.memory_kib("VmHWM")
    back = pull_object(stub, data.digest, metadata=md)
    after_pull = link.memory_kib("VmHWM")
    assert back == data.memoryview()
    print(f"SuperLink RSS {before} KiB, peak after push {after_push}, after pull {after_pull}")
    # the SuperLink never holds the object: its peak grows by some chunks and buffers
    # (allocator slack included), well under one copy of the 160 MiB
    assert (after_push - before) < 100 * 1024, (before, after_push)
    assert (after_pull - before) < 100 * 1024, (before, after_pull)


def test_an_unnamed_upload_is_named_by_the_receiver(fleet, link) -> None:
    from glade import ArrayRecord, Message, RecordDict
    from glade.transport.object_wire import ObjectStub
    from glade.transport.objects import push_unnamed, upload_unhashed

    stub, md = fleet
    data = np.random.default_rng(1).standard_normal(50_000)
    object_id = push_unnamed(stub, Array(data), metadata=md, chunk_size=7000)
    assert object_id == content_id(data.tobytes())
    assert missing_objects(stub, [object_id], metadata=md) == []
    assert bytes(pull_object(stub, object_id, metadata=md)) == data.tobytes()
    # the raw-chunk stub, and the arrays of replies: hashed by the receiver, not here
    with channel(link.addresses["fleet"]) as chan:
        raw = ObjectStub(chan, "glade.v1.Fleet")
        big, again, small = Array(data + 1), Array(data + 1), Array(np.arange(10.0))
        content = RecordDict({"arrays": ArrayRecord({"w": big, "v": again, "b": small})})
        uploaded = upload_unhashed(raw, [Message(content, dst_node_id=1)], metadata=md)
    expected = content_id((data + 1).tobytes())
    assert uploaded == [expected, expected]  # two Arrays, the same bytes: stored once
    assert big._digest == again._digest == expected and small._digest is None
    assert (link.objects / expected[:2] / expected).read_bytes() == (data + 1).tobytes()
