"""``glade superlink``: run a SuperLink until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from glade.cli.console import stderr_console
from glade.cli.exit_codes import EXIT_OK, reported_errors
from glade.cli.service import StopSignals, data_home, service_logging, warn_insecure

__all__ = ["superlink_command"]

logger = logging.getLogger("glade.cli")


def superlink_command(
    control_address: Annotated[
        str, typer.Option(help="Control API (users: glade run/ls/log/stop). Port 0: any free.")
    ] = "0.0.0.0:9093",
    fleet_address: Annotated[str, typer.Option(help="Fleet API (SuperNodes).")] = "0.0.0.0:9092",
    serverappio_address: Annotated[
        str, typer.Option(help="ServerAppIO API (the ServerApp processes it starts).")
    ] = "127.0.0.1:9091",
    database: Annotated[
        str | None,
        typer.Option(
            help="SQLite file of the state (runs, nodes, logs), or ':memory:'. Objects are "
            "kept in 'objects/' next to it. Default: the user's data folder."
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Serve without TLS (trusted networks only; warns at every start)."
        ),
    ] = False,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(help="PEM certificate of the Control and Fleet APIs (turns TLS on)."),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="PEM private key of --ssl-certfile.")
    ] = None,
    ssl_ca_certfile: Annotated[
        Path | None,
        typer.Option(
            help="PEM CA certificate: SuperNodes must show a client certificate it signed "
            "(mutual TLS)."
        ),
    ] = None,
    ready_file: Annotated[
        Path | None,
        typer.Option(help="Write the addresses in use (JSON) here once listening."),
    ] = None,
    max_concurrent_runs: Annotated[
        int, typer.Option(help="Runs at once; later ones wait as pending.")
    ] = 4,
    heartbeat_interval: Annotated[
        float, typer.Option(help="Seconds between SuperNode heartbeats.")
    ] = 5.0,
    node_offline_timeout: Annotated[
        float, typer.Option(help="Seconds without a sign of life before a node is offline.")
    ] = 20.0,
    message_lease: Annotated[
        float, typer.Option(help="Seconds before an unanswered instruction is offered again.")
    ] = 120.0,
    run_timeout: Annotated[
        float | None, typer.Option(help="Fail runs that take longer (seconds; default: none).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Start a SuperLink: the coordinator that SuperNodes join and users submit runs to."""
    from glade.superlink import MEMORY_DATABASE, SuperLink, SuperLinkConfig

    err = stderr_console()
    with service_logging(verbose=verbose), reported_errors(err, verbose=verbose):
        if insecure:
            warn_insecure("SuperLink")  # logs the warning
        options: dict[str, Any] = {
            "ssl_certfile": ssl_certfile,
            "ssl_keyfile": ssl_keyfile,
            "ssl_ca_certfile": ssl_ca_certfile,
            "control_address": control_address,
            "fleet_address": fleet_address,
            "serverappio_address": serverappio_address,
            "insecure": insecure,
            "ready_file": ready_file,
            "max_concurrent_runs": max_concurrent_runs,
            "heartbeat_interval_s": heartbeat_interval,
            "node_offline_timeout_s": node_offline_timeout,
            "message_lease_s": message_lease,
            "run_timeout_s": run_timeout,
        }
        if database == MEMORY_DATABASE:
            config = SuperLinkConfig(database=MEMORY_DATABASE, **options)
        elif database is None:
            config = SuperLinkConfig.in_data_dir(data_home() / "superlink", **options)
        else:
            path = Path(database).expanduser().resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            config = SuperLinkConfig(
                database=str(path), object_dir=path.parent / "objects", **options
            )
        if config.database != MEMORY_DATABASE:
            Path(config.database).parent.mkdir(parents=True, exist_ok=True)
        logger.info("SuperLink state: %s", config.database)
        link = SuperLink(config)
        with StopSignals() as stop:
            link.start()
            stop.wait(until=lambda: link.wait(0))
            link.stop()
    raise typer.Exit(EXIT_OK)
