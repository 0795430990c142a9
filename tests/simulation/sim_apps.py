"""ClientApps for the simulation tests. Worker processes import this module by reference
(``ClientAppSpec(ref="sim_apps:app", app_dir=HERE)``), so it must stay importable on its own."""

from __future__ import annotations

import os
import time
from typing import Any

from glade import ArrayRecord, ClientApp, Message, MetricRecord, RecordDict, keys

app = ClientApp()


@app.train()
def train(msg: Message, context: Any) -> RecordDict:
    """Add 1 to every array; count the calls in the node's persistent state."""
    assert msg.content is not None
    arrays = msg.content[keys.ARRAYS]
    out = ArrayRecord({name: a.numpy() + 1 for name, a in arrays.items()})
    seen = context.state.get("seen")
    calls = (seen["calls"] if seen is not None else 0) + 1
    context.state["seen"] = MetricRecord({"calls": calls})
    metrics = MetricRecord(
        {
            keys.NUM_EXAMPLES: 10,
            "calls": calls,
            "partition-id": context.node_config["partition-id"],
            "num-partitions": context.node_config["num-partitions"],
        }
    )
    return RecordDict({keys.ARRAYS: out, keys.METRICS: metrics})


@app.query()
def echo(msg: Message, context: Any) -> RecordDict:
    """Return the content unchanged (array round trips)."""
    assert msg.content is not None
    return msg.content


@app.query("pid")
def pid(msg: Message, context: Any) -> RecordDict:
    return RecordDict({keys.METRICS: MetricRecord({"pid": os.getpid()})})


@app.query("raise")
def boom(msg: Message, context: Any) -> RecordDict:
    raise ValueError("boom from the client")


@app.query("crash")
def crash(msg: Message, context: Any) -> RecordDict:
    os._exit(3)


@app.query("slow")
def slow(msg: Message, context: Any) -> RecordDict:
    time.sleep(1.0)
    return RecordDict()


@app.query("hang")
def hang(msg: Message, context: Any) -> RecordDict:
    time.sleep(60)
    return RecordDict()


class FolderUploader:
    """A ReplyUploader for the tests: "uploads" to files named by their content id.

    ``ticket(size)`` answers (from the parent): None (nothing now), "broken" (the upload
    fails with OSError), or anything else (it goes ahead)."""

    def __init__(self, folder: str, min_bytes: int = 64 * 1024) -> None:
        self.folder = folder
        self._min_bytes = min_bytes

    @property
    def min_bytes(self) -> int:
        return self._min_bytes

    def connect(self, ticket: Any) -> Any:
        from pathlib import Path

        from glade.digest import content_id

        def push(node_id: int, data: memoryview) -> str | None:
            answer = ticket(data.nbytes)
            if answer is None:
                return None
            if answer == "broken":
                raise OSError("the upload port cannot be reached")
            object_id = content_id(data)
            Path(self.folder, object_id).write_bytes(data)
            return object_id

        return push


class BrokenUploader(FolderUploader):
    """A ReplyUploader that cannot start (as with unreadable TLS files)."""

    def connect(self, ticket: Any) -> Any:
        raise OSError("cannot read the certificate files")
