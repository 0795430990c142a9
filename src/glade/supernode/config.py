"""`SuperNodeConfig`: everything a SuperNode needs, built once at the edge (the CLI)."""

from __future__ import annotations

import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from glade.bundle_policy import DEFAULT_FILE_TYPES, DEFAULT_MAX_BUNDLE_BYTES, BundlePolicy
from glade.errors import ConfigError
from glade.keypairs import PublicKey
from glade.transport.chunks import DEFAULT_CHUNK_SIZE, DEFAULT_MAX_OBJECT_SIZE

__all__ = ["SuperNodeConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SuperNodeConfig:
    """Where the SuperLink is, who this node is, and how patiently it talks to it.

    ``data_dir`` keeps the node's id (so that a restarted node rejoins as itself) and the
    cache of app bundles; ``None`` uses a temporary folder removed at stop (a new identity
    on every start). Waiting for work is a long-poll of up to ``poll_wait_s`` seconds. When
    the SuperLink cannot be reached the node retries after ``backoff_initial_s``, doubling
    up to ``backoff_max_s``, each delay with random jitter.

    >>> config = SuperNodeConfig(superlink="127.0.0.1:9092", node_config={"partition-id": 0})
    >>> config.poll_wait_s
    10.0
    """

    superlink: str
    node_config: Mapping[str, Any] = field(default_factory=dict)
    name: str = field(default_factory=socket.gethostname)
    data_dir: Path | None = None
    insecure: bool = True
    """Connect without TLS; False requires ``root_certificates``."""
    root_certificates: Path | None = None
    """PEM file of the CA(s) that signed the SuperLink's certificate."""
    ssl_certfile: Path | None = None
    """This node's client certificate, for a SuperLink that requires mutual TLS."""
    ssl_keyfile: Path | None = None
    auth_key: Path | None = None
    """This node's Ed25519 private key (``glade keys create``): every Fleet request is signed
    with it, for a SuperLink with node authentication. Its public key must be on the
    SuperLink's allow-list (``glade node add``); the node id follows the key."""
    poll_wait_s: float = 10.0
    max_messages: int = 100
    heartbeat_interval_s: float | None = None
    """Seconds between heartbeats; None: what the SuperLink asks for at registration."""
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    rpc_timeout_s: float = 30.0
    stop_grace_s: float = 3.0
    unregister_on_stop: bool = True
    """Leave the federation at a graceful stop (its pending work is answered at once)."""
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_object_size: int = DEFAULT_MAX_OBJECT_SIZE
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    """Largest app bundle this node runs (its files, uncompressed; ``--max-bundle-size``)."""
    bundle_file_types: tuple[str, ...] | None = DEFAULT_FILE_TYPES
    """File types an app bundle may hold here (``--bundle-file-types``; None: any)."""
    trusted_publishers: tuple[PublicKey, ...] | None = None
    """With keys, only bundles signed by one of them run here (``--trusted-publishers``)."""
    app_startup_timeout_s: float = 300.0
    ready_file: Path | None = None
    bulk: bool = True
    """Move large arrays over the SuperLink's bulk port when it has one (falling back to
    gRPC when that fails); False: always gRPC."""

    def __post_init__(self) -> None:
        host, sep, port = str(self.superlink).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError(
                f"the SuperLink address must be HOST:PORT (its Fleet API, e.g. "
                f"127.0.0.1:9092), got {self.superlink!r}"
            )
        if not isinstance(self.node_config, Mapping):
            raise ConfigError("node_config must be a mapping of name -> value")
        for name in (
            "poll_wait_s",
            "backoff_initial_s",
            "backoff_max_s",
            "rpc_timeout_s",
            "app_startup_timeout_s",
            "max_messages",
            "chunk_size",
            "max_object_size",
            "max_bundle_bytes",
        ):
            _positive(name, getattr(self, name))
        if self.heartbeat_interval_s is not None:
            _positive("heartbeat_interval_s", self.heartbeat_interval_s)
        if self.stop_grace_s < 0:
            raise ConfigError(f"stop_grace_s must be >= 0, got {self.stop_grace_s!r}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError("backoff_max_s must be at least backoff_initial_s")
        self._check_tls()
        _ = self.bundle_policy  # checks the bundle options

    @property
    def bundle_policy(self) -> BundlePolicy:
        """What an app bundle must satisfy to run on this node."""
        return BundlePolicy(
            max_bytes=self.max_bundle_bytes,
            file_types=self.bundle_file_types,
            trusted_publishers=self.trusted_publishers,
        )

    def _check_tls(self) -> None:
        client_cert = (self.ssl_certfile, self.ssl_keyfile)
        if self.insecure:
            if self.root_certificates is not None or client_cert != (None, None):
                raise ConfigError(
                    "both --insecure and TLS certificates were given: drop one of them"
                )
            return
        if self.root_certificates is None:
            raise ConfigError(
                "the SuperNode needs --root-certificates (the CA that signed the SuperLink's "
                "certificate) to connect with TLS, or --insecure to connect unencrypted on a "
                "trusted network"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError("a client certificate needs both --ssl-certfile and --ssl-keyfile")

    def with_options(self, **changes: Any) -> SuperNodeConfig:
        """A copy with some options replaced."""
        return replace(self, **changes)


def _positive(name: str, value: Any) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not value > 0 or not math.isfinite(value):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
