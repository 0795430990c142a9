"""`Notifier`: wake long-polls when something they wait for may have changed.

A long-poll reads a topic's version, checks the state, and if nothing is there waits for the
version to move. A writer changes the state first and then notifies the topic, so a wake-up
is never missed. Topics are hashable keys such as ``("node", 7)`` or ``("run", 3)``.

>>> n = Notifier()
>>> v = n.version(("run", 1))
>>> n.notify(("run", 1))
>>> n.wait(("run", 1), v, timeout=0.0)
True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

__all__ = ["Notifier"]


class Notifier:
    """Versioned topics with blocking waits (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[Hashable, int] = {}
        self._conditions: dict[Hashable, threading.Condition] = {}
        self._waiters: dict[Hashable, int] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def version(self, topic: Hashable) -> int:
        with self._lock:
            return self._versions.get(topic, 0)

    def notify(self, *topics: Hashable) -> None:
        with self._lock:
            for topic in topics:
                self._versions[topic] = self._versions.get(topic, 0) + 1
                cond = self._conditions.get(topic)
                if cond is not None:
                    cond.notify_all()

    def wait(self, topic: Hashable, version: int, *, timeout: float) -> bool:
        """Block until ``topic`` moves past ``version`` (True) or ``timeout`` passes (False).

        Returns at once after :meth:`close`.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            cond = self._conditions.get(topic)
            if cond is None:
                cond = self._conditions[topic] = threading.Condition(self._lock)
            self._waiters[topic] = self._waiters.get(topic, 0) + 1
            try:
                while self._versions.get(topic, 0) == version and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    cond.wait(remaining)
                return True
            finally:
                self._waiters[topic] -= 1
                if not self._waiters[topic]:
                    del self._waiters[topic], self._conditions[topic]

    def close(self) -> None:
        """Wake every waiter, now and later (the service is stopping)."""
        with self._lock:
            self._closed = True
            for cond in self._conditions.values():
                cond.notify_all()
