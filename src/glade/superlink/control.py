"""The Control API servicer: users upload bundles, start, list and stop runs, read logs.

StartRun refers to a bundle uploaded before (PushObject/HasObjects); an unknown bundle is
NOT_FOUND, a bad one INVALID_ARGUMENT with the reason. StreamLogs sends the log from an
offset and, with ``follow``, keeps streaming until the run finishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc

from glade.errors import NotFoundError
from glade.superlink.bundles import read_app_bundle
from glade.superlink.convert import node_to_proto, run_to_proto, user_config
from glade.superlink.notify import Notifier
from glade.superlink.object_store import check_object_id
from glade.superlink.rpc import ObjectRpcs, check_id
from glade.superlink.runs import RunManager, log_topic
from glade.superlink.state import State
from glade.transport.v1 import control_pb2 as cpb
from glade.transport.v1 import control_pb2_grpc, run_pb2
from glade.transport.v1 import message_pb2 as pb

__all__ = ["ControlServicer"]


def _uploader(context: grpc.ServicerContext) -> tuple[str, str]:
    """Who pins uploaded bundles: the user's connection (until user accounts exist)."""
    return ("control", context.peer())


_LOG_PIECE = 256 * 1024
_FOLLOW_RECHECK_S = 1.0


class ControlServicer(control_pb2_grpc.ControlServicer):
    """Implements ``glade.v1.Control`` (see the module docstring)."""

    def __init__(
        self,
        *,
        state: State,
        runs: RunManager,
        objects: ObjectRpcs,
        notifier: Notifier,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._runs = runs
        self._objects = objects
        self._notifier = notifier
        self._clock = clock

    def PushObject(
        self, request_iterator: Iterator[pb.ObjectChunk], context: grpc.ServicerContext
    ) -> run_pb2.PushObjectResponse:
        return self._objects.push(request_iterator, _uploader(context))

    def HasObjects(
        self, request: run_pb2.HasObjectsRequest, context: grpc.ServicerContext
    ) -> run_pb2.HasObjectsResponse:
        return self._objects.has(request, _uploader(context))

    def StartRun(
        self, request: cpb.StartRunRequest, context: grpc.ServicerContext
    ) -> cpb.StartRunResponse:
        bundle_id = check_object_id(request.bundle_id)
        store = self._objects.store
        if not store.has(bundle_id):
            raise NotFoundError(
                f"unknown bundle {bundle_id}: upload it first (HasObjects + PushObject)"
            )
        run_config = user_config(request.run_config, where="run_config")
        options = user_config(request.federation_options, where="federation_options")
        bundle = read_app_bundle(store.path(bundle_id), bundle_id=bundle_id)
        run_id = self._runs.submit(bundle, run_config=run_config, federation_options=options)
        self._objects.garbage.release(_uploader(context))  # the run refers to the bundle now
        return cpb.StartRunResponse(run_id=run_id)

    def ListRuns(self, request: cpb.ListRunsRequest, context: object) -> cpb.ListRunsResponse:
        if request.run_id:
            run = self._state.get_run(check_id(request.run_id, "run id"))
            if run is None:
                raise NotFoundError(f"unknown run id {request.run_id}")
            runs = [run]
        else:
            runs = self._state.list_runs()
        return cpb.ListRunsResponse(runs=[run_to_proto(r) for r in runs], now=self._clock())

    def StopRun(self, request: cpb.StopRunRequest, context: object) -> cpb.StopRunResponse:
        return cpb.StopRunResponse(stopped=self._runs.stop(check_id(request.run_id, "run id")))

    def StreamLogs(
        self, request: cpb.StreamLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[run_pb2.LogChunk]:
        run_id = check_id(request.run_id, "run id")
        if self._state.get_run(run_id) is None:
            raise NotFoundError(f"unknown run id {request.run_id}")
        return self._stream_logs(run_id, request.offset, request.follow, context)

    def _stream_logs(
        self, run_id: int, offset: int, follow: bool, context: grpc.ServicerContext
    ) -> Iterator[run_pb2.LogChunk]:
        topic = log_topic(run_id)
        while True:
            version = self._notifier.version(topic)
            run = self._state.get_run(run_id)
            finished = run is None or run.finished
            text, end = self._state.read_log(run_id, offset=offset, limit=_LOG_PIECE)
            if end > offset:
                yield run_pb2.LogChunk(run_id=run_id, offset=offset, text=text)
                offset = end
                continue
            if finished or not follow or self._notifier.closed or not context.is_active():
                return
            self._notifier.wait(topic, version, timeout=_FOLLOW_RECHECK_S)

    def ListNodes(self, request: cpb.ListNodesRequest, context: object) -> cpb.ListNodesResponse:
        nodes = [node_to_proto(n) for n in self._state.list_nodes()]
        return cpb.ListNodesResponse(nodes=nodes, now=self._clock())
