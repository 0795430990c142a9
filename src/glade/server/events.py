"""Run events: what a ServerApp reports to its runtime (progress, metrics)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["History", "RunEvent"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEvent:
    """One thing that happened in a run, reported through :meth:`Grid.report`.

    ``kind`` is ``"round-started"``, ``"stage-finished"`` (a train/evaluate/centralized step
    with its aggregated ``metrics``), or ``"round-finished"``.
    """

    kind: str
    server_round: int = 0
    num_rounds: int = 0
    stage: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    num_replies: int = 0
    num_failures: int = 0
    elapsed_s: float = 0.0


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


@dataclass(slots=True)
class History:
    """Per-round metric history: ``metrics[stage][round] -> {name: value}``.

    Stages are ``train``, ``evaluate`` (aggregated from nodes) and ``centralized`` (server-side
    ``evaluate_fn``); ``failures[stage][round]`` counts replies left out of the aggregate.
    """

    metrics: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    failures: dict[str, dict[int, int]] = field(default_factory=dict)
    replies: dict[str, dict[int, int]] = field(default_factory=dict)

    def add(self, event: RunEvent) -> None:
        if event.kind != "stage-finished":
            return
        self.metrics.setdefault(event.stage, {})[event.server_round] = dict(event.metrics)
        self.failures.setdefault(event.stage, {})[event.server_round] = event.num_failures
        self.replies.setdefault(event.stage, {})[event.server_round] = event.num_replies

    def last(self, stage: str) -> dict[str, Any]:
        """The metrics of the latest round of ``stage`` (empty if none)."""
        rounds = self.metrics.get(stage, {})
        return rounds[max(rounds)] if rounds else {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (round numbers become string keys)."""
        return {
            "metrics": {
                stage: {str(r): {k: _jsonable(v) for k, v in m.items()} for r, m in rounds.items()}
                for stage, rounds in self.metrics.items()
            },
            "failures": {
                stage: {str(r): n for r, n in rounds.items()}
                for stage, rounds in self.failures.items()
            },
            "replies": {
                stage: {str(r): n for r, n in rounds.items()}
                for stage, rounds in self.replies.items()
            },
        }
