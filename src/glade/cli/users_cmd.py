"""``glade user add/ls/rm/role/passwd``: user accounts of a SuperLink (``passwd``: anyone)."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from glade.cli.console import JsonOutput, stderr_console, stdout_console
from glade.cli.control import (
    AppOption,
    FederationArg,
    FormatOption,
    ListFormat,
    VerboseOption,
    federation_client,
)
from glade.cli.login_cmd import read_secret

__all__ = ["user_app"]

user_app = typer.Typer(
    help="User accounts of a federation's SuperLink (admins; 'passwd' for everyone).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The user name.")]


class RoleChoice(str, Enum):
    USER = "user"
    ADMIN = "admin"


@user_app.command("add")
def user_add_command(
    name: NameArg,
    federation: FederationArg = None,
    role: Annotated[
        RoleChoice, typer.Option(help="user (own runs) or admin (all runs, users, nodes).")
    ] = RoleChoice.USER,
    api_key: Annotated[
        bool,
        typer.Option(
            "--api-key",
            help="Create an API key for automation (printed once) instead of a "
            "password (add --password-stdin for both).",
        ),
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from stdin.")
    ] = False,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Create a user with a password (prompted) and/or an API key."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        password = ""
        if password_stdin:
            password = read_secret("password")
        elif not api_key:
            password = str(
                typer.prompt(
                    f"Password for {name}", hide_input=True, confirmation_prompt=True, err=True
                )
            )
        user, key = client.add_user(name, role=role.value, password=password, api_key=api_key)
        stderr_console().print(
            f"Created user {user.name} (role {user.role}) on federation {fed.name!r}.",
            highlight=False,
        )
        if key:
            stderr_console().print(
                "Its API key follows; it is shown only this once, so keep it now (e.g. in "
                "GLADE_API_KEY for 'glade login'):",
                highlight=False,
            )
            stdout_console().print(key, highlight=False, soft_wrap=True)


@user_app.command("ls")
def user_ls_command(
    federation: FederationArg = None,
    output_format: FormatOption = ListFormat.TABLE,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """List the users of a federation's SuperLink."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        users = client.list_users()
        if output_format is ListFormat.JSON:
            JsonOutput().emit(
                {
                    "users": [
                        {
                            "name": u.name,
                            "role": u.role,
                            "created_at": u.created_at,
                            "password": u.has_password,
                            "api_key": u.has_api_key,
                        }
                        for u in users
                    ]
                }
            )
            return
        table = Table(title=f"Users of {fed.name}", title_justify="left")
        for column in ("name", "role", "logs in with", "created"):
            table.add_column(column)
        for u in users:
            ways = [
                w for w, has in (("password", u.has_password), ("API key", u.has_api_key)) if has
            ]
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(u.created_at))
            table.add_row(Text(u.name), u.role, ", ".join(ways) or "-", created)
        stdout_console().print(table)


@user_app.command("rm")
def user_rm_command(
    name: NameArg,
    federation: FederationArg = None,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Remove a user (its logins end at once; its runs stay). The last admin stays."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        user = client.remove_user(name)
        stderr_console().print(
            f"Removed user {user.name} from federation {fed.name!r}.", highlight=False
        )


@user_app.command("role")
def user_role_command(
    name: NameArg,
    role: Annotated[RoleChoice, typer.Argument(metavar="ROLE", help="user or admin.")],
    federation: FederationArg = None,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Give a user another role (user or admin)."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        user = client.set_user_role(name, role.value)
        stderr_console().print(
            f"User {user.name} has the role {user.role} on federation {fed.name!r}.",
            highlight=False,
        )


@user_app.command("passwd")
def user_passwd_command(
    federation: FederationArg = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", "-u", help="Set another user's password (admins; default: your own)."
        ),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the passwords from stdin: your current one, then the new one "
            "(only the new one with --user).",
        ),
    ] = False,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Change your password (or, as an admin, another user's); their other logins end."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        old = ""
        if password_stdin:
            old = "" if user else read_secret("current password")
            new = read_secret("new password")
        else:
            if not user:
                old = str(typer.prompt("Current password", hide_input=True, err=True))
            new = str(
                typer.prompt(
                    f"New password for {user or 'you'}",
                    hide_input=True,
                    confirmation_prompt=True,
                    err=True,
                )
            )
        ended = client.set_password(new, name=user or "", old_password=old)
        stderr_console().print(
            f"Password of {user or 'your account'} on federation {fed.name!r} changed; "
            f"{ended} other login(s) ended.",
            highlight=False,
        )
