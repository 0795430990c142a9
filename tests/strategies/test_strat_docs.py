"""The strategy docs' code runs and does what the text says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def python_blocks(name: str) -> list[str]:
    return FENCE.findall((DOCS / name).read_text(encoding="utf-8"))


def test_custom_strategy_walkthrough_runs() -> None:
    blocks = python_blocks("custom-strategy.md")
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "custom_strategy_doc"}
    for block in blocks:
        exec(compile(block, "docs/custom-strategy.md", "exec"), namespace)
    assert namespace["clipped"] is not None


@pytest.mark.parametrize("name", ["checkpoints.md", "strategies.md"])
def test_other_strategy_docs_run(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": name}
    for block in python_blocks(name):
        exec(compile(block, f"docs/{name}", "exec"), namespace)
