"""Every ```python block of docs/privacy.md runs, in order, in one namespace."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "privacy.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_doc_examples_run(capsys):
    pytest.importorskip("dp_accounting")
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 8
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"privacy.md block {i}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "epsilon" in printed and "SecAgg+ vs FedAvg" in printed
