"""``glade node add/ls/rm``: the allow-list of SuperNode public keys (admins only)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from glade.superlink.state import NodeInfo, NodeKey

__all__ = ["node_app"]

node_app = typer.Typer(
    help="SuperNodes allowed to join a federation: their public keys (admins only).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _read_key(value: str) -> Any:
    """A public key from a .pub file path or the key text itself."""
    from glade.keypairs import PublicKey

    path = Path(value).expanduser()
    if len(value) < 4096 and path.is_file():
        return PublicKey.read(path)
    return PublicKey.parse(value)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


@node_app.command("add")
def node_add_command(
    public_key: Annotated[
        str,
        typer.Argument(
            metavar="PUBKEY_OR_FILE",
            help="The SuperNode's public key: its .pub file (from 'glade keys create') or "
            "the 'ssh-ed25519 AAAA...' line.",
        ),
    ],
    federation: FederationArg = None,
    name: Annotated[str, typer.Option("--name", help="A name for the node, e.g. hospital-a.")] = "",
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Allow a SuperNode to join: add its public key to the SuperLink's allow-list."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        from glade.errors import ConfigError

        key = _read_key(public_key)
        if not name:
            raise ConfigError("give the node a name with --name (e.g. --name hospital-a)")
        added = client.add_node_key(key.raw, name=name)
        stderr_console().print(
            f"Node {added.name} ({key.fingerprint}) may now join federation {fed.name!r}.",
            highlight=False,
        )


def _rows(keys: list[NodeKey], nodes: list[NodeInfo]) -> list[dict[str, Any]]:
    from glade.keypairs import PublicKey

    by_id = {n.node_id: n for n in nodes}
    rows = []
    for key in keys:
        node = by_id.pop(key.node_id, None) if key.node_id else None
        rows.append(
            {
                "name": key.name,
                "fingerprint": PublicKey(key.public_key).fingerprint,
                "public_key": PublicKey(key.public_key).to_openssh(),
                "node_id": key.node_id or None,
                "online": bool(node and node.online),
                "last_seen_at": node.last_seen_at if node else None,
                "added_by": key.added_by,
                "added_at": key.added_at,
            }
        )
    for node in by_id.values():  # joined without a key (node authentication off)
        rows.append(
            {
                "name": node.name or "-",
                "fingerprint": None,
                "public_key": None,
                "node_id": node.node_id,
                "online": node.online,
                "last_seen_at": node.last_seen_at,
                "added_by": "",
                "added_at": None,
            }
        )
    return rows


@node_app.command("ls")
def node_ls_command(
    federation: FederationArg = None,
    output_format: FormatOption = ListFormat.TABLE,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """List the allowed SuperNode keys, with the node each one joined as."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        rows = _rows(client.list_node_keys(), client.list_nodes())
        if output_format is ListFormat.JSON:
            JsonOutput().emit({"nodes": rows})
            return
        if not rows:
            stderr_console().print(
                f"No node keys on federation {fed.name!r} yet: add one with 'glade node add'.",
                highlight=False,
            )
            return
        table = Table(title=f"Nodes of {fed.name}", title_justify="left")
        for column in ("name", "key fingerprint", "node id", "status", "added"):
            table.add_column(column)
        for row in rows:
            if row["node_id"] is None:
                status = "never joined"
            else:
                status = "online" if row["online"] else "offline"
            added = f"{_when(row['added_at'] or 0)} by {row['added_by']}" if row["added_by"] else ""
            table.add_row(
                Text(row["name"]),
                row["fingerprint"] or "(no key)",
                str(row["node_id"] or "-"),
                status,
                added or _when(row["added_at"] or 0),
            )
        stdout_console().print(table)


@node_app.command("rm")
def node_rm_command(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The node's name (see 'glade node ls').")
    ],
    federation: FederationArg = None,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Remove a SuperNode's key: it can no longer join, and leaves the federation now."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        key, node_removed = client.remove_node_key(name)
        gone = f" and node {key.node_id} left it" if node_removed else ""
        stderr_console().print(
            f"Removed node key {key.name} from federation {fed.name!r}{gone}.", highlight=False
        )
