"""``glade new``: create a project from a template, asking for what the arguments leave out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from glade.cli.console import stderr_console, stdout_console
from glade.cli.exit_codes import reported_errors
from glade.errors import ConfigError
from glade.templates import TEMPLATES, package_name_for, render_project

__all__ = ["DEFAULT_NAME", "new_command"]

DEFAULT_NAME = "my-glade-app"
DEFAULT_FRAMEWORK = "numpy"


def new_command(
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="Project name; the project is created in ./NAME."),
    ] = None,
    framework: Annotated[
        str | None,
        typer.Option(
            "--framework",
            "-f",
            help=f"Template to start from: {', '.join(sorted(TEMPLATES))}.",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks.")] = False,
) -> None:
    """Create a new Glade project in ./NAME (asks for the name and framework if not given)."""
    out = stdout_console()
    with reported_errors(stderr_console(), verbose=verbose):
        if name is None:
            name = typer.prompt("Project name", default=DEFAULT_NAME, value_proc=_checked_name)
        if framework is None:
            framework = _ask_framework(out)
        dest = Path(name)
        files = render_project(framework, project_name=name, dest=dest)
        out.print(f"Created ./{name} from the {framework!r} template:", highlight=False)
        for path in files:
            out.print(f"  {path.as_posix()}", highlight=False)
        out.print("\nRun it in simulation:\n", highlight=False)
        out.print(f"  glade run {name}\n", style="bold", highlight=False)
        out.print(f"See ./{name}/README.md for more.", highlight=False)


def _checked_name(value: str) -> str:
    """Prompt validation: a usable name whose folder does not hold anything yet."""
    value = value.strip()
    try:
        package_name_for(value)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    dest = Path(value)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise typer.BadParameter(f"./{value} already exists and is not empty; pick another name")
    return value


def _ask_framework(out: Console) -> str:
    names = list(TEMPLATES)
    width = max(map(len, names))
    out.print("Frameworks:", highlight=False)
    for number, name in enumerate(names, start=1):
        out.print(f"  {number}. {name:<{width}}  {TEMPLATES[name].description}", highlight=False)

    def checked(value: str) -> str:
        value = value.strip()
        if value.isdigit() and 1 <= int(value) <= len(names):
            return names[int(value) - 1]
        if value in TEMPLATES:
            return value
        raise typer.BadParameter(f"choose one of {', '.join(names)} (or its number)")

    default = DEFAULT_FRAMEWORK if DEFAULT_FRAMEWORK in TEMPLATES else names[0]
    answer: str = typer.prompt("Framework", default=default, value_proc=checked)
    return answer
