"""Helpers for the simulation backend tests (a module of its own: conftest is not importable)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from glade import Message, RecordDict
from glade.simulation import ClientAppSpec, NodeSpec, SimulationGrid
from glade.simulation.backend import Backend

HERE = Path(__file__).resolve().parent
SPEC = ClientAppSpec(ref="sim_apps:app", app_dir=str(HERE))
RUN_ID = 7


def make_nodes(count: int) -> list[NodeSpec]:
    return [NodeSpec(100 + i, {"partition-id": i, "num-partitions": count}) for i in range(count)]


@dataclass
class Harness:
    """A started backend with a grid in front of it."""

    backend: Backend
    grid: SimulationGrid
    nodes: list[NodeSpec]

    @property
    def node_ids(self) -> list[int]:
        return [n.node_id for n in self.nodes]

    def send(
        self, items: list[tuple[int, str, RecordDict]], *, timeout: float = 30.0
    ) -> dict[int, Message]:
        """Send (node, message type, content) and return the replies by node id."""
        messages = [Message(content, dst_node_id=n, message_type=t) for n, t, content in items]
        replies = self.grid.send_and_receive(messages, timeout=timeout)
        return {r.metadata.src_node_id: r for r in replies}

    def to_all(self, message_type: str, content: RecordDict | None = None) -> dict[int, Message]:
        return self.send([(n, message_type, content or RecordDict()) for n in self.node_ids])


StartBackend = Callable[..., Harness]
