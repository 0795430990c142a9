"""``glade keys create``: an Ed25519 key pair, a SuperNode's identity."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from glade.cli.console import stderr_console
from glade.cli.exit_codes import EXIT_OK, reported_errors
from glade.errors import ConfigError

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="Key pairs that identify SuperNodes to a SuperLink.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@keys_app.command("create")
def keys_create_command(
    out: Annotated[Path, typer.Option(help="Folder to write NAME.key and NAME.pub into.")],
    name: Annotated[
        str, typer.Option(help="File name of the pair, and the comment of the public key.")
    ] = "node",
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace an existing pair (the node gets a new id)."),
    ] = False,
) -> None:
    """Create a key pair: NAME.key (private, 0600) for the SuperNode, NAME.pub for the admin.

    Prints the public key line and its fingerprint.
    """
    from glade.keypairs import PublicKey, create_key_pair

    err = stderr_console()
    with reported_errors(err, verbose=False):
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"--name {name!r}: use letters, digits, '.', '_' and '-' (a file name)"
            )
        out.mkdir(parents=True, exist_ok=True)
        private, public = create_key_pair(out, name, overwrite=overwrite)
        key = PublicKey.read(public)
        typer.echo(public.read_text(encoding="utf-8").strip())
        typer.echo(key.fingerprint)
        err.print(
            f"Wrote {private} (private, keep it on the SuperNode) and {public}.\n"
            f"  SuperNode:  glade supernode --auth-key {private} ...\n"
            f"  admin:  glade node add '{key.to_openssh(name)}' FEDERATION --name {name}\n"
            f"Send {public.name} (or the line above) to the admin; keep {private.name} secret.",
            highlight=False,
        )
    raise typer.Exit(EXIT_OK)
