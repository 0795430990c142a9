"""`LocalBackend`: runs ClientApps in a pool of worker processes on this machine."""

from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from glade.errors import AppLoadError, ConfigError
from glade.message import Error, ErrorCode, Message
from glade.simulation.backend import (
    ClientAppSpec,
    NodeSpec,
    ReplyCallback,
    available_cpus,
    check_int,
)
from glade.simulation.process import (
    Slot,
    WorkerProcess,
    crash_reply,
    describe_exit,
    pickle_spec,
    stop_all,
    unanswered,
)
from glade.simulation.shared import SharedBuffers, SharedHolds
from glade.simulation.shm import RunDir, SegmentPool
from glade.simulation.wire import (
    BufferTable,
    Kind,
    batch_spans,
    control,
    finish,
    load_each,
    parse,
)
from glade.simulation.worker import WorkerInit

if TYPE_CHECKING:  # pragma: no cover
    from glade.simulation.worker import ReplyUploader

__all__ = ["LocalBackend"]

logger = logging.getLogger(__name__)

_POLL_S = 0.25  # how often the receiver checks for exits it cannot wait on (no pidfd)
_CLOSED = "the local backend is shut down"


class LocalBackend:
    """Runs ClientApps in worker processes: the default backend of ``run_simulation``.

    Each worker imports the ClientApp once and serves the nodes ``i % num_workers``, keeping
    their :class:`~glade.Context` in memory across rounds. Arrays of ``shm_threshold`` bytes
    or more travel through shared memory: a model sent to many nodes is written once per
    push, and arrays arrive as zero-copy, read-only NumPy views. A worker that dies
    (``os._exit``, segfault, out of memory) turns its pending messages into
    ``CLIENT_APP_CRASHED`` error replies and is restarted with fresh Contexts for its nodes.
    ``start`` raises :class:`~glade.AppLoadError` if the ClientApp cannot be imported.

    Options (``backend_config`` of ``run_simulation``):

    - ``num_workers``: worker processes (default: the CPUs this process may use).
    - ``shm_dir``: where the run's shared-memory folder goes (default ``/dev/shm``, else the
      temp dir). When it is full, arrays travel through the pipes instead (slower).
    - ``shm_threshold``: arrays smaller than this many bytes travel inside the messages.
    - ``flush_interval``: how long a worker may hold quick replies to send them together.
    - ``startup_timeout`` / ``stop_timeout``: seconds for the workers to load the ClientApp,
      and for ``shutdown`` to stop them (then they are killed).
    - ``tune_malloc``: let workers keep freed memory for reuse (glibc), which makes arrays
      allocated anew every round much cheaper; ``False`` returns memory to the OS eagerly.
    - ``shared``: a :class:`~glade.simulation.shared.SharedBuffers` whose buffers the caller
      filled (a SuperNode receives models into them): arrays over them reach the workers
      by reference, without a copy.
    - ``uploader`` and ``upload_ticket``: the workers upload their large reply arrays
      themselves (:class:`~glade.simulation.worker.ReplyUploader`; a SuperNode's go to the
      SuperLink's bulk port), with what ``upload_ticket(size)`` returns in this process
      (None: nothing now, the reply comes through shared memory as usual); such replies
      reach ``on_replies`` holding :class:`~glade.array.StoredArray` stand-ins.

    >>> from glade.simulation import run_simulation  # doctest: +SKIP
    >>> run_simulation(server_app, client_app, num_supernodes=100,  # doctest: +SKIP
    ...                backend="local", backend_config={"num_workers": 4})
    """

    def __init__(
        self,
        *,
        num_workers: int | None = None,
        shm_dir: str | None = None,
        shm_threshold: int = 64 * 1024,
        flush_interval: float = 0.01,
        startup_timeout: float = 300.0,
        stop_timeout: float = 1.0,
        tune_malloc: bool = True,
        shared: SharedBuffers | None = None,
        uploader: ReplyUploader | None = None,
        upload_ticket: Callable[[int], Any] | None = None,
    ) -> None:
        if num_workers is None:
            num_workers = available_cpus()
        check_int("num_workers", num_workers, minimum=1)
        check_int("shm_threshold", shm_threshold, minimum=1)
        for name, value in (
            ("flush_interval", flush_interval),
            ("startup_timeout", startup_timeout),
            ("stop_timeout", stop_timeout),
        ):
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
        self.num_workers = num_workers
        self._shm_dir = shm_dir
        self._threshold = shm_threshold
        self._flush_interval = float(flush_interval)
        self._startup_timeout = float(startup_timeout)
        self._stop_timeout = float(stop_timeout)
        self._tune_malloc = bool(tune_malloc)
        self._cond = threading.Condition()
        self._slots: list[Slot] = []
        self._slot_of: dict[int, Slot] = {}
        self._pool: SegmentPool | None = None  # segments of the instructions' large buffers
        self._holders: dict[str, set[WorkerProcess]] = {}  # segment -> workers that use it
        self._shared = SharedHolds(shared)  # the caller's buffers sent, and to whom
        self._uploader = uploader if upload_ticket is not None else None
        self._upload_ticket = upload_ticket
        self._write_lock = threading.Lock()
        self._template: dict[str, Any] = {}
        self._on_replies: ReplyCallback | None = None
        self._run_dir: RunDir | None = None
        self._receiver: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._closing = False
        self._warned_full = False

    @property
    def run_dir(self) -> str | None:
        """The folder holding this run's shared-memory segments (removed at shutdown)."""
        return None if self._run_dir is None else str(self._run_dir.path)

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers."""
        with self._cond:
            return [s.proc.pid for s in self._slots if s.proc is not None]

    # -- lifecycle ---------------------------------------------------------------------
    def start(
        self,
        *,
        client_app: ClientAppSpec,
        nodes: Sequence[NodeSpec],
        run_id: int,
        run_config: Mapping[str, Any],
        on_replies: ReplyCallback,
    ) -> None:
        if self._run_dir is not None or self._closing:
            raise RuntimeError("a LocalBackend runs one simulation; create a new one per run")
        if not nodes:
            raise ConfigError("a simulation needs at least one node")
        self._on_replies = on_replies
        try:
            spec, main_prep = pickle_spec(client_app)
            with self._cond:  # a shutdown() meanwhile finds all of it, or none of it, started
                if self._closing:
                    raise RuntimeError(_CLOSED)
                self._run_dir = RunDir(self._shm_dir)
                self._pool = SegmentPool(str(self._run_dir.path), "m")
                count = min(self.num_workers, len(nodes))
                self._slots = [Slot(i, list(nodes[i::count])) for i in range(count)]
                self._slot_of = {n.node_id: s for s in self._slots for n in s.nodes}
                self._template = {
                    "spec": spec,
                    "main_prep": main_prep,
                    "sys_path": [p or os.getcwd() for p in sys.path],
                    "run_id": run_id,
                    "run_config": dict(run_config),
                    "run_dir": str(self._run_dir.path),
                    "threshold": self._threshold,
                    "flush_interval": self._flush_interval,
                    "tune_malloc": self._tune_malloc,
                    "uploader": pickle.dumps(self._uploader) if self._uploader else b"",
                }
                self._wake_r, self._wake_w = os.pipe()
                for slot in self._slots:
                    self._launch(slot)
                self._receiver = threading.Thread(
                    target=self._receive_loop, name="glade-local-receiver", daemon=True
                )
                self._receiver.start()
            self._await_ready()
        except BaseException:
            self.shutdown()
            raise

    def _launch(self, slot: Slot) -> None:
        """Start a worker for ``slot`` (lock held)."""
        assert self._run_dir is not None
        slot.generation += 1
        prefix = f"w{slot.index}g{slot.generation}-"
        status = self._run_dir.file(prefix + "status")
        with open(status, "wb") as f:
            f.write(bytes(16))
        init = WorkerInit(nodes=slot.nodes, prefix=prefix, status_path=status, **self._template)
        slot.proc = WorkerProcess(init, slot=slot.index, name=f"glade-worker-{slot.index}")

    def _await_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        with self._cond:
            while True:
                if self._closing:  # shutdown() from another thread: stop waiting at once
                    raise RuntimeError(f"{_CLOSED} (it was stopped while starting)")
                broken = next((s.broken for s in self._slots if s.broken is not None), None)
                if broken is not None:
                    raise AppLoadError(broken.reason)
                if all(s.proc is not None and s.proc.ready for s in self._slots):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AppLoadError(
                        f"the ClientApp did not load in the worker processes within "
                        f"{self._startup_timeout:g} s (LocalBackend startup_timeout)"
                    )
                self._cond.wait(min(left, 0.1))

    def shutdown(self) -> None:
        with self._cond:
            if self._closing:
                return
            self._closing = True
            procs = [s.proc for s in self._slots if s.proc is not None]
            for slot in self._slots:
                slot.proc = None
            self._cond.notify_all()
        if self._receiver is not None:
            os.write(self._wake_w, b"x")
            self._receiver.join(timeout=2.0)
        stop_all(procs, timeout=self._stop_timeout)
        for proc in procs:
            proc.close()
        self._holders.clear()
        with self._cond:
            self._shared.release_all()
        with self._write_lock:
            if self._pool is not None:
                self._pool.close()
        if self._run_dir is not None:
            self._run_dir.remove()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    # -- sending -----------------------------------------------------------------------
    def submit(self, messages: Sequence[Message]) -> None:
        if self._run_dir is None or self._closing:
            raise RuntimeError("LocalBackend.submit() needs a started, running backend")
        groups, failed = self._group(messages)
        # One pickle per worker; their large buffers go, once each, into one shared segment
        # (those already in the caller's shared buffers are sent by reference).
        table = BufferTable(self._threshold)
        dumped = [(slot, batch, *table.dump(batch)) for slot, batch in groups.items()]
        places = self._shared.locate(table.buffers)
        own = [buf for buf, place in zip(table.buffers, places, strict=True) if place is None]
        try:
            segment, offsets, capacity, dropped = self._write(own)
        except OSError as exc:  # shared memory is full: send the arrays in-band (slower)
            self._warn_full(exc)
            table = BufferTable(sys.maxsize)
            dumped = [(slot, batch, *table.dump(batch)) for slot, batch in groups.items()]
            segment, offsets, capacity, dropped, places = None, [], 0, [], []
        spans_of = batch_spans(table.buffers, places, offsets)
        with self._cond:
            holders: set[WorkerProcess] = set()
            for slot, batch, out, used in dumped:
                proc = slot.proc
                if proc is None or slot.broken is not None:
                    error = slot.broken or Error(code=ErrorCode.NODE_UNAVAILABLE, reason=_CLOSED)
                    failed.extend(Message.error_reply(m, error) for m in batch)
                    continue
                spans = [spans_of[i] for i in used]
                slot.pending.update((m.metadata.message_id, m.metadata) for m in batch)
                in_segment = any(len(span) == 2 for span in spans)
                header = (segment if in_segment else None, capacity, spans)
                for path in {span[2] for span in spans if len(span) == 4}:
                    self._shared.hold(path, proc)
                proc.send(finish(out, Kind.BATCH, header))
                if in_segment:
                    holders.add(proc)
            if segment is not None and holders:
                self._holders[segment] = holders
            elif segment is not None:  # every worker it was for is gone
                self._release_segment(segment)
            for slot in self._slots if dropped else ():  # deleted: the workers may unmap them
                if slot.proc is not None:
                    slot.proc.send(control(Kind.DROP, dropped))
        self._deliver(failed)

    def _warn_full(self, exc: OSError) -> None:
        if not self._warned_full:
            self._warned_full = True
            logger.warning(
                "local backend: no room in shared memory (%s: %s); arrays now travel through "
                "the worker pipes, which is slower. Give %s more space (Docker: --shm-size) "
                "or pass LocalBackend(shm_dir=...) a folder with room",
                type(exc).__name__,
                exc,
                self._run_dir.path.parent if self._run_dir is not None else "/dev/shm",
            )

    def _group(
        self, messages: Sequence[Message]
    ) -> tuple[dict[Slot, list[Message]], list[Message]]:
        """Messages per worker slot, and error replies for nodes not in this run."""
        groups: dict[Slot, list[Message]] = {}
        failed: list[Message] = []
        for message in messages:
            slot = self._slot_of.get(message.metadata.dst_node_id)
            if slot is None:
                reason = f"node {message.metadata.dst_node_id} is not part of this simulation"
                error = Error(code=ErrorCode.NODE_UNAVAILABLE, reason=reason)
                failed.append(Message.error_reply(message, error))
            else:
                groups.setdefault(slot, []).append(message)
        return groups, failed

    def _write(self, buffers: list[memoryview]) -> tuple[str | None, list[int], int, list[str]]:
        """Write the buffers of a push into a segment: (path, offsets, capacity, dropped)."""
        with self._write_lock:
            if self._closing or self._pool is None:
                raise RuntimeError("LocalBackend.submit() needs a started, running backend")
            if not buffers:
                return None, [], 0, self._pool.take_dropped()
            path, offsets, capacity = self._pool.write(buffers)
            return path, offsets, capacity, self._pool.take_dropped()

    def _deliver(self, replies: list[Message]) -> None:
        if replies and self._on_replies is not None:
            try:
                self._on_replies(replies)
            except Exception:
                logger.exception("the reply callback of the local backend raised")

    # -- receiving ---------------------------------------------------------------------
    def _receive_loop(self) -> None:
        """Read reply frames and notice exits until shutdown (the receiver thread)."""
        while True:
            with self._cond:
                if self._closing:
                    return
                procs = [s.proc for s in self._slots if s.proc is not None]
            owners: dict[Any, WorkerProcess | None] = {self._wake_r: None}
            for proc in procs:
                owners[proc.conn] = proc
                if proc.pidfd is not None:
                    owners[proc.pidfd] = proc
            ready = wait(list(owners), timeout=_POLL_S)
            exited: list[WorkerProcess] = []
            for obj in ready:
                owner = owners[obj]
                if owner is None:
                    os.read(self._wake_r, 64)
                elif (obj is not owner.conn or not self._drain(owner)) and owner not in exited:
                    exited.append(owner)
            for proc in procs:  # exits a pidfd cannot signal (no pidfd, or none was ready)
                if (
                    proc not in exited
                    and (proc.pidfd is None or not ready)
                    and proc.poll() is not None
                ):
                    exited.append(proc)
            for proc in exited:
                try:
                    self._on_exit(proc)
                except Exception:  # never let the receiver die: the run would hang
                    logger.exception("local backend: handling the exit of worker %s", proc.pid)

    def _drain(self, proc: WorkerProcess, limit: int = 64) -> bool:
        """Handle the frames waiting from ``proc``; False once its socket is closed."""
        for _ in range(limit):
            try:
                if not proc.conn.poll():
                    return True
                frame = proc.conn.recv_bytes()
            except (EOFError, OSError):
                return False
            try:
                self._handle(proc, frame)
            except Exception:
                logger.exception("local backend: bad frame from worker %s", proc.pid)
        return True

    def _handle(self, proc: WorkerProcess, frame: bytes) -> None:
        kind, header, payload = parse(frame)
        if kind == Kind.REPLIES:
            entries, dropped = header
            proc.mappings.drop(dropped)
            replies: list[Message] = load_each(payload, entries, proc.mappings.open)
            with self._cond:
                pending = self._slots[proc.slot].pending
                for reply in replies:
                    pending.pop(reply.metadata.reply_to_message_id, None)
            self._deliver(replies)
        elif kind == Kind.RELEASE:
            with self._cond:
                for path in header:
                    if not self._shared.unhold(path, proc):
                        self._unhold(path, proc)
        elif kind == Kind.TICKET:  # a round trip to the SuperLink: not in the receiver
            threading.Thread(
                target=self._answer_ticket, args=(proc, *header), name="glade-bulk-ticket"
            ).start()
        elif kind == Kind.READY:
            with self._cond:
                proc.ready = True
                self._cond.notify_all()
        elif kind == Kind.LOAD_FAILED:
            reason = f"the ClientApp could not be loaded in a worker process: {header}"
            with self._cond:
                slot = self._slots[proc.slot]
                slot.broken = Error(code=ErrorCode.LOAD_CLIENT_APP, reason=reason)
                lost, slot.pending = list(slot.pending.values()), {}
                self._cond.notify_all()
            self._deliver([Message.error_reply(unanswered(md), slot.broken) for md in lost])

    def _answer_ticket(self, proc: WorkerProcess, request: int, size: int) -> None:
        ticket = None
        if self._upload_ticket is not None:
            try:
                ticket = self._upload_ticket(size)
            except Exception as exc:  # the worker then leaves the upload to the node
                logger.debug("no upload ticket for a worker: %s", exc)
        proc.send(control(Kind.TICKET, (request, ticket)))

    def _unhold(self, path: str, proc: WorkerProcess) -> None:
        """``proc`` no longer uses segment ``path`` (lock held): free it once nobody does."""
        holders = self._holders.get(path)
        if holders is not None:
            holders.discard(proc)
            if not holders:
                del self._holders[path]
                self._release_segment(path)

    def _release_segment(self, path: str) -> None:
        assert self._pool is not None
        self._pool.release([path])

    def _on_exit(self, proc: WorkerProcess) -> None:
        while self._drain(proc):  # replies sent before the end are still good
            if not proc.conn.poll(0.05):
                break
        proc.reap(timeout=1.0)
        busy, culprit = proc.status()
        how = describe_exit(proc.popen.returncode)
        with self._cond:
            slot = self._slots[proc.slot]
            if slot.proc is not proc:
                return  # shutdown owns it
            slot.proc = None
            lost, slot.pending = list(slot.pending.values()), {}
            for path in list(self._holders):
                self._unhold(path, proc)
            self._shared.drop(proc)
            if slot.broken is None and not proc.ready and not self._closing:
                reason = f"the worker process ended with {how} while loading the ClientApp"
                slot.broken = Error(code=ErrorCode.LOAD_CLIENT_APP, reason=reason)
            broken = slot.broken  # the error for what was pending, if it never got going
            if slot.broken is None and not self._closing:
                self._restart(slot, proc, how, len(lost))
            self._cond.notify_all()
        proc.close()
        instructions = [unanswered(md) for md in lost]
        if broken is not None:
            self._deliver([Message.error_reply(m, broken) for m in instructions])
        else:
            self._deliver([crash_reply(m, how, culprit if busy else None) for m in instructions])

    def _restart(self, slot: Slot, proc: WorkerProcess, how: str, lost: int) -> None:
        """Start a new worker for ``slot`` after ``proc`` ended (lock held)."""
        logger.warning(
            "local backend: worker %d (pid %d) ended with %s; %d pending message(s) failed; "
            "restarting it (the Contexts of its %d nodes start afresh)",
            slot.index,
            proc.pid,
            how,
            lost,
            len(slot.nodes),
        )
        try:
            self._launch(slot)
        except Exception as exc:  # e.g. out of processes or file descriptors
            logger.exception("local backend: could not restart worker %d", slot.index)
            reason = f"the worker process ended with {how} and could not be restarted: {exc}"
            slot.broken = Error(code=ErrorCode.CLIENT_APP_CRASHED, reason=reason)
