"""``glade audit``: the audit log of a SuperLink (admins only)."""

from __future__ import annotations

import time
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

__all__ = ["audit_command"]


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def audit_command(
    federation: FederationArg = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="Show the newest N entries.")
    ] = 50,
    output_format: FormatOption = ListFormat.TABLE,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Show the audit log: logins, runs submitted and stopped, user and node changes, and
    every rejected authentication (admins only)."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        entries = client.list_audit(limit=limit)
        if output_format is ListFormat.JSON:
            JsonOutput().emit(
                {
                    "entries": [
                        {
                            "id": e.entry_id,
                            "time": _iso(e.time),
                            "actor": e.actor,
                            "action": e.action,
                            "target": e.target,
                            "result": e.result,
                            "detail": e.detail,
                        }
                        for e in entries
                    ]
                }
            )
            return
        if not entries:
            stderr_console().print(f"The audit log of {fed.name!r} is empty.", highlight=False)
            return
        table = Table(title=f"Audit log of {fed.name}", title_justify="left")
        for column in ("id", "time", "actor", "action", "target", "result", "detail"):
            table.add_column(
                column,
                justify="right" if column == "id" else "left",
                no_wrap=column in ("id", "time", "action", "result"),
            )
        for e in entries:
            table.add_row(
                str(e.entry_id),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.time)),
                Text(e.actor),
                Text(e.action),
                Text(e.target),
                Text(e.result, style="" if e.result == "ok" else "red"),
                Text(e.detail),
            )
        stdout_console().print(table)
