"""`SuperNode`: the long-running agent that runs ClientApps for a SuperLink.

Three threads do the work:

- the *poller* registers (with the id kept in the data folder, so a restart rejoins as the
  same node), then long-polls the SuperLink for instructions and hands each to its run's
  :class:`~glade.supernode.runs.RunApp` (one ClientApp process per active run);
- the *pusher* sends replies as the ClientApps produce them: arrays first, then the replies;
- the *heartbeat* tells the SuperLink the node is alive and ends the ClientApp processes of
  runs that have finished.

When the SuperLink cannot be reached, the poller and the pusher retry with exponential
backoff and jitter, and carry on by themselves once it is back (registering again if it
forgot the node). :meth:`SuperNode.stop` leaves within a few seconds: it cuts the long-poll,
leaves the federation and stops the ClientApp processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import grpc

from glade.errors import AuthenticationError, GladeError, NotFoundError, TransportError
from glade.files import write_json
from glade.keypairs import PrivateKey
from glade.message import Message
from glade.project import ProjectConfig
from glade.simulation.backend import NodeSpec
from glade.simulation.shared import SharedBuffers
from glade.simulation.worker import tune_malloc
from glade.supernode.backoff import Backoff
from glade.supernode.bundles import BundleCache
from glade.supernode.config import SuperNodeConfig
from glade.supernode.connection import Connection, GrpcConnection
from glade.supernode.identity import NodeIdentity
from glade.supernode.runs import PreparedRun, RunApp
from glade.transport.bulk import BulkTarget, Ticket
from glade.transport.tls import channel_credentials

__all__ = ["SuperNode"]

logger = logging.getLogger(__name__)

_MIN_HEARTBEAT_S = 0.05
_SHARED_MIN_BYTES = 256 * 1024  # arrays this large are received straight into shared memory


class SuperNode:
    """A SuperNode in this process: :meth:`start` it, :meth:`stop` it (see the module doc).

    >>> from glade.supernode import SuperNode, SuperNodeConfig
    >>> node = SuperNode(SuperNodeConfig(superlink="127.0.0.1:9092"))  # doctest: +SKIP
    >>> node.start(); node.wait_registered(timeout=10)  # doctest: +SKIP
    True
    >>> node.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: SuperNodeConfig,
        *,
        connection: Connection | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._conn_given = connection
        self._rng = rng or random.Random()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._registered = threading.Event()
        self._lock = threading.Lock()
        self._runs: dict[int, RunApp] = {}
        self._in_flight: dict[str, tuple[int, float]] = {}  # id -> (run id, arrival time)
        self._outbox: queue.SimpleQueue[list[Message] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._tmp_dir: Path | None = None
        self._node_id = 0
        self._heartbeat_s = config.heartbeat_interval_s or 5.0
        self._started = False
        self._bulk_target: BulkTarget | None = None

    @property
    def node_id(self) -> int:
        """The id the SuperLink gave this node (0 until it registered)."""
        return self._node_id

    def active_runs(self) -> list[int]:
        """Runs with a ClientApp process (or one starting) on this node."""
        with self._lock:
            return sorted(self._runs)

    def worker_pids(self) -> list[int]:
        """Process ids of the ClientApp processes of the active runs."""
        with self._lock:
            apps = list(self._runs.values())
        return [pid for app in apps for pid in app.worker_pids()]

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the node's threads; returns at once (registration happens in the background).

        Raises :class:`~glade.errors.ConfigError` if the data folder is in use by another
        SuperNode.
        """
        if self._started:
            raise RuntimeError("this SuperNode was started already")
        key = PrivateKey.read(self.config.auth_key) if self.config.auth_key else None
        data_dir = self.config.data_dir
        if data_dir is None:
            self._tmp_dir = data_dir = Path(tempfile.mkdtemp(prefix="glade-supernode-"))
        self._identity = NodeIdentity(data_dir)
        # Large arrays are received into shared memory, which the ClientApp processes map;
        # the last buffer is kept for the next model of its size while the ClientApp
        # processes upload their replies themselves (else the spare would add to the peak)
        self._shared = SharedBuffers(min_size=_SHARED_MIN_BYTES, keep_spare=self.config.bulk)
        tune_malloc()
        self._started = True
        cfg = self.config
        bulk = _bulk_target(cfg)
        self._conn: Connection = self._conn_given or GrpcConnection(
            cfg.superlink,
            credentials=_credentials(cfg),
            rpc_timeout_s=cfg.rpc_timeout_s,
            chunk_size=cfg.chunk_size,
            max_object_size=cfg.max_object_size,
            signing_key=key,
            allocate=self._shared.allocate,
            skip_message=self._working_on,
            bulk=cfg.bulk,
            bulk_context=bulk.context() if bulk is not None else None,
        )
        # the ClientApp processes upload large replies themselves (tickets from this node)
        self._bulk_target = bulk if hasattr(self._conn, "upload_ticket") else None
        if key is not None:
            logger.info("signing Fleet requests with node key %s", key.public_key.fingerprint)
        self._bundles = BundleCache(
            Path(data_dir) / "apps", fetch=self._fetch_bundle, policy=cfg.bundle_policy
        )
        for name, target in (
            ("poller", self._poll_loop),
            ("pusher", self._push_loop),
            ("heartbeat", self._heartbeat_loop),
        ):
            thread = threading.Thread(target=target, name=f"glade-supernode-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Block until the node has registered (True) or ``timeout`` passes (False)."""
        return self._registered.wait(timeout)

    def stop(self, grace: float | None = None) -> None:
        """Leave the federation and stop everything within about ``grace`` seconds."""
        if not self._started:
            return
        if self._stopping.is_set():  # stopping in another thread
            self._stopped.wait(10.0)
            return
        grace = self.config.stop_grace_s if grace is None else grace
        deadline = time.monotonic() + grace
        self._stopping.set()
        if self.config.unregister_on_stop and self._registered.is_set():
            try:
                self._conn.unregister(self._node_id, timeout=max(0.1, min(1.0, grace / 3)))
            except GladeError as exc:
                logger.info("could not leave the federation cleanly: %s", exc)
        self._conn.close()  # long-polls and transfers in progress end now
        with self._lock:
            apps = list(self._runs.values())
            self._runs.clear()
        _close_all(apps, timeout=max(0.1, deadline - time.monotonic()))
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self._identity.close()
        self._shared.close()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
        if self.config.ready_file is not None:
            Path(self.config.ready_file).unlink(missing_ok=True)
        self._stopped.set()
        logger.info("SuperNode %d stopped", self._node_id)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` has finished (True) or ``timeout`` passes (False)."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> SuperNode:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _backoff(self) -> Backoff:
        cfg = self.config
        return Backoff(initial=cfg.backoff_initial_s, maximum=cfg.backoff_max_s, rng=self._rng)

    # -- registration and polling ----------------------------------------------------------
    def _register(self) -> None:
        cfg = self.config
        previous = self._identity.node_id
        registration = self._conn.register(
            node_id=previous, name=cfg.name, node_config=cfg.node_config
        )
        self._node_id = registration.node_id
        self._identity.save(registration.node_id)
        hinted = registration.heartbeat_interval_s or 5.0
        self._heartbeat_s = max(_MIN_HEARTBEAT_S, cfg.heartbeat_interval_s or hinted)
        how = "rejoined" if previous == registration.node_id else "registered"
        logger.info(
            "SuperNode %s the federation at %s as node %d", how, cfg.superlink, self._node_id
        )
        if cfg.ready_file is not None and not self._registered.is_set():
            write_json(cfg.ready_file, {"node_id": self._node_id, "pid": os.getpid()})
        self._registered.set()

    def _poll_loop(self) -> None:
        backoff = self._backoff()
        down = False
        while not self._stopping.is_set():
            try:
                if not self._registered.is_set():
                    self._register()
                started = time.perf_counter()
                messages = self._conn.pull(
                    self._node_id,
                    wait_s=self.config.poll_wait_s,
                    max_messages=self.config.max_messages,
                )
            except NotFoundError:
                if not self._stopping.is_set():
                    logger.warning(
                        "the SuperLink does not know node %d: joining again", self._node_id
                    )
                    self._registered.clear()
                    self._stopping.wait(backoff.next())
                continue
            except GladeError as exc:
                if self._stopping.is_set():
                    return
                delay = backoff.next()
                if not down or backoff.attempts <= 1:
                    level = logging.WARNING if isinstance(exc, TransportError) else logging.ERROR
                    logger.log(level, "%s; retrying in %.1f s (and backing off)", exc, delay)
                down = True
                self._stopping.wait(delay)
                continue
            if down:
                logger.info("connected to the SuperLink at %s again", self.config.superlink)
                down = False
            backoff.reset()
            took = time.perf_counter() - started
            if messages:
                logger.debug(
                    "pulled %d message(s) in %.3f s (long-poll included)", len(messages), took
                )
                self._dispatch(messages)
            elif took < 0.1 * self.config.poll_wait_s:
                # Answered at once with nothing: the SuperLink has no thread to spare for a
                # long-poll, or offered only instructions this node is working on.
                pause = min(1.0, self.config.poll_wait_s) * (0.5 + 0.5 * self._rng.random())
                self._stopping.wait(pause)
            del messages  # the arrays may be large: keep them no longer than needed

    def _working_on(self, message_id: str) -> bool:
        """Whether the node is processing the instruction (its lease may have run out)."""
        with self._lock:
            return message_id in self._in_flight

    def _dispatch(self, messages: Sequence[Message]) -> None:
        by_run: dict[int, list[Message]] = {}
        with self._lock:
            for message in messages:
                message_id = message.metadata.message_id
                if message_id in self._in_flight:
                    continue  # offered again while we still work on it
                self._in_flight[message_id] = (message.metadata.run_id, time.perf_counter())
                by_run.setdefault(message.metadata.run_id, []).append(message)
            apps = [(self._app(run_id), batch) for run_id, batch in by_run.items()]
        for app, batch in apps:
            app.submit(batch)

    def _app(self, run_id: int) -> RunApp:
        """The run's RunApp, created on its first message (lock held)."""
        app = self._runs.get(run_id)
        if app is None:
            app = self._runs[run_id] = RunApp(
                run_id,
                node=NodeSpec(self._node_id, dict(self.config.node_config)),
                prepare=self._prepare,
                on_replies=self._outbox.put,
                backoff=self._backoff(),
                startup_timeout_s=self.config.app_startup_timeout_s,
                shared=self._shared,
                uploader=self._bulk_target,
                upload_ticket=self._upload_ticket,
            )
        return app

    def _upload_ticket(self, size: int) -> Ticket | None:
        upload_ticket = getattr(self._conn, "upload_ticket", None)  # a test's may have none
        ticket = None if upload_ticket is None else upload_ticket(self._node_id, size)
        if ticket is None:  # the reply comes through shared memory: make room for it
            self._shared.drop_spare()
        return ticket

    def _prepare(self, run_id: int) -> PreparedRun:
        run = self._conn.get_run(self._node_id, run_id)
        app_dir = self._bundles.app_dir(run.bundle_id)
        project = ProjectConfig.from_dir(app_dir)
        return PreparedRun(
            app_dir=app_dir, client_app=project.client_app, run_config=dict(run.run_config)
        )

    def _fetch_bundle(self, bundle_id: str) -> memoryview:
        size = self.config.max_bundle_bytes
        return self._conn.fetch_object(self._node_id, bundle_id, max_size=size)

    # -- replies ---------------------------------------------------------------------------
    def _push_loop(self) -> None:
        backoff = self._backoff()
        while (first := self._outbox.get()) is not None:
            replies = list(first)
            last = False
            with contextlib.suppress(queue.Empty):
                while len(replies) < self.config.max_messages:
                    more = self._outbox.get_nowait()
                    if more is None:
                        last = True
                        break
                    replies.extend(more)
            self._push(replies, backoff)
            if last:
                return

    def _push(self, replies: list[Message], backoff: Backoff) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    started = time.perf_counter()
                    self._conn.push(self._node_id, replies)
                    backoff.reset()
                    if logger.isEnabledFor(logging.DEBUG):
                        self._log_push(replies, started)
                    return
                except (TransportError, AuthenticationError) as exc:  # may come back
                    if self._stopping.is_set():
                        return
                    delay = backoff.next()
                    logger.warning(
                        "cannot send %d reply(s): %s; retrying in %.1f s", len(replies), exc, delay
                    )
                    self._stopping.wait(delay)
                except GladeError as exc:
                    if len(replies) > 1:  # find the culprit: the others may be fine
                        for reply in replies:
                            self._push([reply], backoff)
                        return
                    reply_to = replies[0].metadata.reply_to_message_id
                    logger.warning("the SuperLink refused the reply to %s: %s", reply_to, exc)
                    return
        finally:
            with self._lock:
                for reply in replies:
                    self._in_flight.pop(reply.metadata.reply_to_message_id, None)

    def _log_push(self, replies: list[Message], started: float) -> None:
        now = time.perf_counter()
        with self._lock:
            arrived = [self._in_flight.get(r.metadata.reply_to_message_id) for r in replies]
        oldest = min((a[1] for a in arrived if a is not None), default=started)
        logger.debug(
            "pushed %d reply(s) in %.3f s; %.3f s after their instructions arrived",
            len(replies),
            now - started,
            now - oldest,
        )

    # -- heartbeats and finished runs ------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self._heartbeat_s):
            if not self._registered.is_set():
                continue
            try:
                if not self._conn.heartbeat(self._node_id):
                    logger.warning("the SuperLink forgot node %d: joining again", self._node_id)
                    self._registered.clear()
                    continue
                self._end_finished_runs()
            except GladeError as exc:
                logger.debug("heartbeat failed: %s", exc)

    def _end_finished_runs(self) -> None:
        with self._lock:
            run_ids = list(self._runs)
        done: list[RunApp] = []
        for run_id in run_ids:
            try:
                finished = self._conn.get_run(self._node_id, run_id).finished
            except NotFoundError:
                finished = True
            if finished:
                with self._lock:
                    app = self._runs.pop(run_id, None)
                    for message_id, (run, _) in list(self._in_flight.items()):
                        if run == run_id:  # no reply will come (or be wanted)
                            del self._in_flight[message_id]
                if app is not None:
                    logger.info("run %d has finished: stopping its ClientApp", run_id)
                    done.append(app)
        _close_all(done, timeout=5.0)


def _close_all(apps: Sequence[RunApp], *, timeout: float) -> None:
    """Close RunApps in parallel (each stops a process)."""
    threads = [
        threading.Thread(target=app.close, kwargs={"timeout": timeout}, daemon=True) for app in apps
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _bulk_target(cfg: SuperNodeConfig) -> BulkTarget | None:
    """How the node and its ClientApp processes reach the bulk port: the same trust (and
    client certificate) as gRPC."""
    if not cfg.bulk:
        return None
    host = cfg.superlink.rpartition(":")[0]
    if cfg.insecure or cfg.root_certificates is None:
        return BulkTarget(host, timeout_s=cfg.rpc_timeout_s)
    return BulkTarget(
        host,
        root_certificates=str(cfg.root_certificates),
        certfile=str(cfg.ssl_certfile) if cfg.ssl_certfile else None,
        keyfile=str(cfg.ssl_keyfile) if cfg.ssl_keyfile else None,
        timeout_s=cfg.rpc_timeout_s,
    )


def _credentials(cfg: SuperNodeConfig) -> grpc.ChannelCredentials | None:
    if cfg.insecure or cfg.root_certificates is None:
        return None
    return channel_credentials(
        root_certificates=cfg.root_certificates, certfile=cfg.ssl_certfile, keyfile=cfg.ssl_keyfile
    )
