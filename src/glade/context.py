"""`Context`: what an app knows about where it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glade.records import RecordDict

__all__ = ["Context", "UserConfig"]

UserConfig = dict[str, Any]  # bool | int | float | str values from TOML / "k=v" strings


@dataclass(slots=True, kw_only=True)
class Context:
    """Run and node identity, configuration, and ``state`` that persists across rounds.

    On a node, ``state`` is kept between the messages of one run, so a ClientApp can keep
    e.g. optimizer state or a personalised layer there.

    >>> ctx = Context(run_id=1, node_id=42, node_config={"partition-id": 0})
    >>> ctx.node_config["partition-id"]
    0
    """

    run_id: int
    node_id: int
    node_config: UserConfig = field(default_factory=dict)
    run_config: UserConfig = field(default_factory=dict)
    state: RecordDict = field(default_factory=RecordDict)

    def __post_init__(self) -> None:
        if not isinstance(self.state, RecordDict):
            raise TypeError(f"Context.state must be a RecordDict, got {type(self.state).__name__}")
