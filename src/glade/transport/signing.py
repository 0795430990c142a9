"""Signed requests: a SuperNode signs every Fleet call with its Ed25519 key; the SuperLink checks.

The protocol (``glade-fleet-v1``). Each request carries four gRPC metadata entries:

- ``glade-node-key``: base64 of the node's 32 raw Ed25519 public-key bytes;
- ``glade-timestamp``: when it was signed, Unix seconds in decimal (``1718000000.123``);
- ``glade-nonce``: 16 random bytes in hex, new for every request;
- ``glade-signature-bin`` (binary metadata): the Ed25519 signature of::

      b"glade-fleet-v1\\n" + method + b"\\n" + timestamp + b"\\n" + nonce + b"\\n" + digest

  where ``method`` is the full path (``/glade.v1.Fleet/PullMessages``), ``timestamp`` and
  ``nonce`` are the metadata values as sent, and ``digest`` is the raw 32-byte SHA-256 of
  the serialized request exactly as it travels (what the server's request deserializer
  receives). Client-streaming calls (PushObject) sign the SHA-256 of ``b""``: their chunks
  are content-addressed and verified against their object id anyway.

The signature binds the key, the method, the request bytes and the time; the SuperLink's
policy (:mod:`glade.superlink.node_auth`) accepts the key only if it is on its allow-list,
the timestamp only within a window around its clock, and each nonce only once.

- :class:`SigningInterceptor` is the client side, for all four kinds of call
  (``grpc.intercept_channel(channel, SigningInterceptor(RequestSigner(key)))``).
- :class:`VerifyingInterceptor` is the server side: it hashes the raw bytes of each request
  (by wrapping the handler's request deserializer) and hands a :class:`ReceivedCall` to a
  policy before the handler runs. Put it *after* :class:`~glade.transport.status.StatusInterceptor`
  in a server's interceptor list, so that the policy's exceptions become a gRPC status.

>>> from glade.keypairs import PrivateKey
>>> signer = RequestSigner(PrivateKey.generate(), clock=lambda: 1000.0)
>>> metadata = dict(signer.metadata("/glade.v1.Fleet/Heartbeat", EMPTY_DIGEST))
>>> call = parse_call("/glade.v1.Fleet/Heartbeat", metadata, EMPTY_DIGEST)
>>> call.timestamp, call.signature_ok()
(1000.0, True)
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from glade.errors import AuthenticationError, ConfigError, InvalidArgumentError
from glade.keypairs import PrivateKey, PublicKey
from glade.transport.status import HandlerCache

__all__ = [
    "EMPTY_DIGEST",
    "NODE_KEY_KEY",
    "NONCE_KEY",
    "SIGNATURE_KEY",
    "TIMESTAMP_KEY",
    "ReceivedCall",
    "RequestSigner",
    "SignedCall",
    "SigningInterceptor",
    "VerifyingInterceptor",
    "parse_call",
    "request_digest",
    "signed_bytes",
]

NODE_KEY_KEY = "glade-node-key"
TIMESTAMP_KEY = "glade-timestamp"
NONCE_KEY = "glade-nonce"
SIGNATURE_KEY = "glade-signature-bin"

_KEYS = (NODE_KEY_KEY, TIMESTAMP_KEY, NONCE_KEY, SIGNATURE_KEY)

DOMAIN = b"glade-fleet-v1\n"
"""Prefix of every signed byte string: a signature is good for this protocol only."""
EMPTY_DIGEST = hashlib.sha256(b"").digest()
"""The digest signed for client-streaming calls."""

_TIMESTAMP = re.compile(r"\d{1,12}(\.\d{1,9})?")
_NONCE = re.compile(r"[0-9a-f]{32}")
_SIGNATURE_SIZE = 64


def signed_bytes(method: str, timestamp: str, nonce: str, digest: bytes) -> bytes:
    """What a request's signature covers (see the module docstring)."""
    head = f"{method}\n{timestamp}\n{nonce}\n".encode()
    return DOMAIN + head + digest


def request_digest(request: Any) -> bytes:
    """SHA-256 of a request as serialized for the wire (bytes as they are, or protobuf)."""
    if isinstance(request, bytes | bytearray | memoryview):
        return hashlib.sha256(request).digest()
    return hashlib.sha256(request.SerializeToString()).digest()


class RequestSigner:
    """Makes the signature metadata of requests with one private key."""

    def __init__(self, key: PrivateKey, *, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._clock = clock
        self.public_key = key.public_key
        self._key_b64 = base64.b64encode(key.public_key.raw).decode()

    def metadata(self, method: str, digest: bytes) -> list[tuple[str, str | bytes]]:
        """The four metadata entries for one call of ``method`` whose request hashes to
        ``digest``."""
        timestamp = f"{self._clock():.3f}"
        nonce = os.urandom(16).hex()
        signature = self._key.sign(signed_bytes(method, timestamp, nonce, digest))
        return [
            (NODE_KEY_KEY, self._key_b64),
            (TIMESTAMP_KEY, timestamp),
            (NONCE_KEY, nonce),
            (SIGNATURE_KEY, signature),
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedCall:
    """What a received request claims: its key, time, nonce and signature, and its digest."""

    method: str
    public_key: PublicKey
    timestamp: float
    timestamp_text: str
    nonce: str
    signature: bytes
    digest: bytes

    def signature_ok(self) -> bool:
        """Whether the signature is the key's signature of this call."""
        data = signed_bytes(self.method, self.timestamp_text, self.nonce, self.digest)
        return self.public_key.verify(self.signature, data)


def parse_call(method: str, metadata: Mapping[str, str | bytes], digest: bytes) -> SignedCall:
    """The :class:`SignedCall` in a request's metadata.

    Raises :class:`~glade.errors.AuthenticationError` if an entry is missing or malformed
    (the signature itself is checked by :meth:`SignedCall.signature_ok`).
    """
    missing = [
        k for k in (NODE_KEY_KEY, TIMESTAMP_KEY, NONCE_KEY, SIGNATURE_KEY) if k not in metadata
    ]
    if missing:
        raise AuthenticationError(
            f"the request is not signed (no {', '.join(missing)} metadata): this SuperLink "
            "requires node authentication; start the SuperNode with --auth-key"
        )
    key_text, timestamp, nonce = (
        _text(metadata[k]) for k in (NODE_KEY_KEY, TIMESTAMP_KEY, NONCE_KEY)
    )
    signature = metadata[SIGNATURE_KEY]
    try:
        raw = base64.b64decode(key_text, validate=True)
        public_key = PublicKey(raw)
    except (binascii.Error, ValueError, ConfigError):
        raise AuthenticationError(
            f"malformed {NODE_KEY_KEY} metadata: base64 of 32 key bytes expected"
        ) from None
    if not _TIMESTAMP.fullmatch(timestamp):
        raise AuthenticationError(f"malformed {TIMESTAMP_KEY} metadata {timestamp[:40]!r}")
    if not _NONCE.fullmatch(nonce):
        raise AuthenticationError(f"malformed {NONCE_KEY} metadata: 32 hex digits expected")
    if not isinstance(signature, bytes) or len(signature) != _SIGNATURE_SIZE:
        raise AuthenticationError(f"malformed {SIGNATURE_KEY} metadata: 64 bytes expected")
    return SignedCall(
        method=method,
        public_key=public_key,
        timestamp=float(timestamp),
        timestamp_text=timestamp,
        nonce=nonce,
        signature=signature,
        digest=digest,
    )


def _text(value: str | bytes) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


# -- client side -------------------------------------------------------------------------------
class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    pass


class SigningInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds the signature metadata to every call of a channel (see the module docstring).

    Unary requests are hashed as ``request.SerializeToString()`` (or as they are, if they
    are bytes); serializing an unchanged protobuf message again gives the same bytes, so
    the hash covers what the stub sends.
    """

    def __init__(self, signer: RequestSigner) -> None:
        self._signer = signer

    def _details(self, details: Any, digest: bytes) -> _CallDetails:
        method = details.method
        if isinstance(method, bytes):
            method = method.decode()
        metadata = [*(details.metadata or ()), *self._signer.metadata(method, digest)]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details, request_digest(request)), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details, request_digest(request)), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details, EMPTY_DIGEST), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details, EMPTY_DIGEST), requests)


# -- server side -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedCall:
    """A request as the server's policy sees it before the handler runs.

    ``request`` is the parsed request of a unary-request call (None for client streaming,
    or when it could not be parsed).
    """

    method: str
    metadata: Mapping[str, str | bytes]
    digest: bytes
    request: Any
    peer: str


Policy = Callable[[ReceivedCall], object]
"""Raises (e.g. AuthenticationError) to refuse a call; what it returns is ignored."""


class _Received:
    """A unary request's digest with its parsed form (or why it could not be parsed)."""

    __slots__ = ("digest", "error", "request")

    def __init__(self, digest: bytes, request: Any, error: Exception | None) -> None:
        self.digest = digest
        self.request = request
        self.error = error


def _hashing(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], _Received]:
    def parse(data: bytes) -> _Received:
        digest = hashlib.sha256(data).digest()
        try:
            request = deserializer(data) if deserializer is not None else data
        except Exception as exc:  # reported after authentication, see _unary
            return _Received(digest, None, exc)
        return _Received(digest, request, None)

    return parse


def _metadata(context: grpc.ServicerContext) -> dict[str, str | bytes]:
    return {k: v for k, v in (context.invocation_metadata() or ())}


class VerifyingInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Runs ``policy`` on every call of a server before its handler (module docstring)."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._cache = HandlerCache()

    def _check(
        self, method: str, context: grpc.ServicerContext, digest: bytes, request: Any
    ) -> None:
        self._policy(
            ReceivedCall(
                method=method,
                metadata=_metadata(context),
                digest=digest,
                request=request,
                peer=str(context.peer() or ""),
            )
        )

    def _unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def handle(received: Any, context: grpc.ServicerContext) -> Any:
            if not isinstance(received, _Received):  # deserialized by someone else: rehash
                received = _Received(request_digest(received), received, None)
            self._check(method, context, received.digest, received.request)
            if received.error is not None:
                raise InvalidArgumentError(f"malformed request: {received.error}")
            return behavior(received.request, context)

        return handle

    def _streaming(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def handle(requests: Iterable[Any], context: grpc.ServicerContext) -> Any:
            self._check(method, context, EMPTY_DIGEST, None)
            return behavior(requests, context)

        return handle

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if isinstance(method, bytes):
            method = method.decode()
        return self._cache.get(method, handler, lambda h: self._wrap(h, method))

    def _wrap(self, handler: Any, method: str) -> Any:
        serializer = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method),
                request_deserializer=_hashing(handler.request_deserializer),
                response_serializer=serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._unary(handler.unary_stream, method),
                request_deserializer=_hashing(handler.request_deserializer),
                response_serializer=serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._streaming(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(handler.stream_stream, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=serializer,
        )
