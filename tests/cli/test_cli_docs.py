"""docs/cli.md documents every command of ``glade`` with every one of its options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from glade.cli.main import app

DOC = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
COMMANDS = typer.main.get_command(app).commands


NO_OPTIONS: set[str] = set()  # commands without options (none today)


def _sections(name: str) -> str:
    """The text of every section whose heading names ``glade NAME``."""
    parts = re.split(r"^## ", DOC, flags=re.M)
    return "\n".join(p for p in parts[1:] if f"`glade {name}`" in p.splitlines()[0])


def test_every_command_is_documented():
    assert set(COMMANDS) >= {"superlink", "supernode", "build", "run", "ls", "log", "stop"}
    synopsis = DOC.split("```text", 1)[1].split("```", 1)[0]
    for name in COMMANDS:
        assert f"glade {name}" in synopsis, f"'glade {name}' is missing from the synopsis"
        assert _sections(name), f"docs/cli.md has no section on 'glade {name}'"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_documented(name):
    command = COMMANDS[name]
    text = _sections(name)
    commands = [command]
    if hasattr(command, "commands"):  # e.g. glade certs create: its options, in its section
        commands = list(command.commands.values())
        assert all(f"glade {name} {sub}" in DOC for sub in command.commands)
    options = [
        max(p.opts, key=len)
        for c in commands
        for p in c.params
        if p.param_type_name == "option" and "--help" not in p.opts
    ]
    assert options or name in NO_OPTIONS, f"found no options of 'glade {name}'"
    missing = [o for o in options if f"`{o}" not in text]
    assert not missing, f"docs/cli.md does not document 'glade {name}' {missing}"
