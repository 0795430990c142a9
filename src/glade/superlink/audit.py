"""`AuditLog`: appends who did what to the SuperLink's state, and summarises floods of refusals.

Every Control action (login, run submit/stop, user and node changes) and every refused
call, of users on the Control API and of SuperNodes on the Fleet API, becomes an
:class:`~glade.superlink.state.AuditEntry`. Refusals are what an attacker can produce at
will, so they are rate-limited: beyond ``denied_rate`` per second (bursts of
``denied_burst``) they are only counted, and the next refusal that is written says how many
were left out. Accepted actions are always written. A failure to write never turns the call
into an error; it is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from glade.superlink.state import AuditEntry, State

__all__ = ["AuditLog"]

logger = logging.getLogger(__name__)

_DETAIL_LIMIT = 500


class AuditLog:
    """Appends :class:`~glade.superlink.state.AuditEntry` s with the time of ``clock``."""

    def __init__(
        self,
        state: State,
        *,
        clock: Callable[[], float] = time.time,
        denied_rate: float = 20.0,
        denied_burst: int = 100,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self._clock = clock
        self._rate = denied_rate
        self._burst = float(denied_burst)
        self._tokens = float(denied_burst)
        self._monotonic = monotonic
        self._refilled = monotonic()
        self._suppressed = 0
        self._lock = threading.Lock()

    @property
    def suppressed(self) -> int:
        """Refusals counted but not written yet (the next written refusal reports them)."""
        return self._suppressed

    def record(
        self, *, actor: str, action: str, target: str = "", result: str = "ok", detail: str = ""
    ) -> bool:
        """Append one entry; False if it was a refusal left out of a flood (counted)."""
        if result == "denied":
            left_out = self._take_refusal()
            if left_out is None:
                return False
            if left_out:
                detail = f"{detail} ({left_out} more refusal(s) left out of the audit log)"
        entry = AuditEntry(
            time=self._clock(),
            actor=actor,
            action=action,
            target=target,
            result=result,
            detail=detail[:_DETAIL_LIMIT],
        )
        try:
            self._state.append_audit(entry)
        except Exception:  # the audit must not turn a call into an internal error
            logger.exception("cannot append to the audit log: %s", entry)
        return True

    def _take_refusal(self) -> int | None:
        """None: over the rate (counted); else how many were left out before this one."""
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
            self._refilled = now
            if self._tokens < 1.0:
                self._suppressed += 1
                return None
            self._tokens -= 1.0
            left_out, self._suppressed = self._suppressed, 0
            return left_out
