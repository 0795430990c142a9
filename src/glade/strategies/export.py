"""Metric history export: JSON, CSV and a PNG plot, one call each.

Works on a :class:`~glade.server.History` (what ``run_simulation`` and ``glade run``
have) or a :class:`~glade.strategies.Result` (``result.to_csv(path)`` etc. call these).
The plot needs matplotlib (``pip install 'glade[plot]'``), imported only when called;
it draws on a ``matplotlib.figure.Figure`` without pyplot, so it never touches the
global backend or opens a window.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from glade.server.events import History

__all__ = ["history_rows", "plot_history", "write_csv", "write_json"]

_FIXED_COLUMNS = ["stage", "round", "num_replies", "num_failures"]


def history_rows(history: History) -> list[dict[str, Any]]:
    """One dict per (stage, round): the fixed columns, then that round's metrics."""
    rows = []
    for stage, rounds in history.metrics.items():
        for server_round in sorted(rounds):
            rows.append(
                {
                    "stage": stage,
                    "round": server_round,
                    "num_replies": history.replies.get(stage, {}).get(server_round, ""),
                    "num_failures": history.failures.get(stage, {}).get(server_round, ""),
                    **rounds[server_round],
                }
            )
    return rows


def write_json(history: History, path: str | os.PathLike[str], **extra: Any) -> Path:
    """Write ``{"history": history.to_dict(), **extra}`` as JSON; returns the path."""
    target = Path(path)
    target.write_text(json.dumps({**extra, "history": history.to_dict()}, indent=1) + "\n")
    return target


def write_csv(history: History, path: str | os.PathLike[str]) -> Path:
    """Write the history as CSV: ``stage,round,num_replies,num_failures,<metrics...>``.

    One row per stage and round; metric columns are the union of metric names in
    first-seen order, empty where a round lacks one; list metrics are JSON lists.
    """
    rows = history_rows(history)
    metric_names: dict[str, None] = {}
    for row in rows:
        metric_names.update(dict.fromkeys(k for k in row if k not in _FIXED_COLUMNS))
    target = Path(path)
    with target.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_FIXED_COLUMNS + list(metric_names), restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()}
            )
    return target


def plot_history(
    history: History,
    path: str | os.PathLike[str],
    *,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Plot each numeric metric against the round, one panel per metric, one line per
    stage (train / evaluate / centralized), and save a PNG to ``path``.

    ``metrics`` picks and orders the panels (default: every scalar metric except
    ``num-examples``). A history without metrics gives a figure that says so.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError(
            "plotting the metric history needs matplotlib: pip install 'glade[plot]'"
        ) from None
    series = _series(history)
    names = list(metrics) if metrics is not None else [n for n in series if n != "num-examples"]
    missing = [n for n in names if n not in series]
    if missing:
        raise ValueError(f"no numeric metric {missing} in the history; it has {sorted(series)}")
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), dpi=dpi, layout="constrained")
    if not names:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no metrics recorded", ha="center", va="center")
        ax.set_axis_off()
    colors = {stage: f"C{i}" for i, stage in enumerate(history.metrics)}  # same in every panel
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for stage, points in series[name].items():
            xs, ys = zip(*points, strict=True)
            marker = "o" if len(xs) < 30 else None
            ax.plot(xs, ys, marker=marker, markersize=3, label=stage, color=colors[stage])
        ax.set_title(name)
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    target = Path(path)
    fig.savefig(target, format="png")
    return target


def _series(history: History) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """metric -> stage -> [(round, value)] for finite scalar metrics."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for stage, rounds in history.metrics.items():
        for server_round in sorted(rounds):
            for name, value in rounds[server_round].items():
                numeric = isinstance(value, int | float) and not isinstance(value, bool)
                if numeric and math.isfinite(value):
                    out.setdefault(name, {}).setdefault(stage, []).append(
                        (server_round, float(value))
                    )
    return out
