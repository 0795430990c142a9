"""Every ```python block of docs/partitioning.md runs, in order, in a fresh folder."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "partitioning.md"


def python_blocks(text):
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_doc_has_examples_and_its_figure():
    text = DOC.read_text()
    assert len(python_blocks(text)) >= 7
    assert "(img/partition_dirichlet.png)" in text
    assert (DOC.parent / "img" / "partition_dirichlet.png").read_bytes()[:4] == b"\x89PNG"


def test_doc_examples_run(tmp_path, monkeypatch):
    for module in ("pandas", "datasets", "matplotlib", "sklearn"):
        pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(python_blocks(DOC.read_text())):
        exec(compile(block, f"partitioning.md block {i}", "exec"), namespace)
    assert (tmp_path / "partition_dirichlet.png").stat().st_size > 1000
