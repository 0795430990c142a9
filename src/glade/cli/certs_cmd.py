"""``glade certs create``: a development CA and server/client certificates for TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glade.cli.console import stderr_console
from glade.cli.exit_codes import EXIT_OK, reported_errors

__all__ = ["certs_app"]

certs_app = typer.Typer(
    help="TLS certificates for development and test deployments.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@certs_app.command("create")
def certs_create_command(
    out: Annotated[Path, typer.Option(help="Folder to write the PEM files into.")],
    hostname: Annotated[
        list[str] | None,
        typer.Option(
            help="Name or IP address the SuperLink is reached at (repeatable); localhost "
            "and 127.0.0.1 are always included."
        ),
    ] = None,
    days: Annotated[int, typer.Option(help="Validity of the certificates in days.")] = 365,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Create a development CA, a SuperLink server certificate and a SuperNode client one."""
    from glade.transport.tls import create_dev_certificates

    err = stderr_console()
    with reported_errors(err, verbose=False):
        certs = create_dev_certificates(
            out, hostnames=hostname or [], valid_days=days, overwrite=force
        )
        err.print(
            f"Wrote a development CA and certificates to {out} (valid for: "
            f"{', '.join(certs.hostnames)}):\n"
            f"  SuperLink:  --ssl-certfile {certs.server_cert} --ssl-keyfile {certs.server_key}\n"
            f"  SuperNode:  --root-certificates {certs.ca_cert}"
            f"  (mutual TLS: --ssl-certfile {certs.client_cert} --ssl-keyfile "
            f"{certs.client_key}, and --ssl-ca-certfile {certs.ca_cert} on the SuperLink)\n"
            f'  federation: root-certificates = "{certs.ca_cert}"\n'
            f"  ServerAppIO beyond loopback (SuperLink): --serverappio-root-certificates "
            f"{certs.ca_cert}\n"
            f"Keep {certs.ca_key} secret; use your organisation's CA in production.",
            highlight=False,
        )
    raise typer.Exit(EXIT_OK)
