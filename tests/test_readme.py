"""The README's commands and code do what it says."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from glade_testing import glade_executable

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _blocks(text: str) -> list[tuple[str, str]]:
    return [(lang, body.strip()) for lang, body in FENCE.findall(text)]


def _setup_commands() -> tuple[str, str]:
    blocks = _blocks(_section(README, "Get started"))
    assert [lang for lang, _ in blocks] == ["bash", "bash"], blocks
    quickstart, tests = (body for _, body in blocks)
    return quickstart, tests


def test_readme_opens_with_exactly_two_one_line_setup_commands():
    quickstart, tests = _setup_commands()
    assert _blocks(README)[:2] == [("bash", quickstart), ("bash", tests)]
    for command in (quickstart, tests):
        assert "\n" not in command
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert 'pip install -e ".[sklearn]"' in quickstart
    assert "glade new quickstart --framework numpy" in quickstart
    assert 'pip install -e ".[test]"' in tests
    assert tests.rsplit("&&", 1)[-1].strip() == "pytest"


def test_ci_runs_the_readme_test_command():
    _, tests = _setup_commands()
    pytest_command = tests.rsplit("&&", 1)[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(rf"^\s*{re.escape(pytest_command)}(\s|$)", ci, re.M), (
        ".ci/run must run the README's test command as it is"
    )


def test_readme_quickstart_glade_commands_work(tmp_path):
    """Runs the README's glade commands (in this environment instead of a new venv)."""
    quickstart, _ = _setup_commands()
    steps = [shlex.split(part) for part in quickstart.split("&&")]
    glade_steps = [step for step in steps if step[0] == "glade"]
    assert [step[1] for step in glade_steps] == ["new", "run"]
    for step in glade_steps:
        args = step[1:] + (["--format", "json"] if step[1] == "run" else [])
        done = subprocess.run(
            [*glade_executable(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "completed"
    evaluate = doc["history"]["metrics"]["evaluate"]
    assert evaluate[max(evaluate, key=int)]["accuracy"] >= 0.90


def test_readme_tour_script_runs(tmp_path):
    scripts = [body for lang, body in _blocks(_section(README, "A short tour")) if lang == "python"]
    assert len(scripts) == 1
    (tmp_path / "tour.py").write_text(scripts[0] + "\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "tour.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    status, _, rest = done.stdout.strip().partition(" ")
    assert status == "completed", done.stdout
    w = float(re.search(r"\[\s*([-\d.e]+)\s*\]$", rest).group(1))
    assert w == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))]
)
def test_relative_links_resolve(page):
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (path.parent / target).is_file(), f"{page}: broken link {target}"
