"""`RunApp`: the ClientApp of one run on this node, in its own process.

The process is the simulation's worker process (:class:`~glade.simulation.local.LocalBackend`
with one worker serving this one node): it imports the ClientApp once from the run's
extracted bundle, keeps the node's :class:`~glade.Context` across rounds, and turns a crash
into ``CLIENT_APP_CRASHED`` error replies (then starts afresh). Large arrays reach it through
shared memory: the node receives them straight into
:class:`~glade.simulation.shared.SharedBuffers`, which the process maps (no copy). It is started
on the run's first message, from a thread of its own, so that a slow import never holds up
the node's other runs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glade.errors import AppLoadError, ConfigError, GladeError, SerdeError, TransportError
from glade.message import Error, ErrorCode, Message
from glade.simulation.backend import ClientAppSpec, NodeSpec, ReplyCallback
from glade.simulation.local import LocalBackend
from glade.simulation.shared import SharedBuffers
from glade.supernode.backoff import Backoff

if TYPE_CHECKING:  # pragma: no cover
    from glade.simulation.worker import ReplyUploader

__all__ = ["PreparedRun", "RunApp"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedRun:
    """What starting a run's ClientApp needs: its code on disk and its config."""

    app_dir: Path
    client_app: str
    run_config: dict[str, Any]


Prepare = Callable[[int], PreparedRun]


class RunApp:
    """Queue messages for one run's ClientApp process; replies go to ``on_replies``.

    ``prepare(run_id)`` fetches what the process needs (it may raise
    :class:`~glade.errors.TransportError`, retried with backoff until :meth:`close`). If
    the app cannot be obtained or imported, every message of the run is answered with a
    ``LOAD_CLIENT_APP`` error reply saying why.
    """

    def __init__(
        self,
        run_id: int,
        *,
        node: NodeSpec,
        prepare: Prepare,
        on_replies: ReplyCallback,
        backoff: Backoff,
        startup_timeout_s: float = 300.0,
        shared: SharedBuffers | None = None,
        uploader: ReplyUploader | None = None,
        upload_ticket: Callable[[int], Any] | None = None,
    ) -> None:
        """``uploader`` and ``upload_ticket``: the process uploads its large reply arrays
        itself (see :class:`~glade.simulation.local.LocalBackend`)."""
        self.run_id = run_id
        self._node = node
        self._prepare = prepare
        self._on_replies = on_replies
        self._backoff = backoff
        self._startup_timeout_s = startup_timeout_s
        self._shared = shared
        self._uploader = uploader
        self._upload_ticket = upload_ticket
        self._queue: queue.SimpleQueue[list[Message] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._backend: LocalBackend | None = None
        self._ready: LocalBackend | None = None  # set once started and its queue drained
        self._error: Error | None = None
        self._thread = threading.Thread(target=self._loop, name=f"glade-run-{run_id}", daemon=True)
        self._thread.start()

    @property
    def error(self) -> Error | None:
        """Why this run's ClientApp cannot run here (None: it can, or is starting)."""
        return self._error

    def worker_pids(self) -> list[int]:
        backend = self._backend
        return backend.worker_pids() if backend is not None else []

    def submit(self, messages: Sequence[Message]) -> None:
        """Hand instructions of this run to its ClientApp (never blocks on the app)."""
        with self._lock:
            backend = self._ready
            if backend is None:  # not started yet: the run's thread hands it over
                self._queue.put(list(messages))
                return
        try:  # started: straight to its worker, no thread hop (it keeps their metadata only)
            backend.submit(messages)
        except RuntimeError:  # shut down meanwhile
            self._queue.put(list(messages))

    def close(self, *, timeout: float = 2.0) -> None:
        """Stop the ClientApp process; messages still queued get no reply."""
        with self._lock:
            self._closed.set()
            backend, self._backend, self._ready = self._backend, None, None
        self._queue.put(None)
        if backend is not None:
            backend.shutdown()
        self._thread.join(timeout)

    # -- the run's thread ------------------------------------------------------------------
    def _loop(self) -> None:
        backend = self._start()
        while (batch := self._next(backend)) is not None:
            if self._closed.is_set():
                return
            error = self._error
            if backend is not None and error is None:
                try:
                    backend.submit(batch)
                    del batch
                    continue
                except RuntimeError:  # shut down meanwhile
                    error = Error(code=ErrorCode.NODE_UNAVAILABLE, reason="the node is stopping")
            assert error is not None
            self._on_replies([Message.error_reply(m, error) for m in batch])
            del batch

    def _next(self, backend: LocalBackend | None) -> list[Message] | None:
        """The next queued batch; once the queue is empty, later batches skip the queue."""
        if backend is not None and self._error is None and self._ready is None:
            with self._lock:
                try:
                    return self._queue.get_nowait()
                except queue.Empty:
                    if not self._closed.is_set():
                        self._ready = backend
        return self._queue.get()

    def _start(self) -> LocalBackend | None:
        prepared = self._prepared()
        if prepared is None:
            return None
        backend = LocalBackend(
            num_workers=1,
            startup_timeout=self._startup_timeout_s,
            shared=self._shared,
            uploader=self._uploader,
            upload_ticket=self._upload_ticket,
        )
        with self._lock:
            if self._closed.is_set():
                return None
            self._backend = backend
        spec = ClientAppSpec(ref=prepared.client_app, app_dir=str(prepared.app_dir))
        try:
            backend.start(
                client_app=spec,
                nodes=[self._node],
                run_id=self.run_id,
                run_config=prepared.run_config,
                on_replies=self._on_replies,
            )
        except AppLoadError as exc:
            self._fail(f"cannot load the ClientApp {prepared.client_app!r}: {exc}")
            return None
        except Exception as exc:
            if not self._closed.is_set():
                logger.exception("run %d: cannot start the ClientApp process", self.run_id)
                self._fail(f"cannot start the ClientApp process: {exc}")
            return None
        logger.info(
            "run %d: ClientApp %s started (pid %s)",
            self.run_id,
            prepared.client_app,
            ", ".join(map(str, backend.worker_pids())),
        )
        return backend

    def _prepared(self) -> PreparedRun | None:
        while not self._closed.is_set():
            try:
                prepared = self._prepare(self.run_id)
            except TransportError as exc:
                delay = self._backoff.next()
                logger.warning("run %d: %s; retrying in %.1f s", self.run_id, exc, delay)
                self._closed.wait(delay)
                continue
            except (SerdeError, ConfigError, AppLoadError) as exc:
                self._fail(f"the run's app bundle cannot be used: {exc}")
                return None
            except GladeError as exc:
                self._fail(f"cannot get the run from the SuperLink: {exc}")
                return None
            self._backoff.reset()
            return prepared
        return None

    def _fail(self, reason: str) -> None:
        logger.error("run %d: %s", self.run_id, reason)
        self._error = Error(code=ErrorCode.LOAD_CLIENT_APP, reason=reason)
