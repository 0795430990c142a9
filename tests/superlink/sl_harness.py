"""Helpers of the SuperLink tests: app bundles, the Control API as a user drives it, and a
tiny fake SuperNode.

The real SuperNode lives elsewhere; :class:`FakeNode` drives the Fleet API directly so the
tests control exactly what a node does (reply, crash, go silent, reply twice).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from glade_testing import app_files, superlink_config, wait_for

from glade import ArrayRecord, Message, MetricRecord, RecordDict
from glade.digest import content_id
from glade.superlink import SuperLinkConfig
from glade.transport.codec import message_from_proto, message_to_proto
from glade.transport.grpc_options import channel
from glade.transport.object_wire import ObjectStub
from glade.transport.objects import node_metadata, push_objects, receive_objects, send_objects
from glade.transport.v1 import control_pb2 as cpb
from glade.transport.v1 import control_pb2_grpc, fleet_pb2_grpc, run_pb2
from glade.transport.v1 import fleet_pb2 as fpb

# A ServerApp steered by its run config: "mode" = echo (rounds of train messages to
# min-nodes nodes, printing what came back), crash, hang, or exit.
SERVER_APP = """
import sys
import time

import numpy as np

from glade import ArrayRecord, ConfigRecord, Message, RecordDict, RunEvent, ServerApp
from glade.server.loop import wait_for_nodes

app = ServerApp()


@app.main()
def main(grid, context):
    cfg = context.run_config
    mode = cfg.get("mode", "echo")
    print(f"mode={mode}", flush=True)
    if mode == "crash":
        raise RuntimeError("boom on purpose")
    if mode == "hang":
        time.sleep(3600)
    if mode == "exit":
        sys.exit(int(cfg.get("code", 0)))
    nodes = wait_for_nodes(grid, int(cfg.get("min-nodes", 1)), timeout=30)
    size = int(cfg.get("size", 10))
    arrays = ArrayRecord({"w": np.arange(size, dtype=np.float32)})
    for rnd in range(1, int(cfg.get("rounds", 1)) + 1):
        content = RecordDict({"arrays": arrays, "config": ConfigRecord({"round": rnd})})
        msgs = [
            Message(content, dst_node_id=n, message_type="train", group_id=str(rnd))
            for n in nodes
        ]
        replies = grid.send_and_receive(msgs, timeout=float(cfg.get("timeout", 30)))
        ok = [r for r in replies if r.has_content]
        errors = sorted(r.error.code for r in replies if r.has_error)
        total = sum(float(r.content["metrics"]["value"]) for r in ok)
        grid.report(
            RunEvent(
                kind="stage-finished",
                stage="train",
                server_round=rnd,
                metrics={"total": total},
                num_replies=len(ok),
                num_failures=len(msgs) - len(ok),
            )
        )
        print(f"round {rnd}: replies={len(ok)} errors={errors} total={total}", flush=True)
"""

CLIENT_APP = "from glade import ClientApp\napp = ClientApp()\n"


def make_bundle(files: dict[str, str | bytes], *, manifest: dict[str, Any] | None = None) -> bytes:
    """A bundle zip of ``files`` plus a manifest listing their hashes (or ``manifest``)."""
    blobs = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    if manifest is None:
        manifest = {
            "publisher": "tests",
            "name": "echo",
            "version": "1.2.3",
            "files": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(blobs.items())},
        }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in sorted(blobs.items()):
            zf.writestr(name, data)
        zf.writestr("glade-manifest.json", json.dumps(manifest))
    return out.getvalue()


def echo_app(server_code: str = SERVER_APP, *, package: str = "echo_app") -> dict[str, str | bytes]:
    """The files of an app with ``server_code`` as its ServerApp and an empty ClientApp."""
    files = app_files(
        package,
        server=server_code,
        client=CLIENT_APP,
        config={"mode": "echo", "rounds": 1},
        name=package.replace("_", "-"),
        version="1.2.3",
    )
    return dict(files)


def link_config(tmp_path: Path, **options: Any) -> SuperLinkConfig:
    """A test SuperLink config with its object store under ``tmp_path``."""
    return superlink_config(**{"object_dir": tmp_path / "objects", **options})


class Control:
    """The Control API as a user would drive it."""

    def __init__(self, address: str) -> None:
        self.channel = channel(address)
        self.stub = control_pb2_grpc.ControlStub(self.channel)

    def upload(self, bundle: bytes) -> str:
        bundle_id = content_id(bundle)
        push_objects(self.stub, {bundle_id: bundle})
        return bundle_id

    def start(self, bundle: bytes, **run_config: Any) -> int:
        request = cpb.StartRunRequest(bundle_id=self.upload(bundle))
        for key, value in run_config.items():
            entry = request.run_config.entries.add(key=key)
            kind = {bool: "bool", int: "sint64", float: "double", str: "string"}[type(value)]
            setattr(entry.value, kind, value)
        return int(self.stub.StartRun(request).run_id)

    def run(self, run_id: int) -> run_pb2.Run:
        return self.stub.ListRuns(cpb.ListRunsRequest(run_id=run_id)).runs[0]

    def wait(self, run_id: int, *, timeout: float = 30.0) -> run_pb2.Run:
        """The run once it has finished (fails after ``timeout`` seconds)."""
        run = self.wait_status(run_id, run_pb2.RUN_STATUS_FINISHED, timeout=timeout)
        return run

    def wait_status(self, run_id: int, status: int, *, timeout: float = 20.0) -> run_pb2.Run:
        """The run once it has ``status`` (fails after ``timeout`` seconds)."""
        if not wait_for(lambda: self.run(run_id).status == status, timeout):
            raise AssertionError(f"run {run_id} is not in status {status}: {self.run(run_id)}")
        return self.run(run_id)

    def log(self, run_id: int) -> str:
        chunks = self.stub.StreamLogs(cpb.StreamLogsRequest(run_id=run_id), timeout=10)
        return "".join(c.text for c in chunks)

    def close(self) -> None:
        self.channel.close()


def echo_handler(message: Message) -> Message:
    """Reply with the arrays doubled and their sum as the metric ``value``."""
    w = message.content["arrays"]["w"].numpy()
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": w * 2}),
            "metrics": MetricRecord({"value": float(np.sum(w))}),
        }
    )
    return Message.reply(message, content)


class FakeNode:
    """A minimal SuperNode: register, pull (long-poll), fetch objects, reply."""

    def __init__(
        self,
        fleet_address: str,
        *,
        handler: Callable[[Message], Message | None] = echo_handler,
        node_id: int = 0,
    ) -> None:
        self.channel = channel(fleet_address)
        self.stub = fleet_pb2_grpc.FleetStub(self.channel)
        self.objects = ObjectStub(self.channel, "glade.v1.Fleet")
        response = self.stub.Register(fpb.RegisterRequest(node_id=node_id, name="fake"))
        self.node_id = int(response.node_id)
        self.metadata = node_metadata(self.node_id)
        self.handler = handler
        self.handled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pull(self, wait_s: float = 5.0) -> list[Message]:
        request = fpb.PullMessagesRequest(node_id=self.node_id, wait_s=wait_s, max_messages=10)
        batch = self.stub.PullMessages(request, timeout=wait_s + 10)
        objects = receive_objects(self.objects, batch, metadata=self.metadata)
        return [message_from_proto(p, objects) for p in batch.messages]

    def push(self, replies: list[Message]) -> list[str]:
        protos, objects = [], {}
        for reply in replies:
            proto, arrays = message_to_proto(reply)
            protos.append(proto)
            objects.update(arrays)
        inline = send_objects(self.objects, objects, metadata=self.metadata)
        request = fpb.PushMessagesRequest(
            node_id=self.node_id, messages=protos, inline_objects=inline
        )
        return list(self.stub.PushMessages(request, timeout=10).accepted_message_ids)

    def serve(self) -> FakeNode:
        """Answer instructions with ``handler`` in a thread (None: no reply) until close()."""
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(0.3):
            with contextlib.suppress(grpc.RpcError):
                self.stub.Heartbeat(fpb.HeartbeatRequest(node_id=self.node_id), timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for message in self.pull(wait_s=0.5):
                    reply = self.handler(message)
                    self.handled += 1
                    if reply is not None:
                        self.push([reply])
            except Exception:  # the SuperLink went away: the test decides what that means
                if self._stop.wait(0.1):
                    return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._beat.join(timeout=5)
        self.channel.close()
