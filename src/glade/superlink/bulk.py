"""The SuperLink's bulk port: large objects to and from nodes outside gRPC.

See :mod:`glade.transport.bulk` for the protocol. :class:`Tickets` hands out single-use
tickets (32 random bytes) bound to one node and one object, valid for ``ttl_s`` seconds;
:class:`BulkServer` listens on one TCP port (TLS with the Fleet API's certificate when the
SuperLink has one), and for each connection reads the magic and the ticket within a few
seconds, then serves the ticket's object from the store with ``sendfile`` or receives an
upload into a temporary file of the store, hashing as it receives, and names it by that
hash (checked against the id the ticket names, if any). A connection without a valid
ticket is closed at once; at most ``max_connections`` transfers run at once (more are
closed at once, and the node falls back to gRPC); every read and write has a timeout.
Objects are addressed by validated hex ids only, never by a path the client sends.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from glade.errors import LimitExceededError, NotFoundError
from glade.superlink.garbage import GarbageCollector
from glade.superlink.object_store import ObjectStore, check_object_id, commit_temp, new_temp
from glade.transport.bulk import MAGIC, TICKET_BYTES, BulkError, receive_into, recv_exact

__all__ = ["BulkServer", "Grant", "Tickets", "server_context"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a ticket allows: one node moving one object, once, until ``expires``."""

    node_id: int
    object_id: str  # empty: an unnamed upload
    upload: bool
    size: int
    expires: float


class Tickets:
    """Single-use tickets, each bound to a :class:`Grant`; at most ``max_open`` at once."""

    def __init__(
        self,
        *,
        ttl_s: float = 60.0,
        max_open: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self._max_open = max_open
        self._clock = clock
        self._open: dict[bytes, Grant] = {}
        self._lock = threading.Lock()

    def issue(self, node_id: int, object_id: str, *, upload: bool, size: int) -> bytes:
        now = self._clock()
        with self._lock:
            for key in [k for k, g in self._open.items() if g.expires <= now]:
                del self._open[key]
            if len(self._open) >= self._max_open:
                raise LimitExceededError(
                    f"{len(self._open)} bulk tickets are open: retry later (or use PushObject)"
                )
            ticket = secrets.token_bytes(TICKET_BYTES)
            self._open[ticket] = Grant(node_id, object_id, upload, size, now + self.ttl_s)
        return ticket

    def redeem(self, ticket: bytes) -> Grant | None:
        """The ticket's grant, if it is open and not expired; it is used up either way."""
        with self._lock:
            grant = self._open.pop(ticket, None)
        if grant is None or grant.expires <= self._clock():
            return None
        return grant


def server_context(certfile: Path, keyfile: Path, ca_certfile: Path | None) -> ssl.SSLContext:
    """TLS of the bulk port: the Fleet API's certificate (and client CA, under mutual TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certfile), str(keyfile))
    if ca_certfile is not None:
        context.load_verify_locations(cafile=str(ca_certfile))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


Busy = Callable[[int], AbstractContextManager[object]]


class BulkServer:
    """The bulk port of a SuperLink (see the module docstring)."""

    def __init__(
        self,
        store: ObjectStore,
        garbage: GarbageCollector,
        *,
        host: str,
        port: int = 0,
        context: ssl.SSLContext | None = None,
        tickets: Tickets | None = None,
        busy: Busy | None = None,
        max_connections: int = 32,
        handshake_timeout_s: float = 5.0,
        timeout_s: float = 30.0,
    ) -> None:
        self.store = store
        self.garbage = garbage
        self.tickets = tickets or Tickets()
        self._context = context
        self._busy = busy
        self._slots = threading.BoundedSemaphore(max_connections)
        self._handshake_timeout = handshake_timeout_s
        self._timeout = timeout_s
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(64)
        except OSError:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]
        self.transfers = 0
        """Objects moved so far (both directions)."""
        self._count_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="glade-bulk", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(2.0)

    def open(self, node_id: int, object_id: str, *, upload: bool, size: int) -> tuple[bytes, int]:
        """A ticket for ``node_id`` to download ``object_id`` (returns it and its size), or to
        upload ``size`` bytes (named by their hash; checked against ``object_id`` if given)."""
        if object_id:
            check_object_id(object_id)
        if upload:
            if size > self.store.max_object_size:
                raise LimitExceededError(
                    f"object {object_id or '(unnamed)'} has {size} bytes, more than the "
                    f"{self.store.max_object_size} this SuperLink accepts"
                )
        else:
            stored = self.store.size(object_id)
            if stored is None:
                raise NotFoundError(f"object {object_id} is not stored here")
            size = stored
        return self.tickets.issue(node_id, object_id, upload=upload, size=size), size

    # -- connections -----------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)  # e.g. out of file descriptors: do not spin
                continue
            if not self._slots.acquire(blocking=False):
                conn.close()  # too many transfers at once: the node falls back to gRPC
                continue
            threading.Thread(
                target=self._serve, args=(conn,), name="glade-bulk-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(self._handshake_timeout)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                conn = self._context.wrap_socket(conn, server_side=True)
            hello = recv_exact(conn, len(MAGIC) + TICKET_BYTES)
            grant = None
            if hmac.compare_digest(hello[: len(MAGIC)], MAGIC):
                grant = self.tickets.redeem(hello[len(MAGIC) :])
            if grant is None:
                logger.warning("bulk port: refused a connection without a valid ticket")
                return
            conn.settimeout(self._timeout)
            busy = self._busy(grant.node_id) if self._busy else contextlib.nullcontext()
            with busy:
                done = self._receive(conn, grant) if grant.upload else self._send(conn, grant)
            if done:
                with self._count_lock:
                    self.transfers += 1
        except (OSError, BulkError, ValueError) as exc:
            logger.info("bulk transfer failed: %s", exc)
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            self._slots.release()

    def _send(self, conn: socket.socket, grant: Grant) -> bool:
        try:
            fd = self.store.open_locked(grant.object_id)
        except NotFoundError:
            return False  # collected meanwhile: the node falls back (NOT_FOUND there)
        with open(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            conn.sendall(b"OK" + struct.pack(">Q", size))
            conn.sendfile(f, 0, size)
        return True

    def _receive(self, conn: socket.socket, grant: Grant) -> bool:
        owner: Hashable = ("node", grant.node_id)
        if grant.object_id:  # pinned before it lands: the GC may run meanwhile
            self.garbage.pin(owner, [grant.object_id])
        fd, tmp = new_temp(self.store.root, grant.size, prefix="bulk-")
        try:
            os.ftruncate(fd, grant.size)

            def write(offset: int, block: memoryview) -> None:
                while block:
                    n = os.pwrite(fd, block, offset)
                    block, offset = block[n:], offset + n

            digest = receive_into(conn, grant.size, write)
            os.close(fd)
            fd = -1
            if grant.object_id and digest != grant.object_id:
                tmp.unlink(missing_ok=True)  # gone before the node hears of it
                conn.sendall(
                    b"ER" + f"the bytes hash to {digest}, not to {grant.object_id}".encode()
                )
                return False
            commit_temp(self.store.root, digest, tmp)
            self.garbage.pin(owner, [digest])
            conn.sendall(b"OK" + digest.encode("ascii"))
            return True
        finally:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)
