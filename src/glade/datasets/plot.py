"""`plot_partition`: a stacked bar chart of the label mix of every node (needs matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from glade.datasets.stats import Partitions, label_counts, label_skew

__all__ = ["plot_partition"]

_MAX_LEGEND = 20


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plot_partition needs matplotlib: pip install matplotlib") from exc
    return Figure


def plot_partition(
    partitions: Partitions,
    labels: Any,
    path: str | Path | None = None,
    *,
    title: str | None = None,
    dpi: int = 100,
) -> Any:
    """Draw how many rows of each class every node holds; save a PNG to ``path`` if given.

    ``partitions`` is a partitioner (asked for its split of ``labels``) or a list of index
    arrays. Returns the matplotlib ``Figure``; no global pyplot state is touched.

    >>> import numpy as np
    >>> from glade.datasets import DirichletPartitioner
    >>> y = np.repeat(np.arange(3), 30)
    >>> fig = plot_partition(DirichletPartitioner(4, alpha=0.5, min_partition_size=1), y)
    >>> len(fig.axes)
    1
    """
    Figure = _figure_class()
    classes, counts = label_counts(partitions, labels)
    num_nodes, num_classes = counts.shape
    fig = Figure(figsize=(max(6.0, 0.35 * num_nodes + 2.0), 4.0), layout="constrained")
    ax = fig.add_subplot()
    colors = _colors(num_classes)
    nodes = np.arange(num_nodes)
    bottom = np.zeros(num_nodes)
    for c in range(num_classes):
        ax.bar(nodes, counts[:, c], bottom=bottom, color=colors[c], label=str(classes[c]))
        bottom += counts[:, c]
    ax.set_xlabel("partition (node)")
    ax.set_ylabel("rows")
    ax.set_xticks(nodes if num_nodes <= 30 else nodes[:: max(1, num_nodes // 15)])
    skew = label_skew(partitions, labels)
    ax.set_title(title or f"label distribution per node (mean TV distance to global: {skew:.2f})")
    if num_classes <= _MAX_LEGEND:
        ax.legend(title="label", loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    if path is not None:
        fig.savefig(Path(path), format="png", dpi=dpi)
    return fig


def _colors(num_classes: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "viridis"]
    if num_classes <= 20:
        return [cmap(i) for i in range(num_classes)]
    return [cmap(x) for x in np.linspace(0.0, 1.0, num_classes)]
