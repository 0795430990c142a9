"""The `Backend` seam: what executes ClientApps for the virtual nodes of a simulation."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from glade.client import ClientApp
from glade.context import Context
from glade.errors import ConfigError
from glade.message import Message
from glade.project import load_app

__all__ = [
    "Backend",
    "ClientAppSpec",
    "NodeSpec",
    "ReplyCallback",
    "available_cpus",
    "check_int",
]

ReplyCallback = Callable[[list[Message]], None]


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One virtual SuperNode: its id and node config (``partition-id``, ``num-partitions``)."""

    node_id: int
    node_config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientAppSpec:
    """How a backend obtains the ClientApp: an object, or ``module:attr`` under ``app_dir``.

    Worker processes import a reference themselves (the app's module is imported once per
    worker); an object is pickled to them, so it must be importable by reference.
    """

    app: ClientApp | None = None
    ref: str | None = None
    app_dir: str | None = None

    def __post_init__(self) -> None:
        if (self.app is None) == (self.ref is None):
            raise ValueError("ClientAppSpec needs exactly one of app or ref")

    def load(self) -> ClientApp:
        if self.app is not None:
            return self.app
        assert self.ref is not None
        app: ClientApp = load_app(self.ref, kind=ClientApp, app_dir=self.app_dir)
        return app


class Backend(Protocol):
    """Executes messages addressed to virtual nodes and reports their replies.

    ``start`` is called once per run, ``submit`` for every batch of instructions (it must not
    block on the ClientApp work), and ``shutdown`` once at the end (it must leave no process
    behind). Replies, including error replies, are handed to ``on_replies`` from any thread.
    Per-node :class:`~glade.Context` (with its ``state``) lives in the backend, across rounds.
    """

    def start(
        self,
        *,
        client_app: ClientAppSpec,
        nodes: Sequence[NodeSpec],
        run_id: int,
        run_config: Mapping[str, Any],
        on_replies: ReplyCallback,
    ) -> None: ...

    def submit(self, messages: Sequence[Message]) -> None: ...

    def shutdown(self) -> None: ...


def make_context(node: NodeSpec, *, run_id: int, run_config: Mapping[str, Any]) -> Context:
    """The initial Context of a virtual node."""
    return Context(
        run_id=run_id,
        node_id=node.node_id,
        node_config=dict(node.node_config),
        run_config=dict(run_config),
    )


def available_cpus() -> int:
    """CPUs this process may use (its affinity, where the OS has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return os.cpu_count() or 1


def check_int(name: str, value: Any, *, minimum: int) -> None:
    """ConfigError unless ``value`` is an int (not a bool) of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
