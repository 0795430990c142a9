"""``glade run``: run a project's apps on a federation and report the outcome."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from glade.cli.console import JsonOutput, configure_logging, stderr_console
from glade.cli.exit_codes import EXIT_FAILED, EXIT_OK, error_paragraph, reported_errors
from glade.cli.interrupt import kill_descendants, stop_on_signals
from glade.cli.plan import RemotePlan, RunPlan, plan_run
from glade.cli.progress import RunProgress, check_plot, first_line, save_plot, show_result
from glade.cli.remote_run import run_remote
from glade.errors import ConfigError
from glade.server import History, RunEvent
from glade.simulation import SimulationResult, run_simulation

__all__ = ["OutputFormat", "run_command"]

logger = logging.getLogger(__name__)

GRACE_S = 1.5
"""Seconds a run has to shut down after Ctrl-C before its processes are killed."""


class OutputFormat(str, Enum):
    TEXT = "text"
    JSON = "json"


def run_command(
    app_dir: Annotated[
        Path, typer.Argument(metavar="APP_DIR", help="Folder of the project (with pyproject.toml).")
    ] = Path("."),
    federation: Annotated[
        str | None,
        typer.Argument(
            metavar="FEDERATION",
            help="Federation from [tool.glade.federations]; default: its 'default'.",
        ),
    ] = None,
    run_config: Annotated[
        str | None,
        typer.Option(
            "--run-config",
            "-c",
            help='Override run config values: "num-server-rounds=5 lr=0.1" (TOML values).',
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format", help="text: progress and a table; json: one JSON document on stdout."
        ),
    ] = OutputFormat.TEXT,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show debug logs and tracebacks.")
    ] = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            "-d",
            help="Deployments only: submit the run, print its id and return at once.",
        ),
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="PATH",
            help="After the run, save its metrics per round as a PNG here (needs matplotlib).",
        ),
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            metavar="KEYFILE",
            help="Deployments only: sign the app bundle with this publisher private key "
            "(default: the federation's signing-key).",
        ),
    ] = None,
) -> None:
    """Run a Glade project: its ServerApp and ClientApp on a (simulated) federation."""
    err = stderr_console()
    json_out = JsonOutput() if output_format is OutputFormat.JSON else None
    code = EXIT_OK
    with (
        configure_logging(err, verbose=verbose),
        reported_errors(err, verbose=verbose, on_error=_json_error(json_out)),
    ):
        plan = plan_run(app_dir, federation, run_config)
        check_plot(plot)
        if isinstance(plan, RemotePlan):
            if detach and plot is not None:
                raise ConfigError("--plot needs the finished run; it cannot go with --detach")
            code = run_remote(
                plan,
                err=err,
                json_out=json_out,
                verbose=verbose,
                detach=detach,
                plot=plot,
                sign_key=sign_key,
            )
        else:
            if detach:
                raise ConfigError(
                    f"--detach needs a deployment federation; {plan.federation.name!r} is a "
                    "simulation, which runs in this process"
                )
            if sign_key is not None:
                raise ConfigError(
                    f"--sign-key signs the app bundle sent to a deployment; "
                    f"{plan.federation.name!r} is a simulation, which sends no bundle"
                )
            code = _execute(plan, err=err, json_out=json_out, verbose=verbose, plot=plot)
    raise typer.Exit(code)


def _execute(
    plan: RunPlan, *, err: Console, json_out: JsonOutput | None, verbose: bool, plot: Path | None
) -> int:
    _announce(plan, err, verbose=verbose)
    progress = RunProgress(err)
    started = time.monotonic()

    def overdue(signum: int) -> None:
        _force_stop(signum, err=err, json_out=json_out, history=progress.history, started=started)

    with stop_on_signals(grace_s=GRACE_S, on_overdue=overdue) as stop, progress:
        result = run_simulation(
            plan.project.server_app,
            plan.project.client_app,
            num_supernodes=plan.num_supernodes,
            backend=plan.backend,
            backend_config=plan.backend_config or None,
            run_config=plan.run_config,
            seed=plan.seed,
            app_dir=plan.project.root,
            on_event=_never_raising(progress.on_event),
        )
    signum = stop.signum or signal.SIGINT
    code = _report(result, err=err, json_out=json_out, verbose=verbose, signum=signum)
    if plot is not None:
        save_plot(result.history, plot, run_id=result.run_id, err=err)
    return code


def _announce(plan: RunPlan, err: Console, *, verbose: bool) -> None:
    err.print(
        f"Running {plan.project.name} on federation {plan.federation.name!r}: "
        f"{plan.num_supernodes} virtual nodes, {plan.backend!r} backend",
        highlight=False,
    )
    if verbose:
        err.print(f"run config: {dict(plan.run_config)}", highlight=False)


def _report(
    result: SimulationResult,
    *,
    err: Console,
    json_out: JsonOutput | None,
    verbose: bool,
    signum: int,
) -> int:
    took = f"{result.elapsed_s:.1f} s"
    show_result(result.to_dict(), result.history, took=took, json_out=json_out, err=err)
    if result.status == "completed":
        return EXIT_OK
    if result.status == "stopped":
        rounds = len(result.history.metrics.get("train", {}))
        err.print(
            Text(
                f"Stopped: run {result.run_id} was interrupted after {took} ({rounds} "
                "training round(s) finished).",
                style="yellow",
            )
        )
        return 128 + signum
    if verbose:
        err.print(Text(result.reason.rstrip()))
    summary = first_line(result.reason)
    hint = "The traceback is above." if verbose else "Rerun with --verbose to see the traceback."
    err.print(
        Text(f"Error: run {result.run_id} failed after {took}: {summary}. {hint}", style="red")
    )
    return EXIT_FAILED


def _never_raising(handler: Callable[[RunEvent], None]) -> Callable[[RunEvent], None]:
    """A display problem must never fail the run."""

    def call(event: RunEvent) -> None:
        try:
            handler(event)
        except Exception:
            logger.debug("showing a run event failed", exc_info=True)

    return call


def _json_error(json_out: JsonOutput | None) -> Callable[[BaseException, int], None] | None:
    if json_out is None:
        return None

    def emit(exc: BaseException, code: int) -> None:
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        json_out.emit(_document(status, error_paragraph(exc), History(), exit_code=code))

    return emit


def _document(
    status: str, reason: str, history: History, *, elapsed_s: float = 0.0, **extra: Any
) -> dict[str, Any]:
    """A result document for a run that did not get as far as a result."""
    return {
        "run_id": None,
        "status": status,
        "elapsed_s": round(elapsed_s, 4),
        "reason": reason,
        "history": history.to_dict(),
        **extra,
    }


def _force_stop(
    signum: int, *, err: Console, json_out: JsonOutput | None, history: History, started: float
) -> None:
    """The run did not stop in time after a signal: kill its processes and exit now."""
    kill_descendants()
    reason = f"interrupted; the run did not shut down within {GRACE_S} s, so it was killed"
    if json_out is not None:
        elapsed = time.monotonic() - started
        json_out.emit(
            _document("stopped", reason, history, elapsed_s=elapsed, exit_code=128 + signum)
        )
    err.print(Text(f"Stopped: {reason}.", style="yellow"))
    sys.stderr.flush()
    os._exit(128 + signum)
