"""`NodeAuth`: which Fleet requests the SuperLink accepts when node authentication is on.

Every Fleet request is signed by its SuperNode (the protocol is in
:mod:`glade.transport.signing`). :class:`NodeAuth` is the policy the Fleet server's
:class:`~glade.transport.signing.VerifyingInterceptor` runs before each handler. A request
is refused with UNAUTHENTICATED (:class:`~glade.errors.AuthenticationError`) when

- its signature metadata is missing or malformed,
- its key is not on the allow-list (``glade node add``, kept in the state),
- its signature does not verify (other content, other method, other key),
- its timestamp is more than ``window_s`` away from the SuperLink's clock, or
- its nonce was seen before (a replay). Nonces are remembered for the window in a bounded
  cache; when the cache is full the oldest are dropped and requests signed no later than
  the newest dropped one are refused as too old, so a replay is never let through.

A request that names a node (its ``node_id`` field, or ``glade-node-id`` metadata on object
calls) other than the one bound to its key is refused with PERMISSION_DENIED; a key not bound
yet gets NOT_FOUND (register first). Register itself binds the key to a node id at the
node's first registration (see :class:`~glade.superlink.fleet.FleetServicer`).

Each refusal is logged (a warning with the key's fingerprint) and appended to the audit log
as ``auth.rejected`` through the :class:`~glade.superlink.audit.AuditLog`, which summarises
floods (the next written refusal says how many were left out).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from glade.errors import AccessDeniedError, AuthenticationError, NotFoundError
from glade.keypairs import PublicKey
from glade.superlink.audit import AuditLog
from glade.superlink.state import NodeKey, State
from glade.transport.objects import NODE_ID_KEY
from glade.transport.signing import NODE_KEY_KEY, ReceivedCall, SignedCall, parse_call

__all__ = ["AUDIT_ACTION", "DEFAULT_WINDOW_S", "NodeAuth", "NonceCache"]

logger = logging.getLogger(__name__)

AUDIT_ACTION = "auth.rejected"
DEFAULT_WINDOW_S = 60.0
REGISTER_METHOD = "/glade.v1.Fleet/Register"


class NonceCache:
    """Nonces seen within the window, at most ``max_entries`` (see the module docstring)."""

    def __init__(self, *, window_s: float, max_entries: int = 200_000) -> None:
        self._window_s = window_s
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> timestamp, by arrival
        self._floor = float("-inf")  # requests signed at or before this are refused
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, nonce: str, timestamp: float, *, now: float) -> str:
        """Remember ``nonce``; returns why it is refused ("" if it is new)."""
        with self._lock:
            oldest = now - self._window_s
            while self._seen:
                first = next(iter(self._seen.values()))
                if first >= oldest:
                    break
                self._seen.popitem(last=False)  # out of the window: refused by its timestamp
            if nonce in self._seen:
                return "a replayed request (its nonce was used before)"
            if timestamp <= self._floor:
                return "a request older than the replay cache remembers: send it again"
            self._seen[nonce] = timestamp
            while len(self._seen) > self._max:
                _, dropped = self._seen.popitem(last=False)
                self._floor = max(self._floor, dropped)
            return ""


class NodeAuth:
    """The node-authentication policy of the Fleet API (see the module docstring).

    Call it with a :class:`~glade.transport.signing.ReceivedCall`; it returns the caller's
    :class:`~glade.superlink.state.NodeKey` or raises.
    """

    def __init__(
        self,
        state: State,
        audit: AuditLog,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.time,
        max_nonces: int = 200_000,
    ) -> None:
        self._state = state
        self._audit = audit
        self.window_s = window_s
        self._clock = clock
        self.nonces = NonceCache(window_s=window_s, max_entries=max_nonces)

    def __call__(self, call: ReceivedCall) -> NodeKey:
        signed: SignedCall | None = None
        try:
            signed = parse_call(call.method, call.metadata, call.digest)
            key = self._authenticate(signed)
            self._authorize(call, key)
        except (AuthenticationError, AccessDeniedError) as exc:
            self._reject(call, signed, exc)
            raise
        return key

    def _authenticate(self, call: SignedCall) -> NodeKey:
        key = self._state.get_node_key(call.public_key.raw)
        if key is None:
            raise AuthenticationError(
                f"the node key {call.public_key.fingerprint} is not on the SuperLink's "
                "allow-list: an admin adds it with 'glade node add'"
            )
        if not call.signature_ok():
            raise AuthenticationError(
                "the request's signature does not match its key and content: it was altered "
                "on the way or signed with another key"
            )
        now = self._clock()
        skew = call.timestamp - now
        if abs(skew) > self.window_s:
            raise AuthenticationError(
                f"the request was signed {abs(skew):.0f} s {'after' if skew > 0 else 'before'} "
                f"the SuperLink's time (at most {self.window_s:g} s are allowed): check the "
                "SuperNode's clock (NTP)"
            )
        why = self.nonces.add(call.nonce, call.timestamp, now=now)
        if why:
            raise AuthenticationError(f"refused {why}")
        return key

    def _authorize(self, call: ReceivedCall, key: NodeKey) -> None:
        if call.method == REGISTER_METHOD:
            return  # the key decides the node id (FleetServicer.Register)
        claimed = _claimed_node(call)
        if claimed is None:
            return  # nothing named: the handler asks for what it needs
        if not key.node_id:
            raise NotFoundError(f"unknown node {claimed}: register (again) first")
        if claimed != key.node_id:
            raise AccessDeniedError(
                f"this SuperNode's key belongs to node {key.node_id}, not to node {claimed}"
            )

    # -- refusals --------------------------------------------------------------------------
    def _reject(self, call: ReceivedCall, signed: SignedCall | None, exc: Exception) -> None:
        fingerprint = _fingerprint(call, signed)
        written = self._audit.record(
            actor=f"node:{fingerprint}" if fingerprint else "anonymous",
            action=AUDIT_ACTION,
            target=call.method,
            result="denied",
            detail=f"peer {call.peer or '?'}: {exc}",
        )
        if written:  # a flood is counted in the audit log, not logged line by line
            logger.warning(
                "refused %s from %s (node key %s): %s",
                call.method,
                call.peer or "?",
                fingerprint or "none",
                exc,
            )


def _claimed_node(call: ReceivedCall) -> int | None:
    request = call.request
    if request is not None and hasattr(request, "node_id"):
        return int(request.node_id)
    raw = call.metadata.get(NODE_ID_KEY)
    if raw is None:
        return None
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    return int(text) if text.isdigit() else None


def _fingerprint(call: ReceivedCall, signed: SignedCall | None) -> str:
    if signed is not None:
        return signed.public_key.fingerprint
    raw = call.metadata.get(NODE_KEY_KEY)
    if raw is None:
        return ""
    try:
        text = raw.decode("ascii") if isinstance(raw, bytes) else raw
        return PublicKey.parse(text).fingerprint
    except Exception:
        return "(malformed)"
