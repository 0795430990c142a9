"""``glade ls``, ``glade log``, ``glade stop``: the runs of a deployment federation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from glade.cli.console import JsonOutput, configure_logging, stderr_console, stdout_console
from glade.cli.exit_codes import reported_errors
from glade.cli.interrupt import stop_on_signals
from glade.cli.progress import summary_table
from glade.cli.remote import (
    Federation,
    connect,
    elapsed_s,
    find_federation,
    history_from_dict,
    run_document,
    run_history,
    run_status,
)

if TYPE_CHECKING:
    from glade.superlink.client import ControlClient
    from glade.superlink.state import RunInfo

__all__ = [
    "AppOption",
    "FederationArg",
    "ListFormat",
    "VerboseOption",
    "federation_client",
    "log_command",
    "ls_command",
    "stop_command",
]


class ListFormat(str, Enum):
    TABLE = "table"
    JSON = "json"


FederationArg = Annotated[
    str | None,
    typer.Argument(
        metavar="FEDERATION",
        help="A deployment federation of [tool.glade.federations]; default: its 'default'.",
    ),
]
AppOption = Annotated[
    Path,
    typer.Option("--app", help="Project folder whose pyproject.toml names the federation."),
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show debug logs and tracebacks.")
]
FormatOption = Annotated[ListFormat, typer.Option("--format", help="table (default) or json.")]


@contextmanager
def federation_client(
    app_dir: Path, name: str | None, *, verbose: bool, login: bool = True
) -> Iterator[tuple[Federation, ControlClient]]:
    """A command's set-up: logging, errors reported as one paragraph, the federation named
    in ``app_dir``'s pyproject.toml, and a client of its SuperLink (sending the login token
    of ``glade login`` unless not ``login``)."""
    err = stderr_console()
    with configure_logging(err, verbose=verbose), reported_errors(err, verbose=verbose):
        fed = find_federation(app_dir, name)
        with connect(fed, login=login) as client:
            yield fed, client


def ls_command(
    federation: FederationArg = None,
    run_id: Annotated[
        int | None, typer.Option("--run-id", help="Show one run in detail (with its metrics).")
    ] = None,
    output_format: FormatOption = ListFormat.TABLE,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """List the runs of a deployment federation (or show one with --run-id)."""
    with federation_client(app_dir, federation, verbose=verbose) as (fed, client):
        if run_id is not None:
            run, now = client.get_run(run_id)
            runs = [run]
        else:
            runs, now = client.list_runs()
        if output_format is ListFormat.JSON:
            documents = [run_document(r, now) for r in runs]
            JsonOutput().emit(documents[0] if run_id is not None else {"runs": documents})
        elif run_id is not None:
            _show_run(runs[0], now)
        else:
            _show_table(runs, now, fed.name)


def _show_table(runs: list[RunInfo], now: float, name: str) -> None:
    if not runs:
        stderr_console().print(f"No runs on federation {name!r} yet.", highlight=False)
        return
    table = Table(title=f"Runs on {name}", title_justify="left")
    owners = any(run.owner for run in runs)  # runs submitted with user authentication on
    columns = ("run id", "app", *(("owner",) if owners else ()), "status", "created", "elapsed")
    for column in columns:
        table.add_column(column, justify="right" if column in ("run id", "elapsed") else "left")
    for run in runs:
        table.add_row(
            str(run.run_id),
            Text(f"{run.app_publisher}/{run.app_name} {run.app_version}"),
            *((Text(run.owner or "-"),) if owners else ()),
            run_status(run),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.created_at)),
            f"{elapsed_s(run, now):.1f} s",
        )
    stdout_console().print(table)


def _show_run(run: RunInfo, now: float) -> None:
    out = stdout_console()
    doc = run_document(run, now)
    for key in ("run_id", "app", "app_version", "status", "elapsed_s", "bundle_id"):
        out.print(f"{key:<12} {doc[key]}", highlight=False)
    if run.owner:
        out.print(f"{'owner':<12} {run.owner}", highlight=False)
    for key in ("created_at", "started_at", "finished_at"):
        out.print(f"{key:<12} {doc[key] or '-'}", highlight=False)
    out.print(f"{'run_config':<12} {doc['run_config']}", highlight=False)
    if run.reason:
        out.print(f"{'reason':<12} {run.reason.strip()}", highlight=False)
    history = history_from_dict(run_history(run))
    if history.metrics:
        out.print(summary_table(history, title=f"Run {run.run_id}"))


def log_command(
    run_id: Annotated[int, typer.Argument(metavar="RUN_ID", help="The run (see 'glade ls').")],
    federation: FederationArg = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the run finishes.")
    ] = False,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Print the log of a run (its ServerApp's output and the SuperLink's notes)."""
    out = stdout_console()
    with federation_client(app_dir, federation, verbose=verbose) as (_, client):
        client.get_run(run_id)  # an unknown run is an error before anything prints
        stream = client.stream_logs(run_id, follow=follow)
        try:
            with stop_on_signals(grace_s=0.5, on_overdue=lambda signum: stream.cancel()):
                for _, text in stream:
                    out.print(Text(text), end="", soft_wrap=True)
        except KeyboardInterrupt as exc:  # Ctrl-C ends --follow; the run goes on
            raise typer.Exit(128 + int(getattr(exc, "signum", 2))) from None


def stop_command(
    run_id: Annotated[int, typer.Argument(metavar="RUN_ID", help="The run (see 'glade ls').")],
    federation: FederationArg = None,
    app_dir: AppOption = Path("."),
    verbose: VerboseOption = False,
) -> None:
    """Stop a run: its ServerApp is ended and the run is marked stopped."""
    with federation_client(app_dir, federation, verbose=verbose) as (_, client):
        stopped = client.stop_run(run_id)
        run, _ = client.get_run(run_id)
        if stopped:
            stdout_console().print(f"Run {run_id} stopped.", highlight=False)
        else:
            stdout_console().print(
                f"Run {run_id} had already finished ({run_status(run)}).", highlight=False
            )
