"""`ServerAppIoGrid`: the Grid of a ServerApp process, over the SuperLink's ServerAppIO API.

- push: encode the messages, upload the arrays the SuperLink lacks (HasObjects, then one
  PushObject stream per missing object; a broadcast model is uploaded once), then
  PushMessages.
- pull: long-poll PullMessages (the SuperLink answers as soon as a reply arrives), then
  download each reply's arrays (verified by hash) and decode.
- on the SuperLink's machine (``object_dir`` given: the SuperLink started this process),
  arrays skip the network: missing ones are written straight into the object store after
  HasObjects has pinned their ids, and replies' arrays are memory-mapped from it (the
  SuperLink verified them when the nodes uploaded them). This halves the bytes a round
  moves through gRPC and keeps reply arrays out of the process's private memory. Large
  arrays not hashed yet are hashed while, in another thread, they are already written to
  temporary files of the store (renamed into place once HasObjects has pinned them).
- report: keep the run's :class:`~glade.server.History` and send each event (ReportEvent)
  from a thread of its own, in order (:class:`~glade.superlink.reporter.EventReporter`):
  a round never waits for a report; :meth:`ServerAppIoGrid.close` waits until all are sent.
- push checks the destinations against the node list fetched for the strategy just before
  (within :data:`_NODES_FRESH_S`), not a second GetNodes: the SuperLink checks them again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from glade.array import Array
from glade.message import Message
from glade.server.events import History, RunEvent
from glade.server.grid import BaseGrid
from glade.superlink.convert import event_to_proto, run_from_proto
from glade.superlink.object_store import (
    commit_temp,
    map_object,
    object_path,
    write_object,
    write_temp,
)
from glade.superlink.reporter import EventReporter
from glade.superlink.state import RunInfo
from glade.transport.chunks import DEFAULT_CHUNK_SIZE, DEFAULT_MAX_OBJECT_SIZE
from glade.transport.codec import message_from_proto, message_to_proto
from glade.transport.object_wire import ObjectStub
from glade.transport.objects import (
    SMALL_OBJECT,
    inline_objects,
    missing_objects,
    object_infos,
    pull_object,
    push_object,
    run_metadata,
    split_inline,
)
from glade.transport.status import error_from_rpc
from glade.transport.v1 import run_pb2, serverappio_pb2_grpc
from glade.transport.v1 import serverappio_pb2 as spb

__all__ = ["ServerAppIoGrid"]

logger = logging.getLogger(__name__)

_MAX_WAIT_S = 30.0  # per long-poll call; pull_messages loops up to its timeout
_PUSH_BATCH = 256
_FETCH_THREADS = 4
_SPILL_BYTES = 1024 * 1024  # smaller arrays stay in memory (a map costs a file handle)
_NODES_FRESH_S = 1.0  # a node list this recent vouches for a push's destinations
_CLOSE_FLUSH_S = 30.0  # close() waits this long for the reports not sent yet
_REPORT_LINGER_S = 0.005  # a report waits this long for the next (end of round + start)


class ServerAppIoGrid(BaseGrid):
    """A Grid backed by a SuperLink (see the module docstring); call :meth:`close` at the end."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        run_id: int,
        token: str,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_object_size: int = DEFAULT_MAX_OBJECT_SIZE,
        on_event: Callable[[RunEvent], None] | None = None,
        object_dir: Path | None = None,
    ) -> None:
        super().__init__(run_id=run_id)
        self._object_dir = object_dir
        self._stub = serverappio_pb2_grpc.ServerAppIoStub(channel)  # type: ignore[no-untyped-call]
        self._objects = ObjectStub(channel, "glade.v1.ServerAppIo")
        self._token = token
        self._metadata = run_metadata(run_id, token)
        self._chunk_size = chunk_size
        self._max_object_size = max_object_size
        self._on_event = on_event
        self._pool: ThreadPoolExecutor | None = None
        self.history = History()
        self._reporter: EventReporter[run_pb2.RunEvent] = EventReporter(
            self._send_events, linger_s=_REPORT_LINGER_S, name="glade-report"
        )
        self._nodes_seen: tuple[float, frozenset[int]] = (float("-inf"), frozenset())

    def _call(self, method: str, request: Any, *, timeout: float | None = 60.0) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, peer="(SuperLink ServerAppIO)") from exc

    def _token_request(self) -> spb.RunTokenRequest:
        return spb.RunTokenRequest(run_id=self.run_id, token=self._token)

    def run_info(self) -> RunInfo:
        """The run as the SuperLink knows it (run config, bundle, app identity)."""
        return run_from_proto(self._call("GetRunInfo", self._token_request()).run)

    def get_node_ids(self) -> list[int]:
        node_ids = list(self._call("GetNodes", self._token_request()).node_ids)
        self._nodes_seen = (time.monotonic(), frozenset(node_ids))
        return node_ids

    def _known_nodes(self, wanted: set[int]) -> set[int]:
        seen_at, seen = self._nodes_seen
        if time.monotonic() - seen_at < _NODES_FRESH_S and wanted <= seen:
            return set(seen)
        return super()._known_nodes(wanted)

    def _push(self, messages: list[Message]) -> None:
        staged = self._stage(messages) if self._object_dir is not None else {}
        try:
            self._push_staged(messages, staged)
        finally:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)

    def _push_staged(self, messages: list[Message], staged: dict[str, Path]) -> None:
        protos = []
        objects: dict[str, Array] = {}
        for message in messages:
            proto, arrays = message_to_proto(message)
            protos.append(proto)
            objects.update(arrays)
        inline, large = split_inline(objects)
        missing = missing_objects(self._objects, large, metadata=self._metadata)
        for object_id in missing:
            if self._object_dir is not None:
                tmp = staged.pop(object_id, None)
                if tmp is not None:
                    commit_temp(self._object_dir, object_id, tmp)
                else:
                    write_object(self._object_dir, object_id, objects[object_id].memoryview())
            else:
                push_object(
                    self._objects,
                    object_id,
                    objects[object_id],
                    metadata=self._metadata,
                    chunk_size=self._chunk_size,
                )
        if self._object_dir is not None:
            self._spill(large, objects)
        infos = object_infos(objects)
        for i in range(0, len(protos), _PUSH_BATCH):
            request = spb.ServerPushRequest(
                run_id=self.run_id,
                token=self._token,
                messages=protos[i : i + _PUSH_BATCH],
                objects=infos if i == 0 else [],
                inline_objects=inline if i == 0 else [],
            )
            self._call("PushMessages", request)

    def _spill(self, object_ids: Iterable[str], objects: dict[str, Array]) -> None:
        """Point each large Array just stored at a read-only memory map of its stored file.

        The ServerApp then holds the model it sent as page cache the kernel may drop (and
        re-read), not as private memory: once the app lets go of its own NumPy array (the
        Array wrapped it without a copy), a round needs about one private copy of the
        model (the aggregate being built) instead of two. Stored files are never changed in
        place, and a map stays valid after the store deletes its file."""
        assert self._object_dir is not None
        for object_id in object_ids:
            array = objects[object_id]
            if array.nbytes < _SPILL_BYTES:
                continue
            try:
                array._rebind(map_object(object_path(self._object_dir, object_id)))
            except (OSError, ValueError) as exc:  # e.g. collected meanwhile: keep the memory
                logger.debug("object %s stays in memory: %s", object_id[:12], exc)

    def _stage(self, messages: list[Message]) -> dict[str, Path]:
        """Hash the large arrays not hashed yet while writing them to temporary files of the
        store, in parallel (each takes about as long); returns object id -> temporary file."""
        assert self._object_dir is not None
        fresh: dict[int, Array] = {}
        for message in messages:
            for record in message.content.array_records.values() if message.content else ():
                for array in record.values():
                    if array.nbytes > SMALL_OBJECT and array._digest is None:
                        fresh.setdefault(id(array), array)
        if not fresh:
            return {}
        pool = self._executor()
        root = self._object_dir
        jobs = [
            (pool.submit(_hash, array), pool.submit(write_temp, root, array.memoryview()))
            for array in fresh.values()
        ]
        staged: dict[str, Path] = {}
        failure: BaseException | None = None
        for hashed, written in jobs:  # wait for every job, whatever fails
            try:
                tmp = written.result()
            except BaseException as exc:
                failure = failure or exc
                continue
            try:
                object_id = hashed.result()
            except BaseException as exc:
                failure = failure or exc
                object_id = ""
            if not object_id or object_id in staged:  # failed, or the same bytes twice
                tmp.unlink(missing_ok=True)
            else:
                staged[object_id] = tmp
        if failure is not None:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)
            raise failure
        return staged

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_FETCH_THREADS, thread_name_prefix="glade-io")
        return self._pool

    def pull_messages(self, message_ids: Iterable[str], *, timeout: float = 0.0) -> list[Message]:
        ids = list(message_ids)
        if not ids:
            return []
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            wait = min(max(deadline - time.monotonic(), 0.0), _MAX_WAIT_S)
            request = spb.ServerPullRequest(
                run_id=self.run_id, token=self._token, message_ids=ids, wait_s=wait
            )
            batch = self._call("PullMessages", request, timeout=wait + 60.0)
            if batch.messages or time.monotonic() >= deadline:
                break
        objects: dict[str, memoryview] = inline_objects(batch.inline_objects)
        objects.update(
            self._fetch([o.object_id for o in batch.objects if o.object_id not in objects])
        )
        return [message_from_proto(proto, objects) for proto in batch.messages]

    def _fetch(self, object_ids: list[str]) -> dict[str, memoryview]:
        found: dict[str, memoryview] = {}
        if self._object_dir is not None:
            for object_id in object_ids:
                with contextlib.suppress(FileNotFoundError):
                    found[object_id] = map_object(object_path(self._object_dir, object_id))
        remote = [oid for oid in object_ids if oid not in found]

        def one(object_id: str) -> memoryview:
            return pull_object(
                self._objects,
                object_id,
                metadata=self._metadata,
                max_size=self._max_object_size,
            )

        if len(remote) <= 1:
            found.update((oid, one(oid)) for oid in remote)
        else:
            found.update(zip(remote, self._executor().map(one, remote), strict=True))
        return found

    def report(self, event: RunEvent) -> None:
        self.history.add(event)
        try:
            proto = event_to_proto(event)
        except (TypeError, ValueError) as exc:  # metrics a MetricRecord cannot hold
            logger.warning("run event %r not reported: %s", event.kind, exc)
            return
        self._reporter.send(proto)  # raises if an earlier report could not be sent
        if self._on_event is not None:
            self._on_event(event)

    def _send_events(self, events: list[run_pb2.RunEvent]) -> None:
        request = spb.ReportEventRequest(
            run_id=self.run_id, token=self._token, event=events[0], more_events=events[1:]
        )
        self._call("ReportEvent", request)

    def flush_reports(self, timeout: float | None = None) -> None:
        """Wait until the SuperLink has every event reported so far (raises if one failed)."""
        self._reporter.flush(timeout)

    def close(self) -> None:
        try:
            self._reporter.close(_CLOSE_FLUSH_S)
        except Exception as exc:  # never mask what ended the ServerApp
            logger.warning("run events not reported to the SuperLink: %s", exc)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _hash(array: Array) -> str:
    return array.digest  # cached on the Array (BLAKE3 lets go of the GIL meanwhile)
