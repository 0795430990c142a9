"""``glade supernode``: run a SuperNode until Ctrl-C or SIGTERM."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from glade.cli.bundle_flags import bundle_options
from glade.cli.console import stderr_console
from glade.cli.exit_codes import EXIT_OK, reported_errors
from glade.cli.service import StopSignals, data_home, service_logging, warn_insecure
from glade.project import parse_run_config

__all__ = ["default_node_dir", "supernode_command"]


def default_node_dir(superlink: str, node_config: dict[str, Any]) -> Path:
    """A data folder per (SuperLink, node config): the same command rejoins as the same node."""
    key = json.dumps([superlink, sorted(node_config.items())], default=str)
    return data_home() / "supernode" / hashlib.sha256(key.encode()).hexdigest()[:16]


def supernode_command(
    superlink: Annotated[
        str, typer.Option(help="HOST:PORT of the SuperLink's Fleet API (e.g. 127.0.0.1:9092).")
    ],
    node_config: Annotated[
        str | None,
        typer.Option(
            help='This node\'s config for the ClientApp: "partition-id=0 num-partitions=3".'
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Connect without TLS (trusted networks only)."),
    ] = False,
    root_certificates: Annotated[
        Path | None,
        typer.Option(help="PEM file of the CA that signed the SuperLink's certificate (TLS)."),
    ] = None,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(help="This node's PEM client certificate, for mutual TLS."),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="PEM private key of --ssl-certfile.")
    ] = None,
    auth_key: Annotated[
        Path | None,
        typer.Option(
            help="This node's private key (glade keys create): signs every request, for a "
            "SuperLink with node authentication (its admin allows the .pub with glade node add)."
        ),
    ] = None,
    trusted_publishers: Annotated[
        Path | None,
        typer.Option(
            help="File of trusted publisher keys (one OpenSSH public key per line): only app "
            "bundles signed by one of them run here; others get error replies."
        ),
    ] = None,
    max_bundle_size: Annotated[
        str | None,
        typer.Option(
            help="Largest app bundle this node runs (its files, uncompressed): bytes or "
            "e.g. 200MB, 1GiB. Default: 100MiB.",
            show_default=False,
        ),
    ] = None,
    bundle_file_types: Annotated[
        str | None,
        typer.Option(
            help="File types an app bundle may hold here, comma-separated suffixes or file "
            "names (e.g. '.py,.toml,.md,LICENSE'), or '*' for any. Default: source, config "
            "and docs types (see docs/security.md).",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Keeps the node id (a restart rejoins as the same node) and cached app "
            "bundles. Default: a folder per SuperLink and node config in the user's data folder."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name shown on the SuperLink.")] = None,
    ready_file: Annotated[
        Path | None, typer.Option(help="Write the node id (JSON) here once registered.")
    ] = None,
    poll_wait: Annotated[
        float, typer.Option(help="Longest wait (seconds) of one long-poll for instructions.")
    ] = 10.0,
    max_backoff: Annotated[
        float, typer.Option(help="Longest wait (seconds) between reconnection attempts.")
    ] = 30.0,
    bulk: Annotated[
        bool,
        typer.Option(
            "--bulk/--no-bulk",
            help="Move large arrays over the SuperLink's bulk port when it has one "
            "(else, or when it fails, gRPC).",
        ),
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Start a SuperNode: it joins a SuperLink and runs ClientApps next to this node's data."""
    from glade.supernode import SuperNode, SuperNodeConfig

    err = stderr_console()
    with service_logging(verbose=verbose), reported_errors(err, verbose=verbose):
        if insecure:
            warn_insecure("SuperNode")  # logs the warning
        config_values = parse_run_config(node_config)
        options: dict[str, Any] = {
            "root_certificates": root_certificates,
            "ssl_certfile": ssl_certfile,
            "ssl_keyfile": ssl_keyfile,
            **bundle_options(max_bundle_size, bundle_file_types, trusted_publishers),
            "auth_key": auth_key,
            "superlink": superlink,
            "node_config": config_values,
            "insecure": insecure,
            "data_dir": data_dir or default_node_dir(superlink, config_values),
            "ready_file": ready_file,
            "backoff_initial_s": min(0.5, max_backoff),
            "backoff_max_s": max_backoff,
            "poll_wait_s": poll_wait,
            "bulk": bulk,
        }
        if name:
            options["name"] = name
        config = SuperNodeConfig(**options)
        if config.trusted_publishers is not None:
            logging.getLogger("glade.cli").info(
                "only app bundles signed by a trusted publisher run here: %s",
                ", ".join(key.fingerprint for key in config.trusted_publishers),
            )
        node = SuperNode(config)
        with StopSignals() as stop:
            node.start()
            stop.wait(until=lambda: node.wait(0))
            node.stop()
    raise typer.Exit(EXIT_OK)
