"""`InlineBackend`: runs ClientApps in the calling thread (tests, debugging with breakpoints)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from glade.client import ClientApp
from glade.context import Context
from glade.message import Message
from glade.simulation.backend import ClientAppSpec, NodeSpec, ReplyCallback, make_context

__all__ = ["InlineBackend"]


class InlineBackend:
    """Executes each message synchronously in ``submit``: no processes, fully deterministic."""

    def __init__(self) -> None:
        self._app: ClientApp | None = None
        self._contexts: dict[int, Context] = {}
        self._on_replies: ReplyCallback | None = None

    def start(
        self,
        *,
        client_app: ClientAppSpec,
        nodes: Sequence[NodeSpec],
        run_id: int,
        run_config: Mapping[str, Any],
        on_replies: ReplyCallback,
    ) -> None:
        self._app = client_app.load()
        self._contexts = {
            n.node_id: make_context(n, run_id=run_id, run_config=run_config) for n in nodes
        }
        self._on_replies = on_replies

    def submit(self, messages: Sequence[Message]) -> None:
        assert self._app is not None and self._on_replies is not None, "start() first"
        replies = [self._app(m, self._contexts[m.metadata.dst_node_id]) for m in messages]
        self._on_replies(replies)

    def shutdown(self) -> None:
        self._contexts.clear()
