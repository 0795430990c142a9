"""`Delivery`: how messages move between ServerApp processes and SuperNodes.

- Instructions are validated (decoded against the object store) and stored; a node pulling
  them *leases* them. Unreplied instructions are offered again once the lease expires
  (at-least-once), and at once to a node that registers again (it restarted).
- Replies are de-duplicated by the instruction they answer: the first one wins, so an
  aggregate never counts a node twice (effectively exactly-once).
- Instructions past their TTL, and those of nodes that went offline or left, are answered
  by the SuperLink with an error reply (``REPLY_TIMEOUT`` / ``NODE_UNAVAILABLE``), so a
  strategy does not wait for its full timeout.
- Small objects (arrays of at most ``SMALL_OBJECT`` bytes, sent inline) are validated
  against the verified bytes the request carried, and a bounded cache of their bytes serves
  the batches that hand them out again (a model broadcast to N nodes is read once, not N
  times). Objects are content-addressed, so a cached copy is never stale.
- A content (the encoded records) found valid is not decoded again: not for the other
  messages of a broadcast, nor in later requests when they carry all its objects inline
  (ten nodes' equal replies). Validity depends only on those bytes and on the objects'
  bytes, which their ids fix.
- Instructions for a node whose pull is waiting are leased to that pull as they are
  stored, in the same transaction, and handed to it: the waiting pulls a broadcast wakes
  do not each lease from the database again.
- Waiting is a long-poll on a :class:`~glade.superlink.notify.Notifier` topic, never a
  fixed sleep: ``("node", id)`` wakes a node's pull, ``("run", id)`` a ServerApp's pull.
  A waiting pull holds a server thread: beyond ``max_waiting`` node pulls waiting at once,
  a pull answers at once (empty if nothing is there), so that heartbeats, pushes and object
  transfers always find a thread; the node asks again after a short pause.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from glade import digest
from glade.errors import (
    AccessDeniedError,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
    SerdeError,
)
from glade.message import ErrorCode
from glade.superlink.notify import Notifier
from glade.superlink.object_cache import SmallObjects, StoredObjects
from glade.superlink.object_store import ObjectStore
from glade.superlink.state import RunStatus, State, StoredMessage
from glade.transport.codec import message_from_proto
from glade.transport.objects import MAX_INLINE_BYTES, SMALL_OBJECT
from glade.transport.v1 import message_pb2 as pb
from glade.transport.v1 import run_pb2

__all__ = ["Delivery", "node_topic", "run_topic"]

logger = logging.getLogger(__name__)

_MESSAGE_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")
_RECHECK_S = 1.0  # a waiting poll re-reads the state this often (lease expiry has no event)
_VALID_CONTENTS = 1024  # encoded contents remembered as valid (each at most _CONTENT_BYTES)
_CONTENT_BYTES = 8 * 1024


def node_topic(node_id: int) -> tuple[str, int]:
    return ("node", node_id)


def run_topic(run_id: int) -> tuple[str, int]:
    return ("run", run_id)


class _Waiter:
    """A node's pull that waits: instructions stored meanwhile may be handed to it."""

    __slots__ = ("handed", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.handed: list[StoredMessage] = []


def _array_refs(proto: pb.Message) -> tuple[tuple[str, int], ...]:
    refs: dict[str, int] = {}
    if proto.WhichOneof("body") == "content":
        for entry in proto.content.entries:
            if entry.WhichOneof("record") == "array_record":
                for item in entry.array_record.entries:
                    refs[item.value.object_id] = item.value.nbytes
    return tuple(refs.items())


class Delivery:
    """Message routing on top of a State, an ObjectStore and a Notifier."""

    def __init__(
        self,
        state: State,
        store: ObjectStore,
        notifier: Notifier,
        *,
        lease_s: float,
        max_wait_s: float = 30.0,
        max_waiting: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._store = store
        self._notifier = notifier
        self._lease_s = lease_s
        self._max_wait_s = max_wait_s
        self._max_waiting = max_waiting
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._clock = clock
        self._small = SmallObjects()
        self._waiters: dict[int, list[_Waiter]] = {}  # node -> its pulls that wait
        self._waiters_lock = threading.Lock()
        self._valid: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._valid_lock = threading.Lock()

    # -- small objects sent inline ---------------------------------------------------------
    def _put_inline(self, chunks: Sequence[pb.ObjectChunk]) -> dict[str, bytes]:
        """Store the objects a request sent whole; returns the bytes of those that match
        their id (all of them, unless the store had an object already and the request
        sent other bytes under its id: the store's copy is the one that counts)."""
        self._store.put_inline(chunks, limit=SMALL_OBJECT)
        verified: dict[str, bytes] = {}
        for chunk in chunks:
            object_id = chunk.object_id
            if object_id in verified:
                continue
            data = chunk.data
            if self._small.get(object_id) == data or digest.content_id(data) == object_id:
                verified[object_id] = data
                self._small.put(object_id, data)
        return verified

    def _small_bytes(self, object_id: str) -> bytes:
        """A small object's bytes, from the cache or the store (NotFoundError if gone)."""
        data = self._small.get(object_id)
        if data is None:
            data = self._store.read_bytes(object_id)
            if digest.content_id(data) != object_id:  # never cache what does not match
                return data
            self._small.put(object_id, data)
        return data

    # -- validation ------------------------------------------------------------------------
    def _validate(
        self, proto: pb.Message, objects: StoredObjects, checked: set[bytes]
    ) -> StoredMessage:
        """``checked``: the encoded contents found valid in this request (a broadcast
        repeats one content: it is decoded once, the other messages' metadata alone)."""
        if not proto.HasField("metadata"):
            raise InvalidArgumentError("a message has no metadata")
        md = proto.metadata
        if not _MESSAGE_ID.fullmatch(md.message_id):
            raise InvalidArgumentError(f"invalid message id {md.message_id!r}")
        content = b""
        if proto.WhichOneof("body") == "content":
            content = proto.content.SerializeToString(deterministic=True)
        refs = _array_refs(proto)
        try:
            if content and self._known_valid(content, refs, objects, checked):
                message_from_proto(pb.Message(metadata=md, content=pb.RecordDict()), {})
            else:  # the full structure, arrays against the store
                message_from_proto(proto, objects)
        except SerdeError as exc:
            raise SerdeError(f"message {md.message_id}: {exc}") from None
        if content:
            checked.add(content)
            self._remember_valid(content)
        return StoredMessage(
            message_id=md.message_id,
            run_id=md.run_id,
            src_node_id=md.src_node_id,
            dst_node_id=md.dst_node_id,
            reply_to=md.reply_to_message_id,
            created_at=md.created_at,
            ttl=md.ttl,
            payload=proto.SerializeToString(),
            objects=refs,
        )

    def _known_valid(
        self,
        content: bytes,
        refs: tuple[tuple[str, int], ...],
        objects: StoredObjects,
        checked: set[bytes],
    ) -> bool:
        """Whether ``content`` was found valid: in this request, or in an earlier one and
        this request carried (and stored) every object it refers to."""
        if content in checked:
            return True
        if not all(object_id in objects.verified for object_id, _ in refs):
            return False  # decode against the store: it says whether they are still there
        with self._valid_lock:
            if content in self._valid:
                self._valid.move_to_end(content)
                return True
        return False

    def _remember_valid(self, content: bytes) -> None:
        if len(content) > _CONTENT_BYTES:
            return
        with self._valid_lock:
            self._valid[content] = None
            self._valid.move_to_end(content)
            while len(self._valid) > _VALID_CONTENTS:
                self._valid.popitem(last=False)

    # -- the ServerApp side ----------------------------------------------------------------
    def push_instructions(
        self, run_id: int, protos: Sequence[pb.Message], inline: Sequence[pb.ObjectChunk] = ()
    ) -> list[str]:
        """Validate and store a ServerApp's instructions; returns their ids (all or none)."""
        run = self._state.get_run(run_id)
        if run is None or run.status != RunStatus.RUNNING:
            raise InvalidStateError(f"run {run_id} is not running; it cannot send messages")
        objects = StoredObjects(self._store, self._put_inline(inline))
        checked: set[bytes] = set()
        messages = [self._validate(p, objects, checked) for p in protos]
        offline: list[StoredMessage] = []
        for m in messages:
            if m.run_id != run_id or m.src_node_id != 0 or m.reply_to:
                raise InvalidArgumentError(
                    f"message {m.message_id}: instructions of run {run_id} need run_id="
                    f"{run_id}, src_node_id=0 and no reply_to_message_id"
                )
            node = self._state.get_node(m.dst_node_id)
            if node is None:
                raise NotFoundError(f"message {m.message_id}: unknown node {m.dst_node_id}")
            if not node.online:
                offline.append(m)
        self._store_instructions(messages, skip={m.message_id for m in offline})
        if offline:
            self._answer_with_errors(offline, ErrorCode.NODE_UNAVAILABLE, "the node is offline")
        self._notifier.notify(*{node_topic(m.dst_node_id) for m in messages})
        return [m.message_id for m in messages]

    def _store_instructions(self, messages: Sequence[StoredMessage], *, skip: set[str]) -> None:
        """Store ``messages``, leasing those of nodes with a waiting pull to that pull (not
        those of ``skip``: they get an error reply)."""
        now = self._clock()
        with self._waiters_lock:  # no pull starts or stops waiting until they are handed
            handed: dict[_Waiter, list[StoredMessage]] = {}
            for m in messages:
                if m.message_id in skip or m.expires_at <= now:
                    continue
                waiter = next(iter(self._waiters.get(m.dst_node_id, ())), None)
                if waiter is not None and len(handed.get(waiter, ())) < waiter.limit:
                    handed.setdefault(waiter, []).append(m)
            leases = {m.message_id: now + self._lease_s for ms in handed.values() for m in ms}
            try:
                self._state.add_instructions(messages, leased_until=leases)
            except ValueError as exc:
                raise InvalidArgumentError(str(exc)) from None
            for waiter, given in handed.items():
                waiter.handed.extend(given)

    def pull_replies(
        self, run_id: int, message_ids: Sequence[str], *, wait_s: float
    ) -> list[StoredMessage]:
        """Replies to ``message_ids`` not pulled before, waiting up to ``wait_s`` for one."""
        deadline = time.monotonic() + min(max(wait_s, 0.0), self._max_wait_s)
        topic = run_topic(run_id)
        while True:
            version = self._notifier.version(topic)
            replies = self._state.take_replies(run_id, message_ids, now=self._clock())
            remaining = deadline - time.monotonic()
            if replies or remaining <= 0 or self._notifier.closed:
                return replies
            self._notifier.wait(topic, version, timeout=remaining)

    def release_taken(self, run_id: int) -> int:
        """Forget the replies the run pulled before now, and the instructions they answer.

        The ServerApp fetches a pull's objects before it pulls again, so its next pull is
        the moment their objects may go.
        """
        return self._state.prune_messages(taken_before=self._clock(), run_id=run_id)

    # -- the SuperNode side ----------------------------------------------------------------
    def pull_instructions(
        self,
        node_id: int,
        *,
        wait_s: float,
        limit: int,
        active: Callable[[], bool] = lambda: True,
    ) -> list[StoredMessage]:
        """Lease the node's next instructions, waiting up to ``wait_s`` for one.

        ``active()`` says whether the caller still waits for the answer (a gRPC context's
        ``is_active``): once it is false the pull takes nothing and returns, so that a
        poll the node gave up on never leases instructions nobody will receive. Call
        :meth:`wake_node` when it turns false to end the wait at once.
        """
        deadline = time.monotonic() + min(max(wait_s, 0.0), self._max_wait_s)
        topic = node_topic(node_id)
        limit = max(1, min(limit or 100, 1000))
        waiter: _Waiter | None = None
        leased: list[StoredMessage] = []
        done = False
        try:
            while True:
                if not active() or (waiter is not None and waiter.handed):
                    break  # handed instructions are taken below
                version = self._notifier.version(topic)
                leased = self._state.lease_instructions(
                    node_id, now=self._clock(), lease_s=self._lease_s, limit=limit
                )
                remaining = deadline - time.monotonic()
                if leased or remaining <= 0 or self._notifier.closed:
                    break
                if waiter is None:
                    if not self._start_waiting():  # every thread that may wait does: answer now
                        break
                    waiter = self._add_waiter(node_id, limit)
                self._notifier.wait(topic, version, timeout=min(remaining, _RECHECK_S))
            done = True
        finally:
            if waiter is not None:
                handed = self._remove_waiter(node_id, waiter)
                with self._waiting_lock:
                    self._waiting -= 1
                room = max(0, limit - len(leased)) if done and active() else 0
                if handed[room:]:  # not wanted (the poll is gone): offered at the next pull
                    self._state.release_leases(node_id, [m.message_id for m in handed[room:]])
                leased = leased + handed[:room]
        return leased

    def _add_waiter(self, node_id: int, limit: int) -> _Waiter:
        waiter = _Waiter(limit)
        with self._waiters_lock:
            self._waiters.setdefault(node_id, []).append(waiter)
        return waiter

    def _remove_waiter(self, node_id: int, waiter: _Waiter) -> list[StoredMessage]:
        """Stop handing instructions to ``waiter``; returns those it was handed."""
        with self._waiters_lock:
            waiters = self._waiters.get(node_id, [])
            waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(node_id, None)
            handed, waiter.handed = waiter.handed, []
        return handed

    def _start_waiting(self) -> bool:
        with self._waiting_lock:
            if self._max_waiting is not None and self._waiting >= self._max_waiting:
                return False
            self._waiting += 1
            return True

    @property
    def waiting_pulls(self) -> int:
        """Node pulls waiting now (each holds a server thread)."""
        with self._waiting_lock:
            return self._waiting

    def wake_node(self, node_id: int) -> None:
        """Make the node's waiting pulls look again (one of them may have been cancelled)."""
        self._notifier.notify(node_topic(node_id))

    def push_replies(
        self, node_id: int, protos: Sequence[pb.Message], inline: Sequence[pb.ObjectChunk] = ()
    ) -> list[str]:
        """Validate and store a node's replies; returns the ids stored (duplicates dropped)."""
        objects = StoredObjects(self._store, self._put_inline(inline))
        checked: set[bytes] = set()
        replies = [self._validate(p, objects, checked) for p in protos]
        instructions = {
            m.message_id: m for m in self._state.get_instructions([r.reply_to for r in replies])
        }
        for r in replies:
            answered = instructions.get(r.reply_to)
            if answered is None:
                raise NotFoundError(
                    f"reply {r.message_id} answers {r.reply_to!r}, which is not a pending "
                    "instruction (unknown, or its run has finished)"
                )
            if answered.dst_node_id != node_id or r.src_node_id != node_id:
                raise AccessDeniedError(
                    f"reply {r.message_id}: instruction {r.reply_to} was sent to node "
                    f"{answered.dst_node_id}, not to node {node_id}"
                )
            if r.run_id != answered.run_id or r.dst_node_id != 0:
                raise InvalidArgumentError(
                    f"reply {r.message_id} must have run_id={answered.run_id} and dst_node_id=0"
                )
        return self._store_replies(replies)

    def _store_replies(self, replies: Sequence[StoredMessage]) -> list[str]:
        try:
            stored = self._state.add_replies(replies, now=self._clock())
        except LookupError as exc:
            raise NotFoundError(str(exc)) from None
        self._notifier.notify(*{run_topic(r.run_id) for r in replies})
        return stored

    def batch(self, messages: Sequence[StoredMessage]) -> run_pb2.MessageBatch:
        """The MessageBatch of ``messages``: their objects listed, the small ones inline."""
        batch = run_pb2.MessageBatch()
        budget = MAX_INLINE_BYTES
        for message in messages:
            batch.messages.add().MergeFromString(message.payload)
        for object_id, size in dict(o for m in messages for o in m.objects).items():
            batch.objects.add(object_id=object_id, size=size)
            if size <= SMALL_OBJECT and size <= budget:
                try:
                    data = self._small_bytes(object_id)
                except NotFoundError:  # GC'd: the receiver asks for it (and learns it is gone)
                    continue
                batch.inline_objects.add(
                    object_id=object_id, offset=0, total_size=len(data), data=data
                )
                budget -= size
        return batch

    # -- the SuperLink's own replies -------------------------------------------------------
    def node_unavailable(self, node_id: int, why: str) -> int:
        """Answer the node's unreplied instructions with NODE_UNAVAILABLE errors."""
        pending = self._state.unreplied_instructions(node_id=node_id)
        self._answer_with_errors(pending, ErrorCode.NODE_UNAVAILABLE, why)
        return len(pending)

    def expire(self) -> int:
        """Answer instructions past their TTL with REPLY_TIMEOUT errors."""
        expired = self._state.unreplied_instructions(expired_at=self._clock())
        self._answer_with_errors(expired, ErrorCode.REPLY_TIMEOUT, "no reply within the TTL")
        return len(expired)

    def release_leases(self, node_id: int) -> None:
        """Offer the node's leased instructions again at once (it restarted)."""
        self._state.release_leases(node_id)
        self._notifier.notify(node_topic(node_id))

    def _answer_with_errors(
        self, instructions: Sequence[StoredMessage], code: ErrorCode, why: str
    ) -> None:
        if not instructions:
            return
        now = self._clock()
        replies = [_error_reply(m, code, why, now) for m in instructions]
        self._store_replies(replies)
        logger.info("answered %d instruction(s) with %s: %s", len(replies), code.name, why)


def _error_reply(
    instruction: StoredMessage, code: ErrorCode, why: str, now: float
) -> StoredMessage:
    original = pb.Message.FromString(instruction.payload).metadata
    node = instruction.dst_node_id
    metadata = pb.Metadata(
        run_id=instruction.run_id,
        message_id=uuid.uuid4().hex,
        src_node_id=node,
        dst_node_id=0,
        reply_to_message_id=instruction.message_id,
        group_id=original.group_id,
        message_type=original.message_type,
        ttl=original.ttl,
        created_at=now,
    )
    reason = f"node {node}: {why}"
    proto = pb.Message(metadata=metadata, error=pb.Error(code=int(code), reason=reason))
    return StoredMessage(
        message_id=metadata.message_id,
        run_id=instruction.run_id,
        src_node_id=node,
        dst_node_id=0,
        reply_to=instruction.message_id,
        created_at=now,
        ttl=original.ttl,
        payload=proto.SerializeToString(),
    )
