"""`WorkerProcess`: the parent's handle on one worker process of the local backend.

Workers are started with :mod:`subprocess` (``python -c COMMAND FD``) rather than
:mod:`multiprocessing`: the parent's ``__main__`` is re-imported only when the ClientApp needs
it, and no resource-tracker process is left running after the run. Frames go out through a
sender thread, so :meth:`send` never blocks, even on a worker stuck in client code.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from glade.errors import AppLoadError
from glade.message import Error, ErrorCode, Message, Metadata
from glade.records import RecordDict
from glade.simulation.backend import ClientAppSpec, NodeSpec
from glade.simulation.shm import MappingCache
from glade.simulation.wire import Kind, control
from glade.simulation.worker import COMMAND, WorkerInit

__all__ = [
    "Slot",
    "WorkerProcess",
    "crash_reply",
    "describe_exit",
    "pickle_spec",
    "stop_all",
    "unanswered",
]

_STOP = control(Kind.STOP)
_RELEASE = b"release"  # a token for the sender thread, never sent as such


class WorkerProcess:
    """A started worker: its process, its socket (:attr:`conn`) and a sender thread."""

    def __init__(self, init: WorkerInit, *, slot: int, name: str) -> None:
        self.init = init
        self.slot = slot
        self.name = name
        self.ready = False
        self.stopping = False
        self._closed = False
        parent, child = socket.socketpair()
        try:
            with _sigint_blocked():
                self.popen = subprocess.Popen(
                    [sys.executable, "-c", COMMAND, str(child.fileno())],
                    pass_fds=(child.fileno(),),
                    stdin=subprocess.DEVNULL,  # stdout/stderr: shared with the parent
                )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        self.mappings = MappingCache(self.release)  # of the worker's reply segments
        self.pidfd = _pidfd_open(self.popen.pid)
        self._releases: collections.deque[str] = collections.deque()
        self._queue: queue.SimpleQueue[bytes | memoryview | None] = queue.SimpleQueue()
        self._queue.put(pickle.dumps(init, protocol=5))
        self._sender = threading.Thread(target=self._send_loop, name=f"{name}-sender", daemon=True)
        self._sender.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def send(self, frame: bytes | memoryview) -> None:
        """Queue a frame for the worker (never blocks)."""
        self._queue.put(frame)

    def release(self, path: str) -> None:
        """Tell the worker the parent no longer uses its segment ``path`` (any thread)."""
        if self._closed:
            return
        self._releases.append(path)
        self._queue.put(_RELEASE)

    def _send_loop(self) -> None:
        while (frame := self._queue.get()) is not None:
            if frame is _RELEASE:
                paths = [self._releases.popleft() for _ in range(len(self._releases))]
                if not paths:
                    continue  # already sent with an earlier token
                frame = control(Kind.RELEASE, paths)
            elif self.stopping and frame is not _STOP:
                continue
            try:
                self.conn.send_bytes(frame)
            except OSError:
                return  # the worker died; the receiver notices and handles it

    def request_stop(self) -> None:
        """Ask the worker to exit (it skips work still queued and cuts a hanging handler)."""
        self.stopping = True
        self._queue.put(_STOP)

    def poll(self) -> int | None:
        return self.popen.poll()

    def status(self) -> tuple[bool, int]:
        """(busy, node id) as last written by the worker: the node it was running if busy."""
        try:
            data = Path(self.init.status_path).read_bytes()
        except OSError:
            return False, 0
        busy, node = struct.unpack("=qq", data[:16])
        return bool(busy), node

    def reap(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the exit, then kill (the process must be on its way out)."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def close(self) -> None:
        """Release everything; the process must have exited (see :meth:`reap`)."""
        if self._closed:
            return
        self._closed = True
        self.mappings.clear()
        self._queue.put(None)
        self._sender.join(timeout=1.0)
        self.conn.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        with contextlib.suppress(OSError):
            os.unlink(self.init.status_path)
        # Its reply segments: nobody writes or releases them any more (mappings stay valid).
        for leftover in Path(self.init.run_dir).glob(f"{self.init.prefix}*"):
            with contextlib.suppress(OSError):
                leftover.unlink()


def stop_all(procs: list[WorkerProcess], *, timeout: float) -> None:
    """Stop workers within about ``timeout`` s: STOP, then SIGTERM, then SIGKILL."""
    for proc in procs:
        proc.request_stop()
    _wait_all(procs, time.monotonic() + 0.6 * timeout)
    for proc in procs:
        if proc.poll() is None:
            proc.popen.terminate()
    _wait_all(procs, time.monotonic() + 0.25 * timeout)
    for proc in procs:
        if proc.poll() is None:
            proc.popen.kill()
        proc.popen.wait()


def _wait_all(procs: list[WorkerProcess], deadline: float) -> None:
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(max(0.0, deadline - time.monotonic()))


def pickle_spec(spec: ClientAppSpec) -> tuple[bytes, dict[str, Any]]:
    """Pickle the ClientApp spec for the workers, and what they need to unpickle it."""
    try:
        blob = pickle.dumps(spec, protocol=5)
    except Exception as exc:
        by_value = _cloudpickle(spec)
        if by_value is None:
            raise AppLoadError(
                f"the ClientApp object cannot be sent to worker processes ({exc}); define its "
                "handlers at module level, or pass it as 'module:attribute'"
            ) from exc
        return by_value, {}
    if b"__main__" not in blob:
        return blob, {}
    # Handlers defined in the main script: the workers import it (as multiprocessing does).
    import multiprocessing.spawn

    prep = multiprocessing.spawn.get_preparation_data("glade-worker")
    keep: dict[str, Any] = {
        k: prep[k] for k in ("init_main_from_name", "init_main_from_path") if k in prep
    }
    if keep:
        return blob, keep
    return _cloudpickle(spec) or blob, {}  # a notebook or REPL: by value if we can


def _cloudpickle(obj: Any) -> bytes | None:
    try:
        import cloudpickle
    except ImportError:
        return None
    blob: bytes = cloudpickle.dumps(obj, protocol=5)
    return blob


def crash_reply(message: Message, how: str, culprit: int | None) -> Message:
    """The error reply to a message lost with its worker; ``culprit``: the node it ran."""
    node = message.metadata.dst_node_id
    if culprit == node:
        reason = f"the ClientApp crashed while node {node} handled this message: its worker "
        reason += f"process ended with {how}"
    else:
        where = f"while node {culprit} ran the ClientApp" if culprit is not None else ""
        reason = f"node {node}'s message was lost: its worker process ended with {how} {where}"
        reason = reason.rstrip() + f"; node {node}'s Context starts afresh"
    return Message.error_reply(message, Error(code=ErrorCode.CLIENT_APP_CRASHED, reason=reason))


def describe_exit(returncode: int | None) -> str:
    """``exit code 3`` or ``signal SIGSEGV``, for error messages."""
    if returncode is None:
        return "an unknown status"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"signal {name}{hint}"
    return f"exit code {returncode}"


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while forking: the child inherits the mask."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _pidfd_open(pid: int) -> int | None:
    """A file descriptor that becomes readable when ``pid`` exits (Linux), else None."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


class Slot:
    """A fixed share of the nodes (node ``i`` -> slot ``i % W``) and the process serving it."""

    __slots__ = ("broken", "generation", "index", "nodes", "pending", "proc")

    def __init__(self, index: int, nodes: list[NodeSpec]) -> None:
        self.index = index
        self.nodes = nodes
        self.proc: WorkerProcess | None = None
        # message id -> metadata of an instruction not yet answered: enough to answer it
        # should its worker die, without holding on to its content (perhaps a whole model)
        self.pending: dict[str, Metadata] = {}
        self.broken: Error | None = None  # set when the ClientApp cannot be loaded here
        self.generation = 0


def unanswered(metadata: Metadata) -> Message:
    """An instruction known by its metadata alone: what an error reply to it needs."""
    return Message(RecordDict(), metadata=metadata)
