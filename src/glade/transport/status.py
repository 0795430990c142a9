"""One table from Glade exceptions to gRPC status codes, and the interceptor applying it.

Servicers raise Glade exceptions; :class:`StatusInterceptor` turns them into a gRPC status
with the exception's message, so handlers carry no try/except boilerplate. Anything not in
the table is a bug: it is logged with its traceback and answered ``INTERNAL``. Requests that
cannot be parsed are answered ``INVALID_ARGUMENT`` (gRPC's own answer would be ``INTERNAL``).

Clients turn a failed call back into an exception with :func:`error_from_rpc`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from glade.errors import (
    AccessDeniedError,
    AppLoadError,
    AuthenticationError,
    ConfigError,
    GladeError,
    InvalidArgumentError,
    InvalidStateError,
    LimitExceededError,
    NotFoundError,
    RecordError,
    RunError,
    SerdeError,
    TransportError,
)

__all__ = [
    "STATUS_CODES",
    "HandlerCache",
    "StatusInterceptor",
    "error_from_rpc",
    "status_for",
]

logger = logging.getLogger(__name__)


STATUS_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AuthenticationError, grpc.StatusCode.UNAUTHENTICATED),
    (AccessDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (LimitExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (InvalidStateError, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (SerdeError, grpc.StatusCode.INVALID_ARGUMENT),
    (RecordError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (AppLoadError, grpc.StatusCode.INVALID_ARGUMENT),
    (RunError, grpc.StatusCode.FAILED_PRECONDITION),
    (TransportError, grpc.StatusCode.UNAVAILABLE),
)
"""Exception class -> status code; the first entry the exception is an instance of wins."""

_FROM_CODE: dict[grpc.StatusCode, type[GladeError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.PERMISSION_DENIED: AccessDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceededError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidStateError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
}


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status code for ``exc`` from :data:`STATUS_CODES` (None: not a known error)."""
    for kind, code in STATUS_CODES:
        if isinstance(exc, kind):
            return code
    return None


def error_from_rpc(exc: grpc.RpcError, *, peer: str = "") -> GladeError:
    """The Glade exception for a failed call (``raise error_from_rpc(e) from e``).

    Unreachable peers and server faults become :class:`~glade.errors.TransportError`.
    """
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    kind = _FROM_CODE.get(code) if code is not None else None
    if kind is not None:
        return kind(details)
    where = f" {peer}" if peer else ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return TransportError(f"cannot reach the server{where}: {details}")
    name = code.name if code is not None else "no status"
    return TransportError(f"the server{where} failed ({name}): {details}")


class _Malformed:
    """Stands in for a request that could not be parsed (see ``_tolerant``)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError) as exc:
            return _Malformed(exc)

    return parse


def _checked(request: Any) -> Any:
    if isinstance(request, _Malformed):
        raise InvalidArgumentError(f"malformed request: {request.error}")
    return request


def _checked_stream(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        yield _checked(request)


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str) -> None:
    code = status_for(exc)
    if code is None:
        logger.exception("%s failed unexpectedly", method, exc_info=exc)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}: {exc!r}")
    logger.debug("%s answered %s: %s", method, code, exc)
    context.abort(code, str(exc) or type(exc).__name__)


def _wrap_unary(behavior: Callable[..., Any], method: str, stream_in: bool) -> Callable[..., Any]:
    @functools.wraps(behavior)
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            arg = _checked_stream(request) if stream_in else _checked(request)
            return behavior(arg, context)
        except Exception as exc:
            if _is_abort(exc, context):
                raise
            _abort(context, exc, method)

    return handle


def _wrap_stream(behavior: Callable[..., Any], method: str, stream_in: bool) -> Callable[..., Any]:
    @functools.wraps(behavior)
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            arg = _checked_stream(request) if stream_in else _checked(request)
            yield from behavior(arg, context)
        except Exception as exc:
            if _is_abort(exc, context):
                raise
            _abort(context, exc, method)

    return handle


def _is_abort(exc: Exception, context: grpc.ServicerContext) -> bool:
    """True for what must propagate untouched: ``context.abort``'s exception, a cancelled call."""
    if isinstance(exc, grpc.RpcError):
        return True  # the client went away while we read its stream
    return type(exc) is Exception and context.code() is not None


class HandlerCache:
    """The wrapped handler an interceptor made for a method, reused while the handler it
    wrapped is the same object (it is, call after call, unless an inner interceptor makes
    a new one each time): gRPC asks the interceptors for every call.

    >>> cache = HandlerCache()
    >>> cache.get("/m", "h", lambda h: [h]) is cache.get("/m", "h", lambda h: [h])
    True
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    def get(self, method: str, handler: Any, wrap: Callable[[Any], Any]) -> Any:
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = wrap(handler)
        self._wrapped[method] = (handler, wrapped)  # a race only wraps twice
        return wrapped


class StatusInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Applies :data:`STATUS_CODES` to every handler of a server and parses requests leniently."""

    def __init__(self) -> None:
        self._cache = HandlerCache()

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return self._cache.get(method, handler, lambda h: self._wrap(h, method))

    @staticmethod
    def _wrap(handler: Any, method: str) -> Any:
        kwargs = {
            "request_deserializer": _tolerant(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            wrapped = _wrap_unary(handler.unary_unary, method, False)
            return grpc.unary_unary_rpc_method_handler(wrapped, **kwargs)
        if handler.stream_unary is not None:
            wrapped = _wrap_unary(handler.stream_unary, method, True)
            return grpc.stream_unary_rpc_method_handler(wrapped, **kwargs)
        if handler.unary_stream is not None:
            wrapped = _wrap_stream(handler.unary_stream, method, False)
            return grpc.unary_stream_rpc_method_handler(wrapped, **kwargs)
        wrapped = _wrap_stream(handler.stream_stream, method, True)
        return grpc.stream_stream_rpc_method_handler(wrapped, **kwargs)
