"""`Result`: what :meth:`Strategy.start` returns (final arrays + metric history)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glade.records import ArrayRecord
from glade.server.events import History

__all__ = ["Result"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The outcome of a strategy's rounds.

    ``arrays`` are the final global arrays; ``history`` holds the aggregated metrics per
    stage and round (``history.metrics["evaluate"][3]``) and the failures per round.

    >>> import numpy as np
    >>> from glade import ArrayRecord
    >>> from glade.server import History
    >>> result = Result(arrays=ArrayRecord({"w": np.zeros(2)}), history=History(), num_rounds=0)
    >>> result.to_dict()["arrays"]
    {'w': {'dtype': 'float64', 'shape': [2], 'nbytes': 16}}
    """

    arrays: ArrayRecord
    history: History
    num_rounds: int
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: array dtypes/shapes (not their bytes) and the history."""
        return {
            "num_rounds": self.num_rounds,
            "elapsed_s": round(self.elapsed_s, 4),
            "arrays": {
                name: {"dtype": a.dtype, "shape": list(a.shape), "nbytes": a.nbytes}
                for name, a in self.arrays.items()
            },
            "history": self.history.to_dict(),
        }

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON to ``path``; returns the path."""
        from glade.strategies.export import write_json

        summary = self.to_dict()
        del summary["history"]
        return write_json(self.history, path, **summary)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the metric history as CSV (one row per stage and round)."""
        from glade.strategies.export import write_csv

        return write_csv(self.history, path)

    def plot(
        self,
        path: str | os.PathLike[str],
        *,
        metrics: Sequence[str] | None = None,
        title: str | None = None,
    ) -> Path:
        """Plot the metric history to a PNG (needs matplotlib); returns the path."""
        from glade.strategies.export import plot_history

        return plot_history(self.history, path, metrics=metrics, title=title)
