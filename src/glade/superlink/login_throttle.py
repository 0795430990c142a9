"""`LoginThrottle`: slows down password guessing, one user name and client host at a time.

After ``max_failures`` failed logins of one user name from one host within ``window_s``,
that pair is refused for ``lockout_s`` seconds without checking the password (no hashing
cost either); each further lockout of the pair doubles, up to ``max_lockout_s``. A success
clears the pair. Keying by host as well as name means an attacker elsewhere cannot lock a
user out. At most ``max_keys`` pairs are remembered (the oldest are forgotten).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from glade.errors import AuthenticationError

__all__ = ["LoginThrottle", "peer_host"]


@dataclass(slots=True)
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    lockouts: int = 0


class LoginThrottle:
    """Counts failed logins per (user name, host); see the module docstring."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 900.0,
        lockout_s: float = 30.0,
        max_lockout_s: float = 900.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window_s = window_s
        self._lockout_s = lockout_s
        self._max_lockout_s = max_lockout_s
        self._max_keys = max_keys
        self._clock = clock
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, user: str, host: str) -> None:
        """AuthenticationError if the pair is locked out now."""
        with self._lock:
            record = self._records.get((user, host))
            wait = 0.0 if record is None else record.locked_until - self._clock()
        if wait > 0:
            raise AuthenticationError(
                f"too many failed logins for {user!r} from {host or 'this host'}: "
                f"try again in {wait:.0f} s (an admin can reset a forgotten password with "
                "'glade user rm' and 'glade user add')"
            )

    def failed(self, user: str, host: str) -> None:
        now = self._clock()
        with self._lock:
            record = self._records.pop((user, host), None) or _Record()
            self._records[(user, host)] = record  # now the newest
            record.failures = [t for t in record.failures if t > now - self._window_s] + [now]
            if len(record.failures) >= self._max_failures:
                lockout = min(self._max_lockout_s, self._lockout_s * 2**record.lockouts)
                record.locked_until = now + lockout
                record.lockouts += 1
                record.failures.clear()
            while len(self._records) > self._max_keys:
                self._records.popitem(last=False)

    def succeeded(self, user: str, host: str) -> None:
        with self._lock:
            self._records.pop((user, host), None)


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string (``ipv4:10.0.0.5:51234`` -> ``10.0.0.5``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or rest
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer
