"""`SuperLink`: the three gRPC servers, the state, the object store and the run manager."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import grpc

from glade.errors import ConfigError, TransportError
from glade.files import write_json
from glade.superlink.access import AccessInterceptor
from glade.superlink.accounts import Accounts
from glade.superlink.audit import AuditLog
from glade.superlink.bulk import BulkServer, server_context
from glade.superlink.config import SuperLinkConfig
from glade.superlink.control import CONTROL_RULES, ControlServicer
from glade.superlink.delivery import Delivery
from glade.superlink.fleet import FleetServicer
from glade.superlink.garbage import GarbageCollector
from glade.superlink.launcher import local_address
from glade.superlink.node_auth import NodeAuth
from glade.superlink.notify import Notifier
from glade.superlink.object_store import ObjectStore
from glade.superlink.rpc import ObjectRpcs
from glade.superlink.runs import RunManager
from glade.superlink.serverappio import ServerAppIoServicer
from glade.superlink.sqlite_state import SqliteState
from glade.transport.grpc_options import bind, create_server
from glade.transport.object_wire import RawObjectsInterceptor
from glade.transport.signing import VerifyingInterceptor
from glade.transport.status import StatusInterceptor
from glade.transport.tls import certificate_covers, server_credentials
from glade.transport.v1 import control_pb2_grpc, fleet_pb2_grpc, serverappio_pb2_grpc

__all__ = ["SuperLink"]

logger = logging.getLogger(__name__)


class SuperLink:
    """A SuperLink in this process: start it, read its addresses, stop it.

    >>> from glade.superlink import SuperLink, SuperLinkConfig
    >>> config = SuperLinkConfig(control_address="127.0.0.1:0", fleet_address="127.0.0.1:0",
    ...                          serverappio_address="127.0.0.1:0")
    >>> with SuperLink(config) as link:
    ...     sorted(link.addresses)
    ['control', 'fleet', 'serverappio']
    """

    def __init__(self, config: SuperLinkConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._addresses: dict[str, str] = {}
        self._servers: list[grpc.Server] = []
        self._stopped = threading.Event()
        self._janitor_stop = threading.Event()
        self._janitor: threading.Thread | None = None
        self._tmp_dir: Path | None = None
        self.bulk: BulkServer | None = None
        self._started = False

    @property
    def addresses(self) -> dict[str, str]:
        """``{"control", "fleet", "serverappio"} -> "host:port"`` with the ports in use."""
        return dict(self._addresses)

    # -- start -----------------------------------------------------------------------------
    def start(self) -> dict[str, str]:
        """Open the state, recover from a previous life, bind and start the servers.

        Returns :attr:`addresses`. Raises :class:`~glade.errors.ConfigError` or
        :class:`~glade.errors.TransportError` (an address is taken) without leaving anything
        running.
        """
        if self._started:
            raise RuntimeError("this SuperLink was started already")
        self._started = True
        try:
            self._build()
            self._serve()
        except BaseException:
            self.stop(grace=0.0)
            raise
        return self.addresses

    def _build(self) -> None:
        cfg = self.config
        object_dir = cfg.object_dir
        if object_dir is None:
            self._tmp_dir = object_dir = Path(tempfile.mkdtemp(prefix="glade-superlink-"))
        self.state = SqliteState(cfg.database)
        self.store = ObjectStore(
            object_dir, max_object_size=cfg.max_object_size, chunk_size=cfg.chunk_size
        )
        self.notifier = Notifier()
        self.garbage = GarbageCollector(
            self.state, self.store, grace_s=cfg.gc_grace_s, min_age_s=cfg.gc_min_age_s
        )
        self.delivery = Delivery(
            self.state,
            self.store,
            self.notifier,
            lease_s=cfg.message_lease_s,
            max_wait_s=cfg.max_long_poll_s,
            max_waiting=max(1, cfg.max_workers * 3 // 4),  # the rest: heartbeats, transfers
            clock=self._clock,
        )
        self.runs = RunManager(
            state=self.state,
            store=self.store,
            notifier=self.notifier,
            garbage=self.garbage,
            config=cfg,
            clock=self._clock,
        )
        self.accounts = Accounts(self.state, token_ttl_s=cfg.token_ttl_s, clock=self._clock)
        self.audit = AuditLog(self.state, clock=self._clock)
        if cfg.init_admin and self.accounts.ensure_admin(cfg.init_admin, cfg.init_admin_password):
            self.audit.record(
                actor="superlink",
                action="user.add",
                target=cfg.init_admin,
                detail="the first admin (--init-admin)",
            )
            logger.info("created the admin %r (--init-admin)", cfg.init_admin)
        failed = self.runs.recover()
        if failed:
            logger.warning("marked %d run(s) failed: the SuperLink restarted", len(failed))

    def _serve(self) -> None:
        cfg = self.config
        objects = ObjectRpcs(self.store, self.garbage)
        self.fleet = FleetServicer(
            state=self.state,
            delivery=self.delivery,
            objects=objects,
            heartbeat_interval_s=cfg.heartbeat_interval_s,
            clock=self._clock,
            node_auth=cfg.node_auth_enabled,
        )
        serverappio = ServerAppIoServicer(
            state=self.state,
            runs=self.runs,
            delivery=self.delivery,
            objects=objects,
            garbage=self.garbage,
        )
        control = ControlServicer(
            state=self.state,
            runs=self.runs,
            objects=objects,
            notifier=self.notifier,
            accounts=self.accounts,
            delivery=self.delivery,
            user_auth=cfg.user_auth_enabled,
            clock=self._clock,
        )
        plan = [
            ("serverappio", cfg.serverappio_address, serverappio_pb2_grpc, serverappio),
            ("fleet", cfg.fleet_address, fleet_pb2_grpc, self.fleet),
            ("control", cfg.control_address, control_pb2_grpc, control),
        ]
        for name, address, module, servicer in plan:
            interceptors = [StatusInterceptor(), RawObjectsInterceptor()]
            if name == "fleet" and cfg.node_auth_enabled:  # after StatusInterceptor: see signing
                policy = NodeAuth(
                    self.state, self.audit, window_s=cfg.node_auth_window_s, clock=self._clock
                )
                interceptors.append(VerifyingInterceptor(policy))
            if name == "control":  # after StatusInterceptor: its errors become statuses
                interceptors.append(
                    AccessInterceptor(
                        service="glade.v1.Control",
                        rules=CONTROL_RULES,
                        accounts=self.accounts,
                        audit=self.audit,
                        enabled=cfg.user_auth_enabled,
                        login_hint="log in with 'glade login FEDERATION'",
                    )
                )
            server = create_server(max_workers=cfg.max_workers, interceptors=interceptors)
            adder = next(getattr(module, a) for a in dir(module) if a.endswith("_to_server"))
            adder(servicer, server)
            if name == "serverappio":  # TLS beyond loopback, or when asked for
                creds = self._serverappio_credentials()
            else:
                creds = self._credentials(mutual=name == "fleet")
            port = bind(server, address, insecure=creds is None, credentials=creds)
            self._servers.append(server)
            self._addresses[name] = f"{address.rpartition(':')[0]}:{port}"
        if cfg.bulk:  # after the APIs' credentials were read (and checked)
            self._open_bulk()
        for server in self._servers:
            server.start()
        self.runs.open(self._addresses["serverappio"])
        self._janitor = threading.Thread(
            target=self._housekeeping, name="glade-janitor", daemon=True
        )
        self._janitor.start()
        for name in ("control", "fleet", "serverappio"):
            secure = cfg.serverappio_ca is not None if name == "serverappio" else not cfg.insecure
            tls = "TLS" if secure else "no TLS"
            logger.info("SuperLink %s API listening on %s (%s)", name, self._addresses[name], tls)
        if not cfg.node_auth_enabled:
            logger.warning(
                "node authentication is OFF: any SuperNode that reaches the Fleet API can join "
                "(turn it on with --node-auth and allow node keys with 'glade node add')"
            )
        if not cfg.user_auth_enabled:
            logger.warning(
                "user authentication is OFF: anyone who reaches the Control API acts as an "
                "admin (turn it on with --user-auth; create the first admin with --init-admin)"
            )
        if cfg.ready_file is not None:
            ready: dict[str, object] = {**self._addresses, "pid": os.getpid()}
            if self.bulk is not None:
                ready["bulk"] = f"{cfg.fleet_address.rpartition(':')[0]}:{self.bulk.port}"
            write_json(cfg.ready_file, ready)

    def _open_bulk(self) -> None:
        cfg = self.config
        context = None
        if not cfg.insecure and cfg.ssl_certfile is not None and cfg.ssl_keyfile is not None:
            context = server_context(cfg.ssl_certfile, cfg.ssl_keyfile, cfg.ssl_ca_certfile)
        host = cfg.fleet_address.rpartition(":")[0]
        try:
            self.bulk = BulkServer(
                self.store,
                self.garbage,
                host=host,
                port=cfg.bulk_port,
                context=context,
                busy=self.fleet.busy_with,
            )
        except OSError as exc:
            raise TransportError(
                f"cannot open the bulk port {host}:{cfg.bulk_port}: {exc} (choose another "
                "--bulk-port, or 0 for any free one)"
            ) from None
        self.bulk.start()
        self.fleet.bulk = self.bulk
        logger.info(
            "SuperLink bulk port listening on %s:%d (%s; SuperNodes fall back to gRPC if "
            "they cannot reach it)",
            host,
            self.bulk.port,
            "TLS" if context else "no TLS",
        )

    def _serverappio_credentials(self) -> grpc.ServerCredentials | None:
        """TLS of ServerAppIO (no client certificates: runs show their token)."""
        cfg = self.config
        if cfg.serverappio_ca is None or cfg.ssl_certfile is None:
            return None
        host = local_address(cfg.serverappio_address).rpartition(":")[0].strip("[]")
        if not certificate_covers(cfg.ssl_certfile, host):
            raise ConfigError(
                f"the certificate {cfg.ssl_certfile} is not valid for {host!r}, where the "
                "ServerApp processes reach ServerAppIO: add it to the certificate's names "
                "('glade certs create --hostname' includes localhost and 127.0.0.1), or "
                "choose a --serverappio-address the certificate covers"
            )
        return self._credentials(mutual=False)

    def _credentials(self, *, mutual: bool) -> grpc.ServerCredentials | None:
        """TLS of Control and Fleet; only Fleet asks for client certificates (SuperNodes)."""
        cfg = self.config
        if cfg.insecure or cfg.ssl_certfile is None or cfg.ssl_keyfile is None:
            return None
        return server_credentials(
            certfile=cfg.ssl_certfile,
            keyfile=cfg.ssl_keyfile,
            ca_certfile=cfg.ssl_ca_certfile if mutual else None,
        )

    # -- housekeeping ----------------------------------------------------------------------
    def _housekeeping(self) -> None:
        tick = min(1.0, self.config.heartbeat_interval_s / 2)
        while not self._janitor_stop.wait(tick):
            try:
                self.sweep()
            except Exception:
                logger.exception("SuperLink housekeeping failed (will retry)")

    def sweep(self) -> None:
        """One housekeeping pass: offline nodes, expired messages, garbage objects, the
        database's checkpoint."""
        now = self._clock()
        for node_id in self.fleet.busy_nodes():
            self.state.touch_node(node_id, now=now)
        timeout = self.config.node_offline_timeout_s
        for node_id in self.state.mark_offline(last_seen_before=now - timeout):
            n = self.delivery.node_unavailable(node_id, f"no heartbeat for {timeout:g}s")
            logger.info("node %d is offline (%d pending instruction(s) answered)", node_id, n)
        self.delivery.expire()
        self.garbage.collect()
        self.state.checkpoint()  # the log's fsync happens here, not inside a request

    # -- stop ------------------------------------------------------------------------------
    def stop(self, grace: float | None = None) -> None:
        """Stop within about ``grace`` (default: the config's stop grace) seconds; idempotent.

        Active runs are ended and marked failed; pending runs stay queued in the database.
        """
        if self._stopped.is_set():
            return
        grace = self.config.stop_grace_s if grace is None else grace
        if hasattr(self, "notifier"):
            self.notifier.close()  # long-polls and log followers return now
        deadline = time.monotonic() + grace
        events = [server.stop(min(grace, 1.0)) for server in self._servers]
        if hasattr(self, "runs"):
            self.runs.close(grace_s=max(0.0, grace - 0.5))
        for event in events:
            event.wait(max(0.1, deadline - time.monotonic()))
        self._janitor_stop.set()
        if self.bulk is not None:
            self.bulk.stop()
        if self._janitor is not None:
            self._janitor.join(timeout=2.0)
        if hasattr(self, "state"):
            self.state.close()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
        if self.config.ready_file is not None and self._addresses:
            Path(self.config.ready_file).unlink(missing_ok=True)
        self._stopped.set()
        logger.info("SuperLink stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` has finished (True) or ``timeout`` passes (False)."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> SuperLink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
