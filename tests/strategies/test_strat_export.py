"""Result / History export: JSON, CSV and a PNG plot, one call each."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glade import ArrayRecord
from glade.server import History
from glade.strategies import Result
from glade.strategies.export import history_rows, plot_history, write_csv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sample_history() -> History:
    history = History()
    history.metrics = {
        "train": {1: {"num-examples": 30, "loss": 0.9}, 2: {"num-examples": 30, "loss": 0.4}},
        "evaluate": {
            2: {"num-examples": 10, "loss": 0.5, "acc": 0.8, "per-class": [0.7, 0.9]},
            1: {"num-examples": 10, "loss": 1.0},
        },
        "centralized": {0: {"acc": 0.1}, 1: {"acc": 0.5}, 2: {"acc": float("nan")}},
    }
    history.failures = {"train": {1: 0, 2: 1}, "evaluate": {1: 0, 2: 0}}
    history.replies = {"train": {1: 3, 2: 2}, "evaluate": {1: 2, 2: 2}}
    return history


def result() -> Result:
    arrays = ArrayRecord({"w": np.zeros((2, 3), np.float32)})
    return Result(arrays=arrays, history=sample_history(), num_rounds=2, elapsed_s=1.23456)


def test_json_holds_the_summary_and_the_history(tmp_path: Path) -> None:
    path = result().to_json(tmp_path / "result.json")
    data = json.loads(path.read_text())
    assert data["num_rounds"] == 2 and data["elapsed_s"] == 1.2346
    assert data["arrays"] == {"w": {"dtype": "float32", "shape": [2, 3], "nbytes": 24}}
    assert data["history"]["metrics"]["evaluate"]["2"]["per-class"] == [0.7, 0.9]
    assert data["history"]["metrics"]["centralized"]["2"]["acc"] is None  # NaN is not JSON
    assert data["history"]["failures"]["train"] == {"1": 0, "2": 1}


def test_csv_has_one_row_per_stage_and_round(tmp_path: Path) -> None:
    path = result().to_csv(tmp_path / "history.csv")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "stage",
        "round",
        "num_replies",
        "num_failures",
        "num-examples",
        "loss",
        "acc",
        "per-class",
    ]
    assert [(r["stage"], r["round"]) for r in rows] == [
        ("train", "1"),
        ("train", "2"),
        ("evaluate", "1"),  # rounds sorted within a stage
        ("evaluate", "2"),
        ("centralized", "0"),
        ("centralized", "1"),
        ("centralized", "2"),
    ]
    assert rows[1]["loss"] == "0.4" and rows[1]["num_failures"] == "1"
    assert rows[3]["per-class"] == "[0.7, 0.9]" and rows[2]["acc"] == ""
    assert rows[4]["num_replies"] == "" and rows[4]["acc"] == "0.1"
    assert len(history_rows(sample_history())) == 7


def test_csv_of_an_empty_history_is_just_the_header(tmp_path: Path) -> None:
    path = write_csv(History(), tmp_path / "empty.csv")
    assert path.read_text().strip() == "stage,round,num_replies,num_failures"


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = result().plot(tmp_path / "history.png", title="run 1")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > height > 100  # two panels side by side: loss and acc
    only = plot_history(sample_history(), tmp_path / "acc.png", metrics=["acc"])
    assert only.read_bytes().startswith(PNG_MAGIC)
    empty = plot_history(History(), tmp_path / "empty.png")
    assert empty.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="no numeric metric \\['per-class'\\]"):
        plot_history(sample_history(), tmp_path / "x.png", metrics=["per-class"])


def test_optional_libraries_are_imported_only_when_used() -> None:
    code = (
        "import sys, glade.strategies, glade.strategies.export, glade.strategies.fedxgb;"
        "print(sorted(m for m in ('matplotlib', 'xgboost', 'torch', 'safetensors')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
