"""The ServerAppIO API servicer: what a run's ServerApp process may do, with its token.

Every request carries the run id and the run's secret token (in the request, or as
``glade-run-id`` / ``glade-run-token`` metadata on object calls). A wrong token is
PERMISSION_DENIED; a run that is not running is FAILED_PRECONDITION.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from glade.errors import InvalidArgumentError
from glade.superlink.convert import event_from_proto, run_to_proto
from glade.superlink.delivery import Delivery
from glade.superlink.garbage import GarbageCollector
from glade.superlink.rpc import (
    MAX_IDS_PER_REQUEST,
    ObjectRpcs,
    check_id,
    metadata_id,
    metadata_value,
)
from glade.superlink.runs import RunManager
from glade.superlink.state import RunInfo, State
from glade.transport.objects import RUN_ID_KEY, RUN_TOKEN_KEY
from glade.transport.v1 import message_pb2 as pb
from glade.transport.v1 import run_pb2, serverappio_pb2_grpc
from glade.transport.v1 import serverappio_pb2 as spb

__all__ = ["ServerAppIoServicer"]

_MAX_EVENTS = 1000


class ServerAppIoServicer(serverappio_pb2_grpc.ServerAppIoServicer):
    """Implements ``glade.v1.ServerAppIo`` (see the module docstring)."""

    def __init__(
        self,
        *,
        state: State,
        runs: RunManager,
        delivery: Delivery,
        objects: ObjectRpcs,
        garbage: GarbageCollector,
    ) -> None:
        self._state = state
        self._runs = runs
        self._delivery = delivery
        self._objects = objects
        self._garbage = garbage

    def _run(self, run_id: int, token: str) -> RunInfo:
        return self._runs.authorize(check_id(run_id, "run"), token)

    def _metadata_run(self, context: grpc.ServicerContext) -> RunInfo:
        run_id = metadata_id(context, RUN_ID_KEY, "run")
        return self._runs.authorize(run_id, metadata_value(context, RUN_TOKEN_KEY))

    def GetRunInfo(self, request: spb.RunTokenRequest, context: object) -> spb.GetRunInfoResponse:
        return spb.GetRunInfoResponse(run=run_to_proto(self._run(request.run_id, request.token)))

    def GetNodes(self, request: spb.RunTokenRequest, context: object) -> spb.GetNodesResponse:
        self._run(request.run_id, request.token)
        return spb.GetNodesResponse(
            node_ids=[n.node_id for n in self._state.list_nodes() if n.online]
        )

    def PushMessages(
        self, request: spb.ServerPushRequest, context: object
    ) -> spb.ServerPushResponse:
        run = self._run(request.run_id, request.token)
        ids = self._delivery.push_instructions(
            run.run_id, list(request.messages), list(request.inline_objects)
        )
        self._garbage.release(("run", run.run_id))
        return spb.ServerPushResponse(message_ids=ids)

    def PullMessages(self, request: spb.ServerPullRequest, context: object) -> run_pb2.MessageBatch:
        run = self._run(request.run_id, request.token)
        if len(request.message_ids) > MAX_IDS_PER_REQUEST:
            raise InvalidArgumentError(f"at most {MAX_IDS_PER_REQUEST} message ids per request")
        # Replies returned by earlier pulls have been fetched by now: let their objects go.
        if self._delivery.release_taken(run.run_id):
            self._garbage.mark_dirty()
        replies = self._delivery.pull_replies(
            run.run_id, list(request.message_ids), wait_s=request.wait_s
        )
        return self._delivery.batch(replies)

    def ReportEvent(
        self, request: spb.ReportEventRequest, context: object
    ) -> spb.ReportEventResponse:
        run = self._run(request.run_id, request.token)
        if len(request.more_events) > _MAX_EVENTS:
            raise InvalidArgumentError(f"at most {_MAX_EVENTS} events per ReportEvent request")
        events = [event_from_proto(e) for e in (request.event, *request.more_events)]
        self._runs.report(run.run_id, events)  # all checked first: a bad one reports none
        return spb.ReportEventResponse()

    def PullObject(
        self, request: run_pb2.PullObjectRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        self._metadata_run(context)
        return self._objects.pull(request)

    def PushObject(
        self, request_iterator: Iterator[pb.ObjectChunk], context: grpc.ServicerContext
    ) -> run_pb2.PushObjectResponse:
        run = self._metadata_run(context)
        return self._objects.push(request_iterator, ("run", run.run_id))

    def HasObjects(
        self, request: run_pb2.HasObjectsRequest, context: grpc.ServicerContext
    ) -> run_pb2.HasObjectsResponse:
        run = self._metadata_run(context)
        return self._objects.has(request, ("run", run.run_id))
