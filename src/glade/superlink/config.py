"""`SuperLinkConfig`: everything a SuperLink needs, built once at the edge (the CLI)."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from glade.errors import ConfigError
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
        _check_tls(self)

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
    if config.insecure:
        if has_cert or config.ssl_ca_certfile is not None:
            raise ConfigError("both --insecure and TLS certificates were given: drop one of them")
        return
    if config.ssl_certfile is None or config.ssl_keyfile is None:
        raise ConfigError(
            "the SuperLink needs TLS certificates (--ssl-certfile and --ssl-keyfile; "
            "'glade certs create' makes development ones), or --insecure to serve "
            "unencrypted on a trusted network"
        )
    if not is_loopback(config.serverappio_address):
        raise ConfigError(
            f"serverappio_address {config.serverappio_address!r} is not a loopback address: "
            "with TLS on, the ServerAppIO API must listen on 127.0.0.1 (TLS for a remote "
            "ServerAppIO is not supported yet)"
        )


def _positive(config: SuperLinkConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"{name} must be a positive number, got {value!r}")
