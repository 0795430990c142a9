"""The ``glade`` command: ``glade new``, ``glade run``, the deployment commands, ``--version``."""

from __future__ import annotations

import os
import platform
from typing import Annotated

import typer

from glade import __version__
from glade.cli.audit_cmd import audit_command
from glade.cli.build import build_command
from glade.cli.certs_cmd import certs_app
from glade.cli.control import log_command, ls_command, stop_command
from glade.cli.dev import dev_federation_command
from glade.cli.keys_cmd import keys_app
from glade.cli.login_cmd import login_command, logout_command, whoami_command
from glade.cli.new import new_command
from glade.cli.node_cmd import node_app
from glade.cli.run import run_command
from glade.cli.superlink_cmd import superlink_command
from glade.cli.supernode_cmd import supernode_command
from glade.cli.users_cmd import user_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="glade",
    help="Glade: federated learning, from a simulation on your laptop to real deployments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("new")(new_command)
app.command("run")(run_command)
app.command("build")(build_command)
app.command("ls")(ls_command)
app.command("log")(log_command)
app.command("stop")(stop_command)
app.command("superlink")(superlink_command)
app.command("supernode")(supernode_command)
app.command("dev-federation")(dev_federation_command)
app.add_typer(certs_app, name="certs")
app.command("login")(login_command)
app.command("logout")(logout_command)
app.command("whoami")(whoami_command)
app.add_typer(user_app, name="user")
app.add_typer(node_app, name="node")
app.command("audit")(audit_command)
app.add_typer(keys_app, name="keys")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"glade {__version__} (Python {platform.python_version()})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Show the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Glade: federated learning, from a simulation on your laptop to real deployments."""


def main() -> None:
    """Entry point of the ``glade`` console script."""
    # gRPC's C core logs handshake failures to stderr above our one-paragraph errors; keep
    # its own errors only, unless the user asked for more.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    app(prog_name="glade")
