"""`Grid`: how a ServerApp talks to the nodes of its run, in any runtime."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from glade.message import Message
from glade.server.events import RunEvent

__all__ = ["BaseGrid", "Grid", "collect_replies"]


@runtime_checkable
class Grid(Protocol):
    """The ServerApp's view of the federation.

    - :meth:`get_node_ids` lists the nodes currently available to the run.
    - :meth:`push_messages` sends instructions and returns their message ids.
    - :meth:`pull_messages` returns the replies that have arrived for some message ids,
      waiting up to ``timeout`` seconds for at least one.
    - :meth:`send_and_receive` pushes and waits for all replies (or the timeout).
    - :meth:`report` hands progress and metrics to the runtime (CLI display, run history).
    """

    @property
    def run_id(self) -> int: ...

    def get_node_ids(self) -> list[int]: ...

    def push_messages(self, messages: Iterable[Message]) -> list[str]: ...

    def pull_messages(
        self, message_ids: Iterable[str], *, timeout: float = 0.0
    ) -> list[Message]: ...

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]: ...

    def report(self, event: RunEvent) -> None: ...


class BaseGrid(ABC):
    """Shared behaviour of every Grid: message stamping and ``send_and_receive``."""

    def __init__(self, *, run_id: int) -> None:
        self._run_id = run_id

    @property
    def run_id(self) -> int:
        return self._run_id

    @abstractmethod
    def get_node_ids(self) -> list[int]: ...

    @abstractmethod
    def _push(self, messages: list[Message]) -> None: ...

    @abstractmethod
    def pull_messages(
        self, message_ids: Iterable[str], *, timeout: float = 0.0
    ) -> list[Message]: ...

    def report(self, event: RunEvent) -> None:  # noqa: B027 - optional hook
        """Runtimes that show progress override this; the default ignores events."""

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        stamped = [self._stamp(m) for m in messages]
        known = self._known_nodes({m.metadata.dst_node_id for m in stamped})
        for m in stamped:
            if m.metadata.dst_node_id not in known:
                raise ValueError(
                    f"message {m.metadata.message_id} is addressed to node "
                    f"{m.metadata.dst_node_id}, which is not part of this run; "
                    "use grid.get_node_ids()"
                )
        self._push(stamped)
        return [m.metadata.message_id for m in stamped]

    def _known_nodes(self, wanted: set[int]) -> set[int]:
        """Nodes a push may address (``wanted``: its destinations); a Grid whose
        :meth:`get_node_ids` is a round trip may answer from a list it fetched just before."""
        return set(self.get_node_ids())

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        """Push ``messages`` and wait for their replies, up to ``timeout`` seconds.

        Returns the replies that arrived in time (possibly fewer than sent).
        """
        return collect_replies(self, self.push_messages(messages), timeout=timeout)

    def _stamp(self, message: Message) -> Message:
        if not isinstance(message, Message):
            raise TypeError(f"Grid sends Message objects, got {type(message).__name__}")
        md = message.metadata
        if md.reply_to_message_id:
            raise ValueError("Grid.push_messages sends instructions, not replies")
        return message.with_metadata(run_id=self._run_id, src_node_id=0, created_at=time.time())


def collect_replies(
    grid: Grid,
    message_ids: Iterable[str],
    *,
    timeout: float | None = None,
    on_reply: Callable[[Message], object] | None = None,
) -> list[Message]:
    """Wait for the replies to ``message_ids`` (pushed already), up to ``timeout`` seconds.

    ``on_reply`` is called with each reply as soon as it arrives, in this thread, before
    waiting for the next: e.g. to check a reply's arrays while the others are still on
    their way. Returns the replies that arrived in time, in arrival order.
    """
    pending = set(message_ids)
    deadline = None if timeout is None else time.monotonic() + timeout
    replies: list[Message] = []
    while pending:
        wait = 3600.0 if deadline is None else deadline - time.monotonic()
        if wait <= 0:
            break
        for reply in grid.pull_messages(pending, timeout=wait):
            if reply.metadata.reply_to_message_id in pending:
                pending.discard(reply.metadata.reply_to_message_id)
                replies.append(reply)
                if on_reply is not None:
                    on_reply(reply)
    return replies
