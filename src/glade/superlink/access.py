"""Who may call what on the Control API, checked in one place, and what the audit log gets.

:class:`AccessInterceptor` runs before every Control handler. It reads the bearer token
(gRPC metadata ``authorization: Bearer <token>``), finds the caller, checks the role the
method needs in a table of :class:`Rule` s, and appends to the audit log what the rule asks
for: every change (ok, denied or failed) and every denied call. Handlers ask
:func:`current_call` who calls them and may name the target or add a detail.

A method missing from the table is refused (fail closed); a test checks the table covers the
service. With user authentication off every caller is an implicit admin.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from glade.errors import AccessDeniedError, AuthenticationError, GladeError
from glade.superlink.accounts import ANONYMOUS_ADMIN, Accounts, Caller, Role
from glade.superlink.audit import AuditLog

__all__ = [
    "PUBLIC",
    "AccessInterceptor",
    "CallScope",
    "Rule",
    "bearer_token",
    "current_call",
]

logger = logging.getLogger(__name__)

PUBLIC = "public"
"""A :class:`Rule` role: no login needed (Login itself)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """What a method needs: a role (``PUBLIC``, ``user`` or ``admin``) and its audit action.

    ``changes`` methods are audited whatever the result; the others only when denied.
    """

    role: str
    action: str
    changes: bool = False


@dataclass(slots=True)
class CallScope:
    """One call as the audit log records it; the handler may set ``target``/``detail``."""

    caller: Caller
    peer: str
    target: str = ""
    detail: str = ""
    actor: str = ""
    """Overrides the caller's name (Login sets the user logging in)."""


_SCOPE: contextvars.ContextVar[CallScope] = contextvars.ContextVar("glade_control_call")


def current_call() -> CallScope:
    """The scope of the Control call being handled (only inside a handler)."""
    return _SCOPE.get()


def bearer_token(metadata: Any) -> str:
    """The token of an ``authorization: Bearer <token>`` metadata entry (``""``: none)."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            scheme, _, token = text.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def _result(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    return "denied" if isinstance(exc, AccessDeniedError) else "failed"


class AccessInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Authenticates and authorises every call of one service by ``rules`` (method name ->
    :class:`Rule`), and audits them. Install it after the StatusInterceptor, so its errors
    become statuses."""

    def __init__(
        self,
        *,
        service: str,
        rules: Mapping[str, Rule],
        accounts: Accounts,
        audit: AuditLog,
        enabled: bool,
        login_hint: str = "log in first ('glade login')",
    ) -> None:
        self._prefix = f"/{service}/"
        self._rules = dict(rules)
        self._accounts = accounts
        self._audit = audit
        self._enabled = enabled
        self._hint = login_hint

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(handler_call_details)
        full = handler_call_details.method
        if handler is None or not full.startswith(self._prefix):
            return handler
        name = full[len(self._prefix) :]
        rule = self._rules.get(name, Rule(Role.ADMIN, f"call.{name}"))
        if name not in self._rules:
            logger.error("Control method %s has no access rule: only admins may call it", name)
        enter = functools.partial(self._enter, name, rule)
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            wrapped = _unary(handler.unary_unary, enter, self._leave)
            return grpc.unary_unary_rpc_method_handler(wrapped, **kwargs)
        if handler.stream_unary is not None:
            wrapped = _unary(handler.stream_unary, enter, self._leave)
            return grpc.stream_unary_rpc_method_handler(wrapped, **kwargs)
        if handler.unary_stream is not None:
            wrapped = _stream(handler.unary_stream, enter, self._leave)
            return grpc.unary_stream_rpc_method_handler(wrapped, **kwargs)
        wrapped = _stream(handler.stream_stream, enter, self._leave)
        return grpc.stream_stream_rpc_method_handler(wrapped, **kwargs)

    # -- one call --------------------------------------------------------------------------
    def _enter(
        self, name: str, rule: Rule, context: grpc.ServicerContext
    ) -> tuple[Rule, CallScope]:
        peer = context.peer() or ""
        if not self._enabled:
            return rule, CallScope(caller=ANONYMOUS_ADMIN, peer=peer)
        if rule.role == PUBLIC:
            anonymous = Caller(name="", role="", authenticated=False)
            return rule, CallScope(caller=anonymous, peer=peer)
        token = bearer_token(context.invocation_metadata())
        try:
            caller = self._accounts.authenticate(token)
        except AuthenticationError as exc:
            self._audit.record(
                actor="anonymous",
                action="auth.rejected",
                target=name,
                result="denied",
                detail=f"{exc} (peer {peer})",
            )
            raise AuthenticationError(f"{exc}: {self._hint}") from None
        scope = CallScope(caller=caller, peer=peer)
        if rule.role == Role.ADMIN and not caller.is_admin:
            error = AccessDeniedError(
                f"{name} needs the admin role; user {caller.name!r} has the role "
                f"{caller.role!r} (an admin can change it with 'glade user role')"
            )
            scope.detail = f"needs the admin role, has {caller.role!r}"
            self._leave(rule, scope, error, summary=True)
            raise error
        return rule, scope

    def _leave(
        self, rule: Rule, scope: CallScope, exc: BaseException | None, *, summary: bool = False
    ) -> None:
        """Audit the call if its rule asks; ``summary``: ``scope.detail`` says why it failed."""
        result = _result(exc)
        if not rule.changes and result != "denied":
            return
        detail = scope.detail
        if exc is not None and not summary:
            detail = str(exc) if isinstance(exc, GladeError) else f"internal error: {exc!r}"
        self._audit.record(
            actor=scope.actor or scope.caller.actor,
            action=rule.action,
            target=scope.target,
            result=result,
            detail=detail,
        )


_Enter = Callable[[grpc.ServicerContext], tuple[Rule, CallScope]]
_Leave = Callable[[Rule, CallScope, BaseException | None], None]


def _unary(behavior: Callable[..., Any], enter: _Enter, leave: _Leave) -> Callable[..., Any]:
    @functools.wraps(behavior)
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        rule, scope = enter(context)
        reset = _SCOPE.set(scope)
        try:
            response = behavior(request, context)
        except Exception as exc:
            leave(rule, scope, exc)
            raise
        finally:
            _SCOPE.reset(reset)
        leave(rule, scope, None)
        return response

    return handle


def _stream(behavior: Callable[..., Any], enter: _Enter, leave: _Leave) -> Callable[..., Any]:
    @functools.wraps(behavior)
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        rule, scope = enter(context)
        reset = _SCOPE.set(scope)
        try:
            yield from behavior(request, context)
        except Exception as exc:
            leave(rule, scope, exc)
            raise
        finally:
            _SCOPE.reset(reset)
        leave(rule, scope, None)

    return handle
