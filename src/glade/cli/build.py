"""``glade build APP_DIR``: write the app bundle that ``glade run`` would submit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glade.bundle import build_bundle
from glade.cli.console import configure_logging, stderr_console, stdout_console
from glade.cli.exit_codes import reported_errors
from glade.keypairs import PrivateKey

__all__ = ["build_command"]


def build_command(
    app_dir: Annotated[
        Path, typer.Argument(metavar="APP_DIR", help="Folder of the project (with pyproject.toml).")
    ] = Path("."),
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the bundle (default: ./NAME-VERSION.glade).",
        ),
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            metavar="KEYFILE",
            help="Sign the bundle with this publisher private key (glade keys create), for "
            "SuperNodes with --trusted-publishers.",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List the bundled files.")
    ] = False,
) -> None:
    """Pack a project into an app bundle (a zip with a manifest of its files' hashes)."""
    err = stderr_console()
    with configure_logging(err, verbose=verbose), reported_errors(err, verbose=verbose):
        key = PrivateKey.read(sign_key) if sign_key is not None else None
        bundle = build_bundle(app_dir, signing_key=key)
        path = bundle.write(output if output is not None else Path(bundle.file_name))
        m = bundle.manifest
        if verbose:
            for name in m.files:
                err.print(f"  {name}", highlight=False)
        signed = f", signed by {bundle.signer.fingerprint}" if bundle.signer else ""
        err.print(
            f"Built {m.publisher}/{m.name} {m.version}: {len(m.files)} files, "
            f"{len(bundle.data) / 1024:.1f} KiB, bundle id {bundle.bundle_id}{signed}",
            highlight=False,
        )
        stdout_console().print(str(path), highlight=False, soft_wrap=True)
