"""The Fleet API servicer: SuperNodes register, heartbeat, pull instructions, push replies.

Every request names its node (``node_id`` in the request, or ``glade-node-id`` metadata on
object calls); an unknown node is answered NOT_FOUND, so a node whose SuperLink forgot it
knows to register again. Each request counts as a sign of life, as does a pull in progress.

With node authentication on (``node_auth=True``; the requests are then checked by
:class:`~glade.superlink.node_auth.NodeAuth` before they get here), a node's id belongs to
its key: Register answers the id bound to the key, binding a new one at the key's first
registration, whatever id the request asks for. The same key after a restart is the same
node.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from glade.errors import AuthenticationError, InvalidArgumentError, NotFoundError
from glade.superlink.bulk import BulkServer
from glade.superlink.convert import run_to_proto, user_config
from glade.superlink.delivery import Delivery
from glade.superlink.rpc import ObjectRpcs, check_id, metadata_id
from glade.superlink.state import State
from glade.transport.objects import NODE_ID_KEY
from glade.transport.signing import NODE_KEY_KEY
from glade.transport.v1 import fleet_pb2 as fpb
from glade.transport.v1 import fleet_pb2_grpc, run_pb2
from glade.transport.v1 import message_pb2 as pb

__all__ = ["FleetServicer"]

_MAX_NAME = 256


class FleetServicer(fleet_pb2_grpc.FleetServicer):
    """Implements ``glade.v1.Fleet`` (see the module docstring)."""

    def __init__(
        self,
        *,
        state: State,
        delivery: Delivery,
        objects: ObjectRpcs,
        heartbeat_interval_s: float,
        clock: Callable[[], float] = time.time,
        node_auth: bool = False,
    ) -> None:
        self._state = state
        self._node_auth = node_auth
        self._register_lock = threading.Lock()
        self._delivery = delivery
        self._objects = objects
        self._heartbeat_interval_s = heartbeat_interval_s
        self._clock = clock
        self._busy: Counter[int] = Counter()
        self._seen: dict[int, float] = {}  # node -> when its sign of life was last stored
        self._touch_every_s = min(1.0, heartbeat_interval_s / 4)
        self._lock = threading.Lock()
        self.bulk: BulkServer | None = None
        """The bulk port (set by the SuperLink when it has one; OpenBulk hands out tickets)."""

    def busy_nodes(self) -> list[int]:
        """Nodes with a long-poll or an object transfer in progress: alive, whatever their
        last heartbeat (a 4 GB upload may take longer than the offline timeout)."""
        with self._lock:
            return [node for node, n in self._busy.items() if n > 0]

    @contextlib.contextmanager
    def busy_with(self, node_id: int) -> Iterator[None]:
        """The node counts as alive while inside (a transfer in progress)."""
        with self._lock:
            self._busy[node_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[node_id] -= 1
                if not self._busy[node_id]:
                    del self._busy[node_id]

    def _stream(self, node_id: int, chunks: Iterator[bytes]) -> Iterator[bytes]:
        with self.busy_with(node_id):
            yield from chunks

    def _node(self, node_id: int) -> int:
        """``node_id`` if the node is registered; its sign of life is recorded."""
        check_id(node_id, "node")
        now = self._clock()
        with self._lock:
            fresh = now - self._seen.get(node_id, -1e18) < self._touch_every_s
        if fresh:  # written to the state less than _touch_every_s ago
            return node_id
        if not self._state.touch_node(node_id, now=now):
            raise NotFoundError(f"unknown node {node_id}: register (again) first")
        with self._lock:
            self._seen[node_id] = now
        return node_id

    def _forget(self, node_id: int) -> None:
        with self._lock:
            self._seen.pop(node_id, None)

    def _metadata_node(self, context: grpc.ServicerContext) -> int:
        return self._node(metadata_id(context, NODE_ID_KEY, "node"))

    # -- membership ------------------------------------------------------------------------
    def Register(
        self, request: fpb.RegisterRequest, context: grpc.ServicerContext
    ) -> fpb.RegisterResponse:
        if len(request.name) > _MAX_NAME:
            raise InvalidArgumentError(f"a node name has at most {_MAX_NAME} characters")
        config = user_config(request.node_config, where="node_config")
        if self._node_auth:
            with self._register_lock:  # one id per key, even if it registers twice at once
                return self._register_with_key(request, config, _node_key(context))
        return self._register(request.name, config, request.node_id)

    def _register_with_key(
        self, request: fpb.RegisterRequest, config: dict[str, Any], public_key: bytes
    ) -> fpb.RegisterResponse:
        key = self._state.get_node_key(public_key)
        if key is None:  # removed since the request was checked
            raise AuthenticationError("this SuperNode's key is not on the allow-list")
        response = self._register(request.name, config, key.node_id)
        if not key.node_id:
            self._state.bind_node_key(public_key, response.node_id)
        return response

    def _register(self, name: str, config: dict[str, Any], previous: int) -> fpb.RegisterResponse:
        if previous:
            check_id(previous, "node")
        known = bool(previous) and self._state.get_node(previous) is not None
        self._forget(previous)
        node_id = self._state.register_node(
            name=name, node_config=config, now=self._clock(), node_id=previous
        )
        if known:
            self._delivery.release_leases(node_id)  # it restarted: offer its work again now
        return fpb.RegisterResponse(
            node_id=node_id, heartbeat_interval_s=self._heartbeat_interval_s
        )

    def Unregister(self, request: fpb.UnregisterRequest, context: object) -> fpb.UnregisterResponse:
        node_id = self._node(request.node_id)
        self._forget(node_id)
        self._delivery.node_unavailable(node_id, "the node left the federation")
        self._state.remove_node(node_id)
        return fpb.UnregisterResponse()

    def Heartbeat(self, request: fpb.HeartbeatRequest, context: object) -> fpb.HeartbeatResponse:
        try:
            self._node(request.node_id)
        except NotFoundError:
            return fpb.HeartbeatResponse(known=False)
        return fpb.HeartbeatResponse(known=True)

    # -- messages --------------------------------------------------------------------------
    def PullMessages(
        self, request: fpb.PullMessagesRequest, context: grpc.ServicerContext
    ) -> run_pb2.MessageBatch:
        """Long-poll for the node's instructions; a poll the node cancelled takes none."""
        node_id = self._node(request.node_id)
        waiting = threading.Event()
        waiting.set()

        def wake_if_cancelled() -> None:  # grpc calls it when the RPC ends, however it ends
            if waiting.is_set():
                self._delivery.wake_node(node_id)

        context.add_callback(wake_if_cancelled)
        try:
            with self.busy_with(node_id):
                leased = self._delivery.pull_instructions(
                    node_id,
                    wait_s=request.wait_s,
                    limit=request.max_messages,
                    active=context.is_active,
                )
        finally:
            waiting.clear()
        return self._delivery.batch(leased)

    def PushMessages(
        self, request: fpb.PushMessagesRequest, context: object
    ) -> fpb.PushMessagesResponse:
        node_id = self._node(request.node_id)
        accepted = self._delivery.push_replies(
            node_id, list(request.messages), list(request.inline_objects)
        )
        self._objects.garbage.release(("node", node_id))
        return fpb.PushMessagesResponse(accepted_message_ids=accepted)

    def GetRun(self, request: fpb.GetRunRequest, context: object) -> fpb.GetRunResponse:
        self._node(request.node_id)
        run = self._state.get_run(check_id(request.run_id, "run"))
        if run is None:
            raise NotFoundError(f"unknown run id {request.run_id}")
        return fpb.GetRunResponse(run=run_to_proto(run))

    # -- objects ---------------------------------------------------------------------------
    def PullObject(
        self, request: run_pb2.PullObjectRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        node_id = self._metadata_node(context)
        return self._stream(node_id, self._objects.pull(request))

    def PushObject(
        self, request_iterator: Iterator[pb.ObjectChunk], context: grpc.ServicerContext
    ) -> run_pb2.PushObjectResponse:
        node_id = self._metadata_node(context)
        with self.busy_with(node_id):
            return self._objects.push(request_iterator, ("node", node_id))

    def HasObjects(
        self, request: run_pb2.HasObjectsRequest, context: grpc.ServicerContext
    ) -> run_pb2.HasObjectsResponse:
        node_id = self._metadata_node(context)
        return self._objects.has(request, ("node", node_id))

    def OpenBulk(
        self, request: fpb.OpenBulkRequest, context: grpc.ServicerContext
    ) -> fpb.OpenBulkResponse:
        """A single-use ticket for the bulk port (empty: this SuperLink has none)."""
        node_id = self._node(request.node_id)
        bulk = self.bulk
        if bulk is None:
            return fpb.OpenBulkResponse()
        ticket, size = bulk.open(
            node_id, request.object_id, upload=request.upload, size=request.size
        )
        return fpb.OpenBulkResponse(ticket=ticket, port=bulk.port, size=size)


def _node_key(context: grpc.ServicerContext) -> bytes:
    """The raw public key a (verified) request was signed with."""
    for key, value in context.invocation_metadata() or ():
        if key == NODE_KEY_KEY:
            return base64.b64decode(value)
    raise AuthenticationError("the request is not signed: start the SuperNode with --auth-key")
