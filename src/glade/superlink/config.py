"""`SuperLinkConfig`: everything a SuperLink needs, built once at the edge (the CLI)."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from glade.bundle_policy import DEFAULT_FILE_TYPES, DEFAULT_MAX_BUNDLE_BYTES, BundlePolicy
from glade.errors import ConfigError, InvalidArgumentError
from glade.superlink.accounts import MIN_PASSWORD_LENGTH, check_user_name
from glade.transport.chunks import DEFAULT_CHUNK_SIZE, DEFAULT_MAX_OBJECT_SIZE
from glade.transport.grpc_options import MAX_MESSAGE_BYTES
from glade.transport.tls import is_loopback

__all__ = ["MEMORY_DATABASE", "SuperLinkConfig"]

MEMORY_DATABASE = ":memory:"
"""``database`` value for a state that lives and dies with the process."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SuperLinkConfig:
    """Addresses, storage and policies of one SuperLink.

    Addresses are ``HOST:PORT``; port 0 picks a free port (see :attr:`SuperLink.addresses`).
    ``object_dir`` holds the object store (arrays, app bundles) and the extracted bundles;
    ``None`` uses a temporary folder removed at :meth:`SuperLink.stop`. ``run_timeout_s``
    ``None`` lets runs take as long as they need.

    >>> config = SuperLinkConfig(fleet_address="127.0.0.1:0", max_concurrent_runs=2)
    >>> config.control_address
    '0.0.0.0:9093'
    """

    control_address: str = "0.0.0.0:9093"
    fleet_address: str = "0.0.0.0:9092"
    serverappio_address: str = "127.0.0.1:9091"
    database: str = MEMORY_DATABASE
    object_dir: Path | None = None
    max_concurrent_runs: int = 4
    heartbeat_interval_s: float = 5.0
    node_offline_timeout_s: float = 20.0
    message_lease_s: float = 120.0
    run_timeout_s: float | None = None
    stop_grace_s: float = 3.0
    insecure: bool = True
    """Serve without TLS; False requires ``ssl_certfile`` and ``ssl_keyfile``."""
    ssl_certfile: Path | None = None
    """PEM certificate (chain) of the Control and Fleet APIs."""
    ssl_keyfile: Path | None = None
    ssl_ca_certfile: Path | None = None
    """With it, SuperNodes must show a client certificate signed by this CA (mutual TLS)."""
    serverappio_root_certificates: Path | None = None
    """CA file the ServerApp processes trust to verify the certificate of ServerAppIO.

    Given, ServerAppIO speaks TLS (with ``ssl_certfile``) even on a loopback address; a
    ServerAppIO beyond loopback always speaks TLS, trusting this or else ``ssl_ca_certfile``.
    """
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    """Largest app bundle StartRun accepts (its files, uncompressed; ``--max-bundle-size``)."""
    bundle_file_types: tuple[str, ...] | None = DEFAULT_FILE_TYPES
    """File types an app bundle may hold (``--bundle-file-types``; None: any)."""
    ready_file: Path | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_object_size: int = DEFAULT_MAX_OBJECT_SIZE
    gc_grace_s: float = 600.0
    """How long an upload stays pinned waiting for the message or run that refers to it."""
    gc_min_age_s: float = 5.0
    """Unreferenced objects younger than this are kept (uploads that just finished)."""
    max_long_poll_s: float = 30.0
    max_workers: int = 256
    """Threads per API server; each waiting long-poll (one per SuperNode) holds one."""
    python: str = field(default=sys.executable)
    """Interpreter that runs ServerApp processes."""
    local_object_access: bool = True
    """ServerApp processes read/write arrays in the object store directly (same machine)."""
    node_auth: bool | None = None
    """SuperNodes must sign their requests with an allow-listed key (None: on unless
    ``insecure``); see :mod:`glade.superlink.node_auth`."""
    node_auth_window_s: float = 60.0
    """How far a signed request's timestamp may be from the SuperLink's clock (seconds)."""
    user_auth: bool | None = None
    """Control calls need a login token (None: on unless ``insecure``); see
    :mod:`glade.superlink.access`. Off, every caller acts as an admin."""
    token_ttl_s: float = 12 * 3600.0
    """How long a login token (``glade login``) is valid (seconds)."""
    init_admin: str = ""
    """Create this admin at start unless a user of that name exists (the first admin)."""
    init_admin_password: str = field(default="", repr=False)
    bulk: bool = True
    """Open a bulk port next to the Fleet API: SuperNodes move large objects over plain TCP
    (TLS when the Fleet API has it) with single-use tickets, outside gRPC; see
    :mod:`glade.superlink.bulk`. Nodes that cannot reach it fall back to gRPC."""
    bulk_port: int = 0
    """Port of the bulk port, on the Fleet API's host (0: any free port; nodes learn it)."""

    def __post_init__(self) -> None:
        for name in ("control_address", "fleet_address", "serverappio_address"):
            value = getattr(self, name)
            host, sep, port = str(value).rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                raise ConfigError(
                    f"{name} must be HOST:PORT (port 0: any free port), got {value!r}"
                )
        _positive(self, "max_concurrent_runs", "max_workers", "chunk_size", "max_object_size")
        _positive(
            self,
            "heartbeat_interval_s",
            "node_offline_timeout_s",
            "message_lease_s",
            "max_long_poll_s",
        )
        if self.chunk_size > MAX_MESSAGE_BYTES // 2:
            raise ConfigError(
                f"chunk_size must be at most {MAX_MESSAGE_BYTES // 2} bytes (gRPC message limit)"
            )
        if self.run_timeout_s is not None:
            _positive(self, "run_timeout_s")
        if self.node_offline_timeout_s <= self.heartbeat_interval_s:
            raise ConfigError(
                f"node_offline_timeout_s ({self.node_offline_timeout_s:g}) must be longer than "
                f"heartbeat_interval_s ({self.heartbeat_interval_s:g})"
            )
        _positive(self, "node_auth_window_s")
        if not 0 <= self.bulk_port <= 65535:
            raise ConfigError(
                f"bulk_port must be 0..65535 (0: any free port), not {self.bulk_port}"
            )
        _positive(self, "token_ttl_s")
        _check_init_admin(self)
        _check_tls(self)
        _ = self.bundle_policy  # checks the bundle options

    @property
    def bundle_policy(self) -> BundlePolicy:
        """What StartRun checks an app bundle against (size cap and file types)."""
        return BundlePolicy(max_bytes=self.max_bundle_bytes, file_types=self.bundle_file_types)

    @property
    def serverappio_ca(self) -> Path | None:
        """The CA file ServerApp processes trust to reach ServerAppIO (None: it has no TLS)."""
        if self.insecure:
            return None
        if self.serverappio_root_certificates is not None:
            return self.serverappio_root_certificates
        return None if is_loopback(self.serverappio_address) else self.ssl_ca_certfile

    @property
    def node_auth_enabled(self) -> bool:
        """Whether SuperNodes must authenticate: :attr:`node_auth`, or else ``not insecure``."""
        return not self.insecure if self.node_auth is None else self.node_auth

    @property
    def user_auth_enabled(self) -> bool:
        """Whether Control calls need a login: :attr:`user_auth`, or else ``not insecure``."""
        return not self.insecure if self.user_auth is None else self.user_auth

    @classmethod
    def in_data_dir(cls, data_dir: Path, **options: Any) -> SuperLinkConfig:
        """A config keeping the state database and objects under ``data_dir``."""
        data_dir = Path(data_dir)
        options.setdefault("database", str(data_dir / "state.db"))
        options.setdefault("object_dir", data_dir / "objects")
        return cls(**options)

    def with_options(self, **changes: Any) -> SuperLinkConfig:
        """A copy with some options replaced."""
        return replace(self, **changes)


def _check_tls(config: SuperLinkConfig) -> None:
    has_cert = config.ssl_certfile is not None or config.ssl_keyfile is not None
    remote_io = not is_loopback(config.serverappio_address)
    if config.insecure:
        if has_cert or config.ssl_ca_certfile or config.serverappio_root_certificates:
            raise ConfigError("both --insecure and TLS certificates were given: drop one of them")
        if remote_io:
            raise ConfigError(
                f"--serverappio-address {config.serverappio_address!r} is not a loopback address: "
                "without TLS the ServerAppIO API (run tokens, models) must listen on 127.0.0.1; "
                "serve it beyond this machine only with TLS (--ssl-certfile and --ssl-keyfile)"
            )
        return
    if config.ssl_certfile is None or config.ssl_keyfile is None:
        raise ConfigError(
            "the SuperLink needs TLS certificates (--ssl-certfile and --ssl-keyfile; "
            "'glade certs create' makes development ones), or --insecure to serve "
            "unencrypted on a trusted network"
        )
    if remote_io and config.serverappio_ca is None:
        raise ConfigError(
            f"--serverappio-address {config.serverappio_address!r} is not a loopback address, so "
            "ServerAppIO speaks TLS and the ServerApp processes must verify its certificate: "
            "give the CA that signed --ssl-certfile with --serverappio-root-certificates (or "
            "--ssl-ca-certfile)"
        )


def _check_init_admin(config: SuperLinkConfig) -> None:
    if not config.init_admin:
        return
    try:
        check_user_name(config.init_admin)
    except InvalidArgumentError as exc:
        raise ConfigError(f"init_admin: {exc}") from None
    if len(config.init_admin_password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"the first admin {config.init_admin!r} needs a password of at least "
            f"{MIN_PASSWORD_LENGTH} characters"
        )


def _positive(config: SuperLinkConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"{name} must be a positive number, got {value!r}")
