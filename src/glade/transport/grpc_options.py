"""gRPC servers and channels with Glade's options (message size limits, keepalive).

Every Glade server and channel is made here, so all peers agree on the limits: an
``ObjectChunk`` of :data:`~glade.transport.chunks.DEFAULT_CHUNK_SIZE` bytes plus its header is
larger than gRPC's default 4 MiB message limit.

TLS: pass ``credentials`` (made by :mod:`glade.transport.tls` from PEM files); without
them ``insecure=True`` must be said explicitly.

>>> server = create_server(max_workers=4)
>>> port = bind(server, "127.0.0.1:0")
>>> port > 0
True
>>> server.stop(None).wait()
True
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from glade.errors import ConfigError, TransportError
from glade.transport.chunks import DEFAULT_CHUNK_SIZE

__all__ = [
    "MAX_MESSAGE_BYTES",
    "bind",
    "channel",
    "channel_options",
    "create_server",
    "server_options",
]

MAX_MESSAGE_BYTES = 4 * DEFAULT_CHUNK_SIZE
"""Largest single gRPC message (request or response) any Glade peer sends or accepts."""

_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]


def server_options(*, max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """Options for every Glade gRPC server."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),  # port 0 must mean a port nobody else holds
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        *_KEEPALIVE,
    ]


def channel_options(*, max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """Options for every Glade gRPC channel."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        *_KEEPALIVE,
    ]


def channel(
    address: str,
    *,
    insecure: bool = True,
    credentials: grpc.ChannelCredentials | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> grpc.Channel:
    """A channel to ``address`` ("host:port"); close it with ``.close()``.

    Creating a channel does not connect: the first RPC does (and fails with UNAVAILABLE if
    nobody listens).
    """
    _check_address(address)
    options = channel_options(max_message_bytes=max_message_bytes)
    if credentials is not None:
        return grpc.secure_channel(address, credentials, options=options)
    if not insecure:
        raise ConfigError(
            f"cannot connect to {address} securely without TLS credentials: give root "
            "certificates, or use an insecure connection on a trusted network"
        )
    return grpc.insecure_channel(address, options=options)


def create_server(
    *,
    max_workers: int,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> grpc.Server:
    """A gRPC server with Glade's options; each in-flight RPC holds one of ``max_workers``."""
    return grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="glade-grpc"),
        interceptors=list(interceptors),
        options=server_options(max_message_bytes=max_message_bytes),
        maximum_concurrent_rpcs=None,
    )


def bind(
    server: grpc.Server,
    address: str,
    *,
    insecure: bool = True,
    credentials: grpc.ServerCredentials | None = None,
) -> int:
    """Listen on ``address`` ("host:port", port 0 picks a free one); returns the port."""
    _check_address(address)
    if credentials is None and not insecure:
        raise ConfigError(
            f"cannot listen on {address} securely without TLS credentials: give a "
            "certificate and key, or start with --insecure on a trusted network"
        )
    try:
        if credentials is not None:
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise TransportError(f"cannot listen on {address}: {exc}") from None
    port = int(port)
    if port == 0:
        raise TransportError(f"cannot listen on {address}: the address is taken or invalid")
    return port


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"invalid address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:9092")
