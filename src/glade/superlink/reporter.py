"""`EventReporter`: a ServerApp's run events, sent to the SuperLink in order, in the background.

A round reports an event when it starts and when a stage ends; waiting for each ReportEvent
call would put a SuperLink round trip into every round for nothing the round needs back. The
reporter hands them to one thread, which delivers them in the order they were reported: it
waits ``linger_s`` after the first item for the ones that follow, and the items queued
while a delivery is in flight go together in the next one (one ReportEvent for the end of
a round and the start of the next). :meth:`flush` waits until everything
reported so far has been delivered, and raises the first failure if a delivery failed (a
later :meth:`send` raises it too, so a ServerApp whose SuperLink went away learns it at its
next report, as before).

>>> batches = []
>>> reporter = EventReporter(batches.append)
>>> reporter.send("a"); reporter.send("b")
>>> reporter.close(timeout=5)
>>> [item for batch in batches for item in batch]
['a', 'b']
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from glade.errors import TransportError

__all__ = ["EventReporter"]

_T = TypeVar("_T")
MAX_BATCH = 64
"""At most this many items per delivery."""


class EventReporter(Generic[_T]):
    """Call ``deliver(items)`` with what was :meth:`send`, in order, from a thread of its own."""

    def __init__(
        self,
        deliver: Callable[[list[_T]], object],
        *,
        linger_s: float = 0.0,
        name: str = "glade-reporter",
    ) -> None:
        self._deliver = deliver
        self._linger_s = linger_s
        self._flushing = 0  # callers of flush() waiting: no lingering then
        self._name = name
        self._items: collections.deque[_T] = collections.deque()
        self._cond = threading.Condition()
        self._busy = 0  # items taken off the deque and being delivered
        self._closed = False
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None

    def send(self, item: _T) -> None:
        """Queue ``item``; raises the error of an earlier delivery that failed."""
        with self._cond:
            self._raise_error()
            if self._closed:
                raise RuntimeError("the event reporter is closed")
            self._items.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every item sent so far was delivered (or ``timeout`` passed: then
        :class:`~glade.errors.TransportError`); raises the error of a failed delivery."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._items or self._busy:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TransportError(
                            f"{len(self._items) + self._busy} run event(s) not sent to the "
                            f"SuperLink within {timeout:g} s"
                        )
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1
            self._raise_error()

    def close(self, timeout: float | None = None) -> None:
        """:meth:`flush`, then stop the thread (items sent later raise RuntimeError); all
        within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
                thread = self._thread
            if thread is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                if not self._items:
                    return
                until = time.monotonic() + self._linger_s
                while not (self._closed or self._flushing) and len(self._items) < MAX_BATCH:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)  # for the items that follow the first
                batch = [self._items.popleft() for _ in range(min(MAX_BATCH, len(self._items)))]
                self._busy = len(batch)
            try:
                self._deliver(batch)
            except Exception as exc:  # a GladeError when the SuperLink refused or is away
                with self._cond:
                    if self._error is None:
                        self._error = exc
            finally:
                with self._cond:
                    self._busy = 0
                    self._cond.notify_all()
