"""plot_partition draws one bar per node and writes a valid PNG."""

import struct
import sys

import numpy as np
import pytest

from glade.datasets import DirichletPartitioner, label_counts, plot_partition

LABELS = np.repeat(np.arange(4), 25)


def png_size(path):
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert raw[12:16] == b"IHDR" and raw[-8:-4] == b"IEND"
    return struct.unpack(">II", raw[16:24])


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    p = DirichletPartitioner(6, alpha=0.5, labels=LABELS, min_partition_size=1, seed=0)
    out = tmp_path / "dist.png"
    fig = plot_partition(p, LABELS, out, dpi=50)
    width, height = png_size(out)
    assert width > 100 and height > 100
    (ax,) = fig.axes
    bars = [patch.get_height() for patch in ax.patches]
    assert len(bars) == 6 * 4  # one stacked segment per (node, class)
    assert sum(bars) == len(LABELS)
    _, counts = label_counts(p, LABELS)
    assert np.array_equal(np.array(bars).reshape(4, 6).T, counts)


def test_plot_accepts_index_lists_without_saving():
    pytest.importorskip("matplotlib")
    fig = plot_partition([np.arange(50), np.arange(50, 100)], LABELS, title="two nodes")
    assert fig.axes[0].get_title() == "two nodes"


def test_missing_matplotlib_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_partition([np.arange(100)], LABELS)
