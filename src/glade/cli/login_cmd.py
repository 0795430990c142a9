"""``glade login``, ``glade logout``, ``glade whoami``: a user's session with a SuperLink.

``glade login FED`` exchanges a user name and password (prompted, or ``--password-stdin``)
or an API key (``--api-key-stdin`` or ``$GLADE_API_KEY``) for an expiring token, stored in
the user's config folder with permissions 0600 (see :mod:`glade.cli.credentials`); every
later command on that federation sends it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from glade.cli.console import stderr_console, stdout_console
from glade.cli.control import AppOption, FederationArg, VerboseOption, federation_client
from glade.cli.credentials import StoredLogin, forget_login, save_login
from glade.errors import AuthenticationError, ConfigError

__all__ = ["login_command", "logout_command", "read_secret", "whoami_command"]

API_KEY_ENV = "GLADE_API_KEY"


def read_secret(what: str) -> str:
    """The first line of stdin (``--password-stdin``): scripts pipe secrets in."""
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise ConfigError(f"no {what} on stdin: pipe it in, e.g. 'cat FILE | glade ...'")
    return line


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def login_command(
    federation: FederationArg = None,
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="Your user name (default: prompt).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    api_key_stdin: Annotated[
        bool,
        typer.Option(
            "--api-key-stdin",
            help=f"Log in with an API key read from stdin (or set ${API_KEY_ENV}).",
        ),
    ] = False,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Log in to a federation's SuperLink; the token is kept (0600) for later commands."""
    with federation_client(app_dir, federation, verbose=verbose, login=False) as (fed, client):
        api_key = read_secret("API key") if api_key_stdin else ""
        if not api_key and username is None and not password_stdin:
            api_key = os.environ.get(API_KEY_ENV, "")
        if api_key:
            credentials = {"api_key": api_key}
        else:
            if username is None:
                username = str(typer.prompt("User name", err=True))
            if password_stdin:
                password = read_secret("password")
            else:
                password = str(typer.prompt("Password", hide_input=True, err=True))
            credentials = {"username": username, "password": password}
        try:
            session = client.login(**credentials)
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"cannot log in to federation {fed.name!r} at {fed.address}: {exc}"
            ) from None
        path = save_login(
            StoredLogin(
                address=fed.address,
                user=session.user,
                role=session.role,
                token=session.token,
                expires_at=session.expires_at,
            )
        )
        stderr_console().print(
            f"Logged in to federation {fed.name!r} as {session.user} (role {session.role}) "
            f"until {_when(session.expires_at)}; the token is in {path}.",
            highlight=False,
        )


def logout_command(
    federation: FederationArg = None,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Log out of a federation's SuperLink and delete the stored token."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        if not client.token:
            stderr_console().print(f"Not logged in to federation {fed.name!r}.", highlight=False)
            return
        try:
            client.logout()
        except AuthenticationError:
            pass  # expired or revoked already: forgetting it is all there is to do
        finally:
            forget_login(fed.address)
        stderr_console().print(f"Logged out of federation {fed.name!r}.", highlight=False)


def whoami_command(
    federation: FederationArg = None,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Show who you are logged in as on a federation, with your role."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        identity = client.whoami()
        out = stdout_console()
        if not identity.user_auth:
            out.print(
                f"Federation {fed.name!r}: user authentication is off on its SuperLink; "
                "every caller acts as an admin.",
                highlight=False,
            )
            return
        out.print(
            f"{identity.user} (role {identity.role}) on federation {fed.name!r}; the login is "
            f"valid until {_when(identity.expires_at)}.",
            highlight=False,
        )
