"""The worker process of the local backend: one ClientApp, many virtual nodes.

Started by :class:`~glade.simulation.process.WorkerProcess` as ``python -c COMMAND FD`` where
``FD`` is its end of a socket pair. It reads a :class:`WorkerInit`, imports the ClientApp once,
says ``READY`` (or ``LOAD_FAILED`` with the error), then runs batches of messages, keeping each
node's :class:`~glade.Context` across rounds, and sends replies back in batches. A reader
thread drains the socket (so the parent never blocks on a busy worker), handles ``STOP`` at
once, and exits the process when the parent goes away (end of file on the socket).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import mmap
import os
import pickle
import queue
import shutil
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NoReturn, Protocol

import numpy as np

from glade.client import ClientApp
from glade.context import Context
from glade.errors import GladeError
from glade.message import Error, ErrorCode, Message
from glade.simulation.backend import ClientAppSpec, NodeSpec, make_context
from glade.simulation.shm import MappingCache, SegmentPool, map_file
from glade.simulation.wire import Kind, control, dump_each, finish, parse

__all__ = ["COMMAND", "WorkerInit", "main", "tune_malloc"]

COMMAND = "from glade.simulation.worker import main; main()"
logger = logging.getLogger(__name__)
STOP_GRACE_S = 0.3  # after STOP, a handler that does not return is cut short
TICKET_WAIT_S = 10.0  # how long a worker waits for the parent to get it an upload ticket
UPLOAD_PAUSE_S = 300.0  # after a failed upload, replies go through the parent for this long
FLUSH_BYTES = 1 << 20  # replies holding this many array bytes go out without waiting


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInit:
    """Everything a worker needs, sent as the first frame."""

    spec: bytes  # the pickled ClientAppSpec
    sys_path: list[str]
    main_prep: dict[str, Any] = field(default_factory=dict)  # for apps defined in __main__
    run_id: int
    run_config: dict[str, Any]
    nodes: list[NodeSpec]
    run_dir: str
    prefix: str  # file-name prefix of this worker's reply segments
    status_path: str  # 16 bytes: [busy flag, node id], read by the parent after a crash
    threshold: int
    flush_interval: float
    tune_malloc: bool = True
    uploader: bytes = b""  # a pickled ReplyUploader, loaded once sys_path is in place


Push = Callable[[int, memoryview], "str | None"]
"""``push(node_id, data)``: upload bytes; the content id they were stored under, or None if
there is no way now (OSError or GladeError if the upload failed)."""


class ReplyUploader(Protocol):
    """Moves the large arrays of a worker's replies out of the process itself, instead of
    through shared memory to the parent: a SuperNode's ClientApp process uploads them to
    the SuperLink's bulk port (:class:`~glade.transport.bulk.BulkTarget`). It travels to the
    worker in its :class:`WorkerInit` (picklable); ``connect(ticket)`` is called there once,
    where ``ticket(size)`` asks the parent for what an upload needs (None: nothing now)."""

    @property
    def min_bytes(self) -> int:
        """Smaller arrays stay with the replies."""

    def connect(self, ticket: Callable[[int], Any]) -> Push: ...


def main() -> None:
    """Entry point of a worker process."""
    # Ctrl-C is for the parent, which stops the workers; the launcher blocked SIGINT so that
    # none arrives before this line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    conn = Connection(int(sys.argv[1]))
    try:
        init = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    if init.tune_malloc:
        tune_malloc()
    Worker(conn, init).run()


def tune_malloc() -> None:
    """Let glibc keep freed memory for reuse instead of returning it to the OS at once.

    A ClientApp typically allocates its large reply arrays anew every round; by default
    glibc gives memory freed at the top of the heap (and every block above its dynamic
    threshold) back to the OS, so each round pays for fresh, zeroed pages again. Blocks up
    to 32 MiB now come from the heap, and up to 128 MiB of free heap is kept.
    """
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):  # no such confstr name: not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 128 << 20)


def _load(init: WorkerInit) -> ClientApp:
    sys.path[:] = init.sys_path
    if init.main_prep:
        import multiprocessing.spawn

        multiprocessing.spawn.prepare(init.main_prep)
    spec: ClientAppSpec = pickle.loads(init.spec)
    return spec.load()


class Worker:
    """The loop of one worker process."""

    def __init__(self, conn: Connection, init: WorkerInit) -> None:
        self._conn = conn
        self._init = init
        self._inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._stopping = False
        self._nodes = {n.node_id: n for n in init.nodes}
        self._contexts: dict[int, Context] = {}
        self._outbox: list[Message] = []
        self._outbox_bytes = 0
        self._flush_at = 0.0
        self._wait = init.flush_interval
        self._took: dict[str, float] = {}  # message type -> how long its handler last took
        self._pool = SegmentPool(init.run_dir, init.prefix)  # segments of the replies
        self._released: collections.deque[str] = collections.deque()
        self._maps = MappingCache(self._released.append)  # the parent's segments
        fd = os.open(init.status_path, os.O_RDWR)
        try:
            self._status = memoryview(mmap.mmap(fd, 16)).cast("q")
        finally:
            os.close(fd)
        self._upload_min = 0
        self._push: Push | None = None  # set in run(), see ReplyUploader
        self._tickets: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._ticket_seq = 0
        self._push_paused_until = 0.0

    def run(self) -> None:
        threading.Thread(target=self._read_loop, name="glade-worker-reader", daemon=True).start()
        try:
            app = _load(self._init)
        except BaseException as exc:
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            cause = exc.__cause__ or exc.__context__
            if cause is not None:
                text += "\n" + "".join(traceback.format_exception(cause)).rstrip()
            self._send(control(Kind.LOAD_FAILED, text))
            return
        if self._init.uploader:  # after _load: its module may be on the app's sys_path
            self._connect_uploader(self._init.uploader)
        self._send(control(Kind.READY))
        while True:
            frame = self._inbox.get()
            if frame is None or self._stopping:
                return
            if not frame:  # segments were released: free the large ones now
                self._pool.collect()
                continue
            self._run_batch(app, frame)
            self._send_releases()  # the batch's instructions are gone: so are their views

    # -- receiving ---------------------------------------------------------------------
    def _read_loop(self) -> None:
        while True:
            try:
                frame = self._conn.recv_bytes()
            except (EOFError, OSError):
                # The parent died (or closed us): nobody will clean up after us.
                shutil.rmtree(self._init.run_dir, ignore_errors=True)
                _hard_exit(0)
            if frame[-1] == Kind.RELEASE:
                self._pool.release(parse(frame)[1])
                self._inbox.put(b"")  # the main thread collects them (see SegmentPool)
                continue
            if frame[-1] == Kind.TICKET:
                self._tickets.put(parse(frame)[1])
                continue
            if frame[-1] == Kind.STOP:
                self._stopping = True
                self._inbox.put(None)
                timer = threading.Timer(STOP_GRACE_S, _hard_exit, args=(0,))
                timer.daemon = True
                timer.start()
                return
            self._inbox.put(frame)

    def _run_batch(self, app: ClientApp, frame: bytes) -> None:
        kind, header, payload = parse(frame)
        if kind == Kind.DROP:
            self._maps.drop(header)
            return
        messages: list[Message] = pickle.loads(payload, buffers=self._buffers(*header))
        messages.reverse()
        self._flush_at = time.monotonic() + self._init.flush_interval
        while messages:
            if self._stopping:
                return
            # Dropped once handled: its arrays (perhaps a whole model) go before the reply
            # is packed, unless the ClientApp keeps them.
            message = messages.pop()
            message_type = message.metadata.message_type
            # Replies wait for company only while handlers are quick: none waits for a slow one.
            if self._outbox and self._took.get(message_type, 0.0) > self._wait:
                self._flush()
            started = time.monotonic()
            reply = self._handle(app, message)
            del message
            self._took[message_type] = time.monotonic() - started
            self._send_releases()
            self._outbox.append(reply)
            if reply.content is not None:  # large replies go at once: the parent maps them
                self._outbox_bytes += sum(r.nbytes for r in reply.content.array_records.values())
            if self._outbox_bytes >= FLUSH_BYTES or time.monotonic() >= self._flush_at:
                self._flush()
        self._flush()

    def _buffers(
        self, segment: str | None, capacity: int, spans: list[tuple[Any, ...]]
    ) -> list[memoryview]:
        """Views of a batch's large buffers: in the push's segment, or (4-tuple spans) in
        shared buffers of the parent, mapped for this batch only."""
        whole = self._maps.open(segment, capacity) if segment is not None else None
        shared: dict[str, memoryview] = {}
        buffers: list[memoryview] = []
        for span in spans:
            offset, nbytes = span[0], span[1]
            if len(span) == 4:
                path = span[2]
                view = shared.get(path)
                if view is None:
                    view = shared[path] = self._map_shared(path, span[3])
            else:
                assert whole is not None
                view = whole
            buffers.append(view[offset : offset + nbytes])
        return buffers

    def _map_shared(self, path: str, capacity: int) -> memoryview:
        """A view of the parent's shared buffer ``path``; released when the last one goes."""
        anchor = np.frombuffer(map_file(path, capacity), dtype=np.uint8)
        weakref.finalize(anchor, self._released.append, path).atexit = False
        return anchor.data

    def _send_releases(self) -> None:
        if self._released:
            paths = [self._released.popleft() for _ in range(len(self._released))]
            self._send(control(Kind.RELEASE, paths))

    def _handle(self, app: ClientApp, message: Message) -> Message:
        md = message.metadata
        context = self._contexts.get(md.dst_node_id)
        if context is None:
            node = self._nodes.get(md.dst_node_id, NodeSpec(md.dst_node_id))
            context = make_context(node, run_id=self._init.run_id, run_config=self._init.run_config)
            self._contexts[md.dst_node_id] = context
        if time.time() > md.created_at + md.ttl:
            reason = f"the message expired (ttl {md.ttl:g} s) before node {md.dst_node_id} ran it"
            return Message.error_reply(message, Error(code=ErrorCode.REPLY_TIMEOUT, reason=reason))
        status = self._status
        status[1] = md.dst_node_id
        status[0] = 1
        reply = app(message, context)  # never raises Exception; a crash skips the next line
        status[0] = 0
        return reply

    # -- sending -----------------------------------------------------------------------
    def _flush(self) -> None:
        self._flush_at = time.monotonic() + self._init.flush_interval
        if not self._outbox:
            return
        replies, self._outbox, self._outbox_bytes = self._outbox, [], 0
        try:
            frame = self._pack(replies, self._upload(replies))
        except Exception as exc:  # e.g. /dev/shm full
            error = Error(
                code=ErrorCode.UNKNOWN,
                reason=f"the worker could not send the reply: {type(exc).__name__}: {exc}",
            )
            frame = self._pack([Message(error=error, metadata=m.metadata) for m in replies])
        self._send(frame)

    def _pack(self, replies: list[Message], stored: dict[int, str] | None = None) -> memoryview:
        out, entries = dump_each(
            replies, threshold=self._init.threshold, store=self._pool.write, stored=stored
        )
        return finish(out, Kind.REPLIES, (entries, self._pool.take_dropped()))

    # -- uploads (a SuperNode's worker, see ReplyUploader) --------------------------------
    def _upload(self, replies: list[Message]) -> dict[int, str]:
        """Upload the large arrays of ``replies`` with the :class:`ReplyUploader`;
        ``id(array)`` -> the content id each was stored under. The parent then gets the
        replies with those ids and never holds their bytes: no copy into shared memory, no
        read of it. Whatever fails (no ticket, the port unreachable) leaves the rest to the
        parent, which moves them as before."""
        push = self._push
        stored: dict[int, str] = {}
        if push is None or time.monotonic() < self._push_paused_until:
            return stored
        for reply in replies:
            records = reply.content.array_records.values() if reply.content is not None else ()
            node_id = reply.metadata.src_node_id
            for array in (a for record in records for a in record.values()):
                if array.nbytes < self._upload_min or id(array) in stored:
                    continue
                try:
                    object_id = push(node_id, array.memoryview())
                except (OSError, GladeError) as exc:
                    self._push_paused_until = time.monotonic() + UPLOAD_PAUSE_S
                    logger.warning(
                        "the ClientApp process could not upload a reply array (%s); the "
                        "node moves the replies for the next %g s",
                        exc,
                        UPLOAD_PAUSE_S,
                    )
                    return stored
                if object_id is None:  # no ticket now: the node moves the rest
                    return stored
                stored[id(array)] = object_id
        return stored

    def _connect_uploader(self, pickled: bytes) -> None:
        try:
            uploader: ReplyUploader = pickle.loads(pickled)
            self._upload_min = uploader.min_bytes
            self._push = uploader.connect(self._ticket)
        except Exception as exc:  # e.g. unreadable TLS files: the parent moves the replies
            logger.warning("the ClientApp process cannot upload replies itself: %s", exc)

    def _ticket(self, size: int) -> Any:
        """What uploading ``size`` bytes needs, asked of the parent (a SuperNode: a ticket
        from the SuperLink); None if the parent has none for it now."""
        self._ticket_seq += 1
        request = self._ticket_seq
        self._send(control(Kind.TICKET, (request, size)))
        deadline = time.monotonic() + TICKET_WAIT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                answer, ticket = self._tickets.get(timeout=left)
            except queue.Empty:
                break
            if answer == request:  # answers that came too late are dropped
                return ticket
        return None

    def _send(self, frame: bytes | memoryview) -> None:
        try:
            self._conn.send_bytes(frame)
        except OSError:
            _hard_exit(0)  # the parent is gone


def _hard_exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code)
