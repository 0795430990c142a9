"""The ServerApp process: ``python -m glade.superlink.serverapp`` (started by the SuperLink).

It reads the run's token from stdin, connects to ServerAppIO (with TLS given
``--root-certificates``), loads the ServerApp from the extracted bundle and runs it with a
:class:`~glade.superlink.grid.ServerAppIoGrid`. Its stdout and stderr (logging included)
become the run's log. Exit codes: 0 the ServerApp
returned, 1 it raised, 2 it could not be loaded, 3 the SuperLink could not be reached.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from glade.context import Context
from glade.errors import AppLoadError, ConfigError, TransportError
from glade.project import load_app
from glade.server.app import ServerApp
from glade.superlink.grid import ServerAppIoGrid
from glade.superlink.spares import raise_open_file_limit
from glade.transport.grpc_options import channel
from glade.transport.tls import channel_credentials

__all__ = ["main"]

logger = logging.getLogger("glade.serverapp")

EXIT_RAISED = 1
EXIT_LOAD = 2
EXIT_UNREACHABLE = 3


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m glade.superlink.serverapp")
    parser.add_argument("--run-id", type=int, required=True)
    parser.add_argument("--serverappio", required=True, help="HOST:PORT of ServerAppIO")
    parser.add_argument("--app-dir", required=True, help="the extracted app bundle")
    parser.add_argument("--server-app", required=True, help="module:attribute")
    parser.add_argument("--object-dir", help="the SuperLink's object store, if on this machine")
    parser.add_argument(
        "--root-certificates", help="PEM file of the CA to trust: ServerAppIO speaks TLS"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ServerApp to its end; returns the process exit code."""
    args = _parse(argv)
    token = sys.stdin.readline().strip()
    raise_open_file_limit()  # one descriptor per large stored array it maps
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        credentials = (
            channel_credentials(root_certificates=args.root_certificates)
            if args.root_certificates
            else None
        )
    except ConfigError as exc:
        logger.error("cannot connect to the SuperLink at %s: %s", args.serverappio, exc)
        return EXIT_UNREACHABLE
    with channel(args.serverappio, credentials=credentials) as chan:
        object_dir = Path(args.object_dir) if args.object_dir else None
        grid = ServerAppIoGrid(chan, run_id=args.run_id, token=token, object_dir=object_dir)
        try:
            return _run(grid, args)
        finally:
            grid.close()


def _run(grid: ServerAppIoGrid, args: argparse.Namespace) -> int:
    try:
        run = grid.run_info()
    except TransportError as exc:
        logger.error("cannot reach the SuperLink at %s: %s", args.serverappio, exc)
        return EXIT_UNREACHABLE
    try:
        app = load_app(args.server_app, kind=ServerApp, app_dir=args.app_dir)
    except AppLoadError as exc:
        logger.error("cannot load the ServerApp %r: %s", args.server_app, exc)
        return EXIT_LOAD
    context = Context(run_id=args.run_id, node_id=0, run_config=dict(run.run_config))
    logger.info("run %d: starting ServerApp %s", args.run_id, args.server_app)
    try:
        app(grid, context)
    except Exception:
        logger.exception("run %d: the ServerApp raised", args.run_id)
        return EXIT_RAISED
    logger.info("run %d: the ServerApp finished", args.run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
