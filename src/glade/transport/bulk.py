"""The bulk path: large objects over a plain TCP (or TLS) connection instead of gRPC.

gRPC copies and frames every chunk several times; for a model of hundreds of MB that costs
more CPU than the transfer itself. So a SuperLink may open a *bulk port*: a node asks, over
its authenticated Fleet channel (``OpenBulk``), for a single-use *ticket* bound to itself and
to one object, connects to the bulk port, sends :data:`MAGIC` and the ticket, and then

- download: reads ``b"OK"``, the size (8 bytes, big-endian) and the object's bytes, which
  the SuperLink sends straight from its store (``sendfile``); the node receives them into
  its buffer and hashes them on the way (:func:`receive_into`), checking the id as always;
- upload: sends exactly the announced number of bytes, and reads ``b"OK"`` and the 64 hex
  digits the SuperLink named the object by (it hashes as it receives), or ``b"ER"`` and why.

Anything unexpected closes the connection; the node then falls back to the gRPC stream.
:class:`BulkClient` is the node's side; :mod:`glade.superlink.bulk` the SuperLink's.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from glade import digest
from glade.errors import SerdeError
from glade.transport.chunks import Allocate, PrivateBuffer, ReceiveBuffer

__all__ = [
    "BLOCK",
    "MAGIC",
    "MIN_BULK_BYTES",
    "TICKET_BYTES",
    "BulkClient",
    "BulkError",
    "BulkTarget",
    "Ticket",
    "client_context",
    "receive_hashed",
    "receive_into",
    "recv_exact",
]

MAGIC = b"GLB1"
"""First bytes a client sends on the bulk port (then the ticket)."""
TICKET_BYTES = 32
BLOCK = 4 * 1024 * 1024
"""Bytes received (and hashed) at a time."""
MIN_BULK_BYTES = 1024 * 1024
"""Objects smaller than this keep the gRPC path (a ticket costs a round trip)."""
_ERROR_MAX = 1024


class BulkError(ConnectionError):
    """The bulk path failed (the caller falls back to gRPC)."""


Ticket = tuple[bytes, int, int]
"""(ticket, port, size) as OpenBulk answered."""


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from ``sock`` (BulkError if it closes first)."""
    out = bytearray(n)
    view = memoryview(out)
    pos = 0
    while pos < n:
        got = sock.recv_into(view[pos:])
        if not got:
            raise BulkError(f"the peer closed the connection after {pos} of {n} bytes")
        pos += got
    return bytes(out)


Sink = Callable[[int, memoryview], None]


def receive_into(sock: socket.socket, total: int, sink: Sink) -> str:
    """Receive ``total`` bytes, hand each block to ``sink(offset, block)`` and return their
    content id (BLAKE3, hex). Hashing and the sink run in a second thread, one block behind the
    socket, over a few rotating buffers (so memory stays at a few blocks)."""
    hasher = digest.hasher()
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    for _ in range(3):
        free.put(bytearray(min(BLOCK, max(total, 1))))
    work: queue.SimpleQueue[tuple[int, memoryview, bytearray] | None] = queue.SimpleQueue()
    failure: list[BaseException] = []

    def consume() -> None:
        while (item := work.get()) is not None:
            offset, view, buf = item
            try:
                if not failure:
                    hasher.update(view)
                    sink(offset, view)
            except BaseException as exc:
                failure.append(exc)
            finally:
                view.release()
                free.put(buf)

    worker = threading.Thread(target=consume, name="glade-bulk-hash", daemon=True)
    worker.start()
    try:
        pos = 0
        while pos < total and not failure:
            buf = free.get()
            size = min(len(buf), total - pos)
            view = memoryview(buf)[:size]
            got = 0
            while got < size:
                n = sock.recv_into(view[got:])
                if not n:
                    raise BulkError(f"the peer closed the connection at {pos + got} of {total} B")
                got += n
            work.put((pos, view, buf))
            pos += size
    finally:
        work.put(None)
        worker.join()
    if failure:
        raise failure[0]
    return hasher.hexdigest()


def receive_hashed(sock: socket.socket, target: memoryview) -> str:
    """Receive ``len(target)`` bytes straight into ``target`` (e.g. shared memory: no
    intermediate buffer) and return their content id. A second thread hashes each block as
    soon as it is complete, one block behind the socket."""
    view = target.cast("B") if target.format != "B" or target.ndim != 1 else target
    total = view.nbytes
    hasher = digest.hasher()
    done: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()

    def consume() -> None:
        while (span := done.get()) is not None:
            hasher.update(view[span[0] : span[1]])

    worker = threading.Thread(target=consume, name="glade-bulk-hash", daemon=True)
    worker.start()
    try:
        pos = 0
        while pos < total:
            end = min(pos + BLOCK, total)
            got = pos
            while got < end:
                n = sock.recv_into(view[got:end])
                if not n:
                    raise BulkError(f"the peer closed the connection at {got} of {total} B")
                got += n
            done.put((pos, end))
            pos = end
    finally:
        done.put(None)
        worker.join()
    return hasher.hexdigest()


def client_context(
    root_certificates: Path | None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> ssl.SSLContext:
    """The TLS context a node connects to the bulk port with (the Fleet API's trust)."""
    context = ssl.create_default_context(
        cafile=str(root_certificates) if root_certificates else None
    )
    if certfile is not None:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return context


@dataclass(frozen=True, slots=True)
class BulkTarget:
    """How another process of a node (its ClientApp process) uploads to the same bulk port:
    the SuperLink's host and the files of the node's TLS settings (all picklable). The
    tickets still come from the node, which alone talks to the Fleet API. A
    :class:`~glade.simulation.worker.ReplyUploader`."""

    host: str
    root_certificates: str | None = None  # None: plain TCP, as the node's Fleet channel
    certfile: str | None = None
    keyfile: str | None = None
    timeout_s: float = 30.0
    min_bytes: int = MIN_BULK_BYTES

    def connect(
        self, ticket: Callable[[int], Ticket | None]
    ) -> Callable[[int, memoryview], str | None]:
        """``push(node_id, data)`` of a :class:`BulkClient` whose upload tickets come from
        ``ticket(size)``."""
        client = BulkClient(
            self.host,
            lambda _node, _object, _upload, size: ticket(size),
            context=self.context(),
            timeout_s=self.timeout_s,
        )
        return client.push

    def context(self) -> ssl.SSLContext | None:
        """The TLS context to connect with (None: plain TCP)."""
        if self.root_certificates is None:
            return None
        return client_context(
            Path(self.root_certificates),
            Path(self.certfile) if self.certfile else None,
            Path(self.keyfile) if self.keyfile else None,
        )


class BulkClient:
    """Moves objects over the bulk port of the SuperLink at ``host``.

    ``open_ticket(node_id, object_id, upload, size)`` asks for a ticket over the authenticated
    channel (OpenBulk) and returns (ticket, port, size), or None if the SuperLink has no
    bulk port. ``context``: TLS (None: plain TCP, as the Fleet API).
    """

    def __init__(
        self,
        host: str,
        open_ticket: Callable[[int, str, bool, int], Ticket | None],
        *,
        context: ssl.SSLContext | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.host = host.strip("[]")
        self._open_ticket = open_ticket
        self._context = context
        self._timeout = timeout_s
        self._connect_timeout = connect_timeout_s
        self._active: set[socket.socket] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Cut the transfers in progress (they fail at once)."""
        with self._lock:
            active = list(self._active)
        for sock in active:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @contextlib.contextmanager
    def _connection(self, port: int, ticket: bytes) -> Iterator[socket.socket]:
        sock = self._connect(port, ticket)
        with self._lock:
            self._active.add(sock)
        try:
            yield sock
        finally:
            with self._lock:
                self._active.discard(sock)
            sock.close()

    def _connect(self, port: int, ticket: bytes) -> socket.socket:
        sock = socket.create_connection((self.host, port), timeout=self._connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self._timeout)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self.host)
            sock.sendall(MAGIC + ticket)
        except BaseException:
            sock.close()
            raise
        return sock

    def pull(
        self, node_id: int, object_id: str, *, max_size: int, allocate: Allocate | None = None
    ) -> memoryview | None:
        """Download and verify one object; None if the SuperLink has no bulk port.

        Raises BulkError/OSError when the bulk path fails, SerdeError if the bytes do not
        hash to ``object_id`` or the object is larger than ``max_size``.
        """
        answer = self._open_ticket(node_id, object_id, False, 0)
        if answer is None:
            return None
        ticket, port, size = answer
        if size > max_size:
            raise SerdeError(
                f"object {object_id} has {size} bytes, more than the {max_size} allowed"
            )
        with self._connection(port, ticket) as sock:
            head = recv_exact(sock, 10)
            if head[:2] != b"OK" or struct.unpack(">Q", head[2:])[0] != size:
                raise BulkError(f"unexpected answer {head!r} from the bulk port")
            buffer: ReceiveBuffer | None = allocate(size) if allocate is not None else None
            if buffer is None:
                buffer = PrivateBuffer(size)
            try:
                actual = receive_hashed(sock, buffer.array.data)
            finally:
                buffer.close()
        if actual != object_id:
            raise SerdeError(
                f"object {object_id} does not match its bytes (blake3 {actual}): "
                "corrupted in transit"
            )
        return buffer.array.data.toreadonly()

    def push(self, node_id: int, data: memoryview, *, object_id: str = "") -> str | None:
        """Upload bytes; returns the id the SuperLink stored them under (checked against
        ``object_id`` if given), or None if the SuperLink has no bulk port."""
        view = data.cast("B") if data.format != "B" or data.ndim != 1 else data
        answer = self._open_ticket(node_id, object_id, True, view.nbytes)
        if answer is None:
            return None
        ticket, port, _ = answer
        with self._connection(port, ticket) as sock:
            for start in range(0, view.nbytes, BLOCK):
                sock.sendall(view[start : start + BLOCK])
            head = recv_exact(sock, 2)
            if head == b"OK":
                stored = recv_exact(sock, 64).decode("ascii", "replace")
            elif head == b"ER":
                why = sock.recv(_ERROR_MAX).decode("utf-8", "replace")
                raise BulkError(f"the SuperLink refused the upload: {why}")
            else:
                raise BulkError(f"unexpected answer {head!r} from the bulk port")
        if object_id and stored != object_id:
            raise SerdeError(f"the peer stored object {stored!r} when sent {object_id!r}")
        return stored
