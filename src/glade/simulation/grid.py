"""`SimulationGrid`: the Grid of a simulated run, backed by a `Backend`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

from glade.message import Message
from glade.server.events import History, RunEvent
from glade.server.grid import BaseGrid
from glade.simulation.backend import Backend

__all__ = ["SimulationGrid"]


class SimulationGrid(BaseGrid):
    """Delivers messages to virtual nodes through a backend and collects their replies."""

    def __init__(
        self,
        *,
        run_id: int,
        node_ids: Sequence[int],
        backend: Backend,
        on_event: Callable[[RunEvent], None] | None = None,
    ) -> None:
        super().__init__(run_id=run_id)
        self._node_ids = list(node_ids)
        self._node_set = frozenset(node_ids)
        self._backend = backend
        self._on_event = on_event
        self._replies: dict[str, Message] = {}
        self._cond = threading.Condition()
        self.history = History()

    def get_node_ids(self) -> list[int]:
        return list(self._node_ids)

    def _push(self, messages: list[Message]) -> None:
        if messages:
            self._backend.submit(messages)

    def deliver(self, replies: list[Message]) -> None:
        """Called by the backend (any thread) with replies as they arrive."""
        with self._cond:
            for reply in replies:
                self._replies[reply.metadata.reply_to_message_id] = reply
            self._cond.notify_all()

    def pull_messages(self, message_ids: Iterable[str], *, timeout: float = 0.0) -> list[Message]:
        ids = set(message_ids)
        with self._cond:
            if timeout > 0:
                self._cond.wait_for(lambda: not ids.isdisjoint(self._replies), timeout)
            found = ids.intersection(self._replies)
            return [self._replies.pop(i) for i in found]

    def report(self, event: RunEvent) -> None:
        self.history.add(event)
        if self._on_event is not None:
            self._on_event(event)
