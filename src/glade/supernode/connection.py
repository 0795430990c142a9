"""The SuperNode's `Connection` to the SuperLink: the Fleet API in domain types.

:class:`Connection` is the seam between the node's logic and the wire; the only
implementation that touches protobuf is :class:`GrpcConnection`. Failures raise Glade
exceptions: :class:`~glade.errors.TransportError` when the SuperLink cannot be reached,
:class:`~glade.errors.NotFoundError` for an unknown node or run, and the
other request errors of :mod:`glade.errors`.

With a ``signing_key`` every call is signed (:mod:`glade.transport.signing`), for a SuperLink
with node authentication. When the SuperLink refuses the node's credentials the
:class:`~glade.errors.AuthenticationError` says what to do about it.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc

from glade.array import Array
from glade.errors import (
    AuthenticationError,
    GladeError,
    LimitExceededError,
    NotFoundError,
    SerdeError,
)
from glade.keypairs import PrivateKey
from glade.message import Message
from glade.transport._record_codec import user_config_from_proto, user_config_to_proto
from glade.transport.bulk import MIN_BULK_BYTES, BulkClient, BulkError, Ticket
from glade.transport.chunks import Allocate
from glade.transport.codec import message_from_proto, message_to_proto
from glade.transport.grpc_options import channel as open_channel
from glade.transport.object_wire import ObjectStub
from glade.transport.objects import (
    inline_objects,
    node_metadata,
    object_infos,
    pull_object,
    push_unnamed,
    send_objects,
    upload_unhashed,
)
from glade.transport.signing import RequestSigner, SigningInterceptor
from glade.transport.status import error_from_rpc
from glade.transport.v1 import fleet_pb2 as fpb
from glade.transport.v1 import fleet_pb2_grpc, run_pb2

__all__ = ["Connection", "GrpcConnection", "Registration", "RunSpec"]

_FLEET = "glade.v1.Fleet"
_T = TypeVar("_T")
_BULK_PAUSE_S = 300.0  # after the bulk path failed, use gRPC alone for this long

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """What the SuperLink answered to Register."""

    node_id: int
    heartbeat_interval_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSpec:
    """What a SuperNode needs to know about a run: its bundle, config and whether it ended."""

    run_id: int
    bundle_id: str
    run_config: Mapping[str, Any] = field(default_factory=dict)
    finished: bool = False


class Connection(Protocol):
    """The Fleet API as the SuperNode uses it (see the module docstring)."""

    def register(
        self, *, node_id: int, name: str, node_config: Mapping[str, Any]
    ) -> Registration: ...

    def heartbeat(self, node_id: int) -> bool:
        """False if the SuperLink no longer knows the node (it must register again)."""
        ...

    def unregister(self, node_id: int, *, timeout: float) -> None: ...

    def pull(self, node_id: int, *, wait_s: float, max_messages: int) -> list[Message]:
        """The node's next instructions with their arrays, waiting up to ``wait_s`` for one."""
        ...

    def push(self, node_id: int, replies: Sequence[Message]) -> list[str]:
        """Upload the replies' arrays, then the replies; returns the ids the SuperLink kept."""
        ...

    def get_run(self, node_id: int, run_id: int) -> RunSpec: ...

    def fetch_object(self, node_id: int, object_id: str, *, max_size: int) -> memoryview:
        """Download one object (e.g. an app bundle), verified against its id."""
        ...

    def close(self) -> None:
        """Release the connection; calls in progress fail at once."""
        ...


class GrpcConnection:
    """:class:`Connection` over a gRPC channel to the SuperLink's Fleet API."""

    def __init__(
        self,
        address: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        rpc_timeout_s: float = 30.0,
        chunk_size: int,
        max_object_size: int,
        signing_key: PrivateKey | None = None,
        allocate: Allocate | None = None,
        skip_message: Callable[[str], bool] | None = None,
        bulk: bool = True,
        bulk_context: ssl.SSLContext | None = None,
    ) -> None:
        """``credentials`` None: an unencrypted channel (see :mod:`glade.transport.tls`);
        ``signing_key``: sign every call with it; ``allocate``: makes the buffers pulled
        arrays are received into (see :class:`~glade.transport.chunks.ChunkAssembler`);
        ``skip_message(message_id)`` True: a pulled instruction is dropped before its arrays
        are downloaded (the node is still working on it); ``bulk``: move large arrays over
        the SuperLink's bulk port when it has one (see :mod:`glade.transport.bulk`), with
        TLS context ``bulk_context`` (required when ``credentials`` are given), falling back
        to gRPC whenever that fails."""
        self._allocate = allocate
        self._skip_message = skip_message
        self._channel = open_channel(address, credentials=credentials)
        self._key = signing_key
        calls = self._channel
        if signing_key is not None:
            calls = grpc.intercept_channel(calls, SigningInterceptor(RequestSigner(signing_key)))
        self._stub = fleet_pb2_grpc.FleetStub(calls)  # type: ignore[no-untyped-call]
        self._objects = ObjectStub(calls, _FLEET)
        self._timeout = rpc_timeout_s
        self._chunk_size = chunk_size
        self._max_object_size = max_object_size
        self._address = address
        self._lock = threading.Lock()
        self._closed = False
        self._bulk: BulkClient | None = None
        if bulk and (credentials is None or bulk_context is not None):
            host = address.rpartition(":")[0]
            self._bulk = BulkClient(
                host, self._open_ticket, context=bulk_context, timeout_s=rpc_timeout_s
            )
        self._bulk_paused_until = 0.0

    def _call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        with self._explained():
            try:
                return getattr(self._stub, method)(request, timeout=timeout or self._timeout)
            except grpc.RpcError as exc:
                peer = f"(SuperLink Fleet API at {self._address})"
                raise error_from_rpc(exc, peer=peer) from exc

    @contextlib.contextmanager
    def _explained(self) -> Iterator[None]:
        """Refused credentials: say what to do (the node keeps retrying meanwhile)."""
        try:
            yield
        except AuthenticationError as exc:
            where = f"the SuperLink at {self._address}"
            if self._key is None:
                message = (
                    f"{where} requires node authentication and this SuperNode has no key: make "
                    "one with 'glade keys create --out DIR', restart with --auth-key "
                    "DIR/node.key, and ask the SuperLink's admin to allow DIR/node.pub "
                    "('glade node add')"
                )
            else:
                line = self._key.public_key.to_openssh()
                message = (
                    f"{where} refused this SuperNode: {exc} (this node's public key: '{line}')"
                )
            raise AuthenticationError(message) from exc

    def register(self, *, node_id: int, name: str, node_config: Mapping[str, Any]) -> Registration:
        request = fpb.RegisterRequest(node_id=node_id, name=name)
        user_config_to_proto(dict(node_config), request.node_config, where="node_config")
        response = self._call("Register", request)
        return Registration(
            node_id=response.node_id, heartbeat_interval_s=response.heartbeat_interval_s
        )

    def heartbeat(self, node_id: int) -> bool:
        return bool(self._call("Heartbeat", fpb.HeartbeatRequest(node_id=node_id)).known)

    def unregister(self, node_id: int, *, timeout: float) -> None:
        self._call("Unregister", fpb.UnregisterRequest(node_id=node_id), timeout=timeout)

    def pull(self, node_id: int, *, wait_s: float, max_messages: int) -> list[Message]:
        request = fpb.PullMessagesRequest(node_id=node_id, wait_s=wait_s, max_messages=max_messages)
        batch: run_pb2.MessageBatch = self._call(
            "PullMessages", request, timeout=wait_s + self._timeout
        )
        if self._skip_message is not None:
            _drop_skipped(batch, self._skip_message)
        if not batch.messages:
            return []
        try:
            with self._explained():
                objects = inline_objects(batch.inline_objects, max_size=self._max_object_size)
                for info in batch.objects:
                    if info.object_id not in objects:
                        objects[info.object_id] = self._pull_object(
                            node_id, info.object_id, info.size
                        )
        except NotFoundError as exc:  # not "unknown node": the pull itself succeeded
            raise SerdeError(f"an array of the pulled messages is missing: {exc}") from None
        del batch.inline_objects[:]  # their bytes live on in ``objects``
        try:
            return [message_from_proto(proto, objects) for proto in batch.messages]
        except SerdeError as exc:
            raise SerdeError(f"the SuperLink sent a message this node cannot read: {exc}") from None

    def push(self, node_id: int, replies: Sequence[Message]) -> list[str]:
        metadata = node_metadata(node_id)
        with self._explained():  # new arrays: the SuperLink names them as it verifies them
            upload_unhashed(
                self._objects,
                replies,
                metadata=metadata,
                chunk_size=self._chunk_size,
                push=lambda array: self._push_unnamed(node_id, array),
            )
        protos = []
        objects: dict[str, Array] = {}
        for reply in replies:
            proto, arrays = message_to_proto(reply)
            protos.append(proto)
            objects.update(arrays)
        with self._explained():
            inline = send_objects(
                self._objects, objects, metadata=metadata, chunk_size=self._chunk_size
            )
        request = fpb.PushMessagesRequest(
            node_id=node_id,
            messages=protos,
            objects=object_infos(objects),
            inline_objects=inline,
        )
        return list(self._call("PushMessages", request).accepted_message_ids)

    # -- large objects: the bulk port, else gRPC ------------------------------------------
    def _bulk_client(self, nbytes: int) -> BulkClient | None:
        if nbytes < MIN_BULK_BYTES or time.monotonic() < self._bulk_paused_until:
            return None
        return self._bulk

    def upload_ticket(self, node_id: int, size: int) -> Ticket | None:
        """A ticket for another process of this node (its ClientApp process) to upload
        ``size`` bytes over the bulk port (see :class:`~glade.transport.bulk.BulkTarget`);
        None when there is none to be had now: a small object, no bulk port, bulk paused
        after a failure, or the SuperLink could not be asked (the node then moves the bytes
        itself, as usual)."""
        if self._bulk_client(size) is None:
            return None
        try:
            return self._open_ticket(node_id, "", True, size)
        except GladeError as exc:
            logger.debug("no upload ticket: %s", exc)
            return None

    def _bulk_failed(self, exc: BaseException) -> None:
        if self._closed:  # stopping: the gRPC fallback fails at once, as it should
            return
        self._bulk_paused_until = time.monotonic() + _BULK_PAUSE_S
        logger.warning(
            "the SuperLink's bulk port failed (%s): moving objects over gRPC for the next %g s",
            exc,
            _BULK_PAUSE_S,
        )

    def _open_ticket(self, node_id: int, object_id: str, upload: bool, size: int) -> Ticket | None:
        request = fpb.OpenBulkRequest(
            node_id=node_id, object_id=object_id, upload=upload, size=size
        )
        try:
            response = self._stub.OpenBulk(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # an older SuperLink
                self._bulk_paused_until = time.monotonic() + _BULK_PAUSE_S
                return None
            raise error_from_rpc(exc, peer=f"(SuperLink Fleet API at {self._address})") from exc
        if not response.ticket:  # the SuperLink has no bulk port (it may get one later)
            self._bulk_paused_until = time.monotonic() + _BULK_PAUSE_S
            return None
        return bytes(response.ticket), int(response.port), int(response.size)

    def _via_bulk(self, size: int, transfer: Callable[[BulkClient], _T | None]) -> _T | None:
        """``transfer`` over the bulk port, or None: no bulk port for ``size``, or it failed
        (then gRPC is used for a while, see :meth:`_bulk_failed`)."""
        bulk = self._bulk_client(size)
        if bulk is None:
            return None
        try:
            return transfer(bulk)
        except GladeError as exc:
            if not isinstance(exc, SerdeError | LimitExceededError):
                raise
            self._bulk_failed(exc)
        except (OSError, BulkError) as exc:
            self._bulk_failed(exc)
        return None

    def _pull_object(self, node_id: int, object_id: str, size: int) -> memoryview:
        data = self._via_bulk(
            size,
            lambda bulk: bulk.pull(
                node_id, object_id, max_size=self._max_object_size, allocate=self._allocate
            ),
        )
        if data is not None:
            return data
        return pull_object(
            self._objects,
            object_id,
            metadata=node_metadata(node_id),
            max_size=self._max_object_size,
            allocate=self._allocate,
        )

    def _push_unnamed(self, node_id: int, array: Array) -> str:
        stored = self._via_bulk(array.nbytes, lambda bulk: bulk.push(node_id, array.memoryview()))
        if stored is not None:
            return stored
        return push_unnamed(
            self._objects, array, metadata=node_metadata(node_id), chunk_size=self._chunk_size
        )

    def get_run(self, node_id: int, run_id: int) -> RunSpec:
        run = self._call("GetRun", fpb.GetRunRequest(node_id=node_id, run_id=run_id)).run
        return RunSpec(
            run_id=run.run_id,
            bundle_id=run.bundle_id,
            run_config=dict(user_config_from_proto(run.run_config, where="run_config")),
            finished=run.status == run_pb2.RUN_STATUS_FINISHED,
        )

    def fetch_object(self, node_id: int, object_id: str, *, max_size: int) -> memoryview:
        with self._explained():
            return pull_object(
                self._objects, object_id, metadata=node_metadata(node_id), max_size=max_size
            )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._bulk is not None:
            self._bulk.close()
        self._channel.close()


def _drop_skipped(batch: run_pb2.MessageBatch, skip: Callable[[str], bool]) -> None:
    """Remove the messages ``skip`` names, and the objects only they referred to."""
    kept = [m for m in batch.messages if not skip(m.metadata.message_id)]
    if len(kept) == len(batch.messages):
        return
    used = {
        item.value.object_id
        for m in kept
        if m.WhichOneof("body") == "content"
        for entry in m.content.entries
        if entry.WhichOneof("record") == "array_record"
        for item in entry.array_record.entries
    }
    messages = [m.SerializeToString() for m in kept]  # copies: the originals are cleared
    objects = [(o.object_id, o.size) for o in batch.objects if o.object_id in used]
    inline = [c.SerializeToString() for c in batch.inline_objects if c.object_id in used]
    del batch.messages[:], batch.objects[:], batch.inline_objects[:]
    for data in messages:
        batch.messages.add().MergeFromString(data)
    for object_id, size in objects:
        batch.objects.add(object_id=object_id, size=size)
    for data in inline:
        batch.inline_objects.add().MergeFromString(data)
