"""``glade run APP_DIR FED`` on a deployment: bundle, submit, stream the log, report."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from glade.bundle import build_bundle
from glade.cli.console import JsonOutput, stdout_console
from glade.cli.exit_codes import EXIT_FAILED, EXIT_OK
from glade.cli.interrupt import stop_on_signals
from glade.cli.plan import RemotePlan
from glade.cli.progress import first_line, save_plot, show_result
from glade.cli.remote import (
    Federation,
    connect,
    elapsed_s,
    history_from_dict,
    run_document,
    run_history,
)
from glade.errors import TransportError
from glade.keypairs import PrivateKey

if TYPE_CHECKING:
    from glade.superlink.client import ControlClient
    from glade.superlink.state import RunInfo

__all__ = ["run_remote"]

_RECONNECT_S = 30.0  # how long to wait for a SuperLink that went away while following a run


def run_remote(
    plan: RemotePlan,
    *,
    err: Console,
    json_out: JsonOutput | None,
    verbose: bool,
    detach: bool,
    plot: Path | None = None,
    sign_key: Path | None = None,
) -> int:
    """Submit the project to the federation's SuperLink; follow the run unless ``detach``.

    With ``plot``, the finished run's metrics per round are saved there as a PNG. The
    bundle is signed with ``sign_key``, else with the federation's ``signing-key``.
    """
    federation = Federation(
        name=plan.federation.name,
        address=plan.address,
        root_certificates=plan.root_certificates,
    )
    key_file = sign_key if sign_key is not None else plan.signing_key
    key = PrivateKey.read(key_file) if key_file is not None else None
    bundle = build_bundle(plan.project.root, signing_key=key)
    with connect(federation) as client:
        sent = client.upload_bundle(bundle)
        run_id = client.start_run(bundle.bundle_id, run_config=plan.run_config)
        m = bundle.manifest
        how = "uploaded" if sent else "already on the SuperLink"
        signed = f", signed by {bundle.signer.fingerprint}" if bundle.signer else ""
        err.print(
            f"Run {run_id} submitted to federation {federation.name!r} at {federation.address}:"
            f" {m.publisher}/{m.name} {m.version} (bundle {bundle.bundle_id[:12]}, {how}"
            f"{signed})",
            highlight=False,
        )
        if verbose:
            err.print(f"run config: {dict(plan.run_config)}", highlight=False)
        if detach:
            return _detached(client, run_id, federation, err=err, json_out=json_out)
        signum = _follow(client, run_id, err=err)
        run, now = client.get_run(run_id)
    if signum is not None:
        return _interrupted(run, now, federation, signum, err=err, json_out=json_out)
    code = _report(run, now, err=err, json_out=json_out, verbose=verbose)
    if plot is not None:
        save_plot(history_from_dict(run_history(run)), plot, run_id=run_id, err=err)
    return code


def _detached(
    client: ControlClient,
    run_id: int,
    federation: Federation,
    *,
    err: Console,
    json_out: JsonOutput | None,
) -> int:
    run, now = client.get_run(run_id)
    if json_out is not None:
        json_out.emit(run_document(run, now))
    else:
        stdout_console().print(str(run_id), highlight=False)
    err.print(
        f"Follow it with 'glade log {run_id} {federation.name} --follow'; see it with "
        f"'glade ls {federation.name} --run-id {run_id}'.",
        highlight=False,
    )
    return EXIT_OK


def _follow(client: ControlClient, run_id: int, *, err: Console) -> int | None:
    """Print the run's log as it grows until the run ends; the stop signal if one came."""
    offset = 0
    stream_box: list[Any] = []

    def overdue(signum: int) -> None:  # the stream did not notice the signal: cut it
        for stream in stream_box:
            stream.cancel()

    try:
        with stop_on_signals(grace_s=0.5, on_overdue=overdue):
            lost_at: float | None = None
            while True:
                stream = client.stream_logs(run_id, offset=offset, follow=True)
                stream_box[:] = [stream]
                try:
                    for offset_at, text in stream:
                        _write_log(err, text)
                        offset = offset_at + len(text.encode())
                        lost_at = None
                except TransportError:
                    lost_at = lost_at or time.monotonic()
                    if time.monotonic() - lost_at > _RECONNECT_S:
                        raise
                    threading.Event().wait(1.0)
                    continue
                return None
    except KeyboardInterrupt as exc:
        return int(getattr(exc, "signum", signal.SIGINT))


def _write_log(err: Console, text: str) -> None:
    err.print(Text(text, style="dim"), end="", soft_wrap=True)


def _interrupted(
    run: RunInfo,
    now: float,
    federation: Federation,
    signum: int,
    *,
    err: Console,
    json_out: JsonOutput | None,
) -> int:
    if json_out is not None:
        json_out.emit({**run_document(run, now), "detached": True})
    err.print(
        Text(
            f"Detached from run {run.run_id}: it keeps running on the SuperLink. Follow it "
            f"with 'glade log {run.run_id} {federation.name} --follow' or stop it with "
            f"'glade stop {run.run_id} {federation.name}'.",
            style="yellow",
        )
    )
    return 128 + signum


def _report(
    run: RunInfo, now: float, *, err: Console, json_out: JsonOutput | None, verbose: bool
) -> int:
    document = run_document(run, now)
    took = f"{elapsed_s(run, now):.1f} s"
    history = history_from_dict(run_history(run))
    show_result(document, history, took=took, json_out=json_out, err=err)
    status = document["status"]
    if status == "completed":
        return EXIT_OK
    if verbose and run.reason:
        err.print(Text(run.reason.rstrip()))
    summary = first_line(run.reason)
    err.print(
        Text(
            f"Error: run {run.run_id} {status} after {took}: {summary}. The run's log above "
            "has the details.",
            style="red",
        )
    )
    return EXIT_FAILED
