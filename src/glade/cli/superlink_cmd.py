"""``glade superlink``: run a SuperLink until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from glade.cli.bundle_flags import bundle_options
from glade.cli.console import stderr_console
from glade.cli.exit_codes import EXIT_OK, reported_errors
from glade.cli.service import StopSignals, data_home, service_logging, warn_insecure
from glade.errors import ConfigError

__all__ = ["superlink_command"]

ADMIN_PASSWORD_ENV = "GLADE_ADMIN_PASSWORD"

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
    serverappio_root_certificates: Annotated[
        Path | None,
        typer.Option(
            help="PEM CA file the ServerApp processes trust: ServerAppIO speaks TLS (with "
            "--ssl-certfile). Needed for a ServerAppIO address beyond loopback unless "
            "--ssl-ca-certfile is given (then that CA is trusted)."
        ),
    ] = None,
    max_bundle_size: Annotated[
        str | None,
        typer.Option(
            help="Largest app bundle a run may use (its files, uncompressed): bytes or "
            "e.g. 200MB, 1GiB. Default: 100MiB.",
            show_default=False,
        ),
    ] = None,
    bundle_file_types: Annotated[
        str | None,
        typer.Option(
            help="File types an app bundle may hold, comma-separated suffixes or file names "
            "(e.g. '.py,.toml,.md,LICENSE'), or '*' for any. Default: source, config and "
            "docs types (see docs/security.md).",
            show_default=False,
        ),
    ] = None,
    ready_file: Annotated[
        Path | None,
        typer.Option(help="Write the addresses in use (JSON) here once listening."),
    ] = None,
    node_auth: Annotated[
        bool | None,
        typer.Option(
            "--node-auth/--no-node-auth",
            help="SuperNodes must sign requests with a key on the allow-list (glade node add). "
            "Default: on, unless --insecure.",
            show_default=False,
        ),
    ] = None,
    node_auth_window: Annotated[
        float,
        typer.Option(help="Seconds a signed request's timestamp may differ from this clock."),
    ] = 60.0,
    user_auth: Annotated[
        bool | None,
        typer.Option(
            "--user-auth/--no-user-auth",
            help="Control API calls need a login (glade login); users see their own runs. "
            "Default: on, unless --insecure.",
            show_default=False,
        ),
    ] = None,
    token_ttl: Annotated[
        float, typer.Option(help="Seconds a login (glade login) stays valid.")
    ] = 12 * 3600.0,
    init_admin: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Create the admin NAME at start unless that user exists (the first admin); "
            f"the password comes from --init-admin-password-file, ${ADMIN_PASSWORD_ENV}, or "
            "a prompt.",
        ),
    ] = None,
    init_admin_password_file: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="File holding the --init-admin password (one line)."),
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
    bulk: Annotated[
        bool,
        typer.Option(
            "--bulk/--no-bulk",
            help="Open a bulk port for large arrays (plain TCP, or TLS like the Fleet API; "
            "single-use tickets from the Fleet API), faster than gRPC.",
        ),
    ] = True,
    bulk_port: Annotated[
        int, typer.Option(help="Port of --bulk, on the Fleet API's host (0: any free port).")
    ] = 0,
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
            "serverappio_root_certificates": serverappio_root_certificates,
            **bundle_options(max_bundle_size, bundle_file_types),
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
            "node_auth": node_auth,
            "node_auth_window_s": node_auth_window,
            "user_auth": user_auth,
            "token_ttl_s": token_ttl,
            "bulk": bulk,
            "bulk_port": bulk_port,
        }
        if init_admin:
            options["init_admin"] = init_admin
            options["init_admin_password"] = _admin_password(init_admin, init_admin_password_file)
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


def _admin_password(name: str, path: Path | None) -> str:
    """The first admin's password: from ``path``, ``$GLADE_ADMIN_PASSWORD`` or a prompt."""
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read --init-admin-password-file {path}: {exc}") from None
        return lines[0] if lines else ""
    if os.environ.get(ADMIN_PASSWORD_ENV):
        return os.environ[ADMIN_PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise ConfigError(
            f"--init-admin {name} needs a password: give --init-admin-password-file PATH or "
            f"set {ADMIN_PASSWORD_ENV} (no terminal to ask on)"
        )
    return str(
        typer.prompt(f"Password for admin {name}", hide_input=True, confirmation_prompt=True)
    )
