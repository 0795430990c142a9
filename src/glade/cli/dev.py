"""``glade dev-federation``: a SuperLink and K SuperNodes on this machine, in one command.

Each service is a ``glade superlink`` / ``glade supernode`` child process (exactly what an
operator would start by hand), on 127.0.0.1. Ctrl-C or SIGTERM stops them all within a few
seconds.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from glade.cli.console import stderr_console
from glade.cli.exit_codes import EXIT_OK, reported_errors
from glade.cli.service import StopSignals, service_logging
from glade.errors import ConfigError, TransportError
from glade.files import write_json

__all__ = ["dev_federation_command"]

_STARTUP_S = 60.0
_STOP_S = 5.0


def dev_federation_command(
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="How many SuperNodes.")] = 3,
    control_address: Annotated[
        str, typer.Option(help="Where users reach the SuperLink (glade run/ls/log/stop).")
    ] = "127.0.0.1:9093",
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Keep the state here (runs survive a restart); default: temporary."),
    ] = None,
    ready_file: Annotated[
        Path | None,
        typer.Option(help="Write the addresses and node ids (JSON) here once all are up."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Start a local deployment: one SuperLink and K SuperNodes (partition-id 0..K-1)."""
    err = stderr_console()
    with service_logging(verbose=verbose), reported_errors(err, verbose=verbose):
        if nodes < 1:
            raise ConfigError(f"--nodes must be at least 1, got {nodes}")
        root = data_dir.resolve() if data_dir is not None else None
        workdir = root or Path(tempfile.mkdtemp(prefix="glade-dev-"))
        procs: list[subprocess.Popen[bytes]] = []
        try:
            with StopSignals() as stop:
                info = _start_all(workdir, nodes, control_address, procs, stop, verbose)
                if info is None:
                    raise typer.Exit(128 + (stop.signum or signal.SIGINT))
                _announce(err, info)
                if ready_file is not None:
                    write_json(ready_file, info)
                stop.wait(until=lambda: procs[0].poll() is not None)
                if procs[0].poll() is not None and not stop.received.is_set():
                    raise TransportError(
                        f"the SuperLink exited unexpectedly (code {procs[0].returncode})"
                    )
        finally:
            _stop_all(procs)
            if root is None:
                shutil.rmtree(workdir, ignore_errors=True)
            if ready_file is not None:
                ready_file.unlink(missing_ok=True)
    raise typer.Exit(EXIT_OK)


def _glade(*args: str) -> list[str]:
    return [sys.executable, "-m", "glade.cli", *args]


def _start_all(
    workdir: Path,
    count: int,
    control_address: str,
    procs: list[subprocess.Popen[bytes]],
    stop: StopSignals,
    verbose: bool,
) -> dict[str, Any] | None:
    """Start the SuperLink, then the SuperNodes; their addresses and ids (None: stopped)."""
    extra = ["--verbose"] if verbose else []
    link_ready = workdir / "superlink.json"
    link_ready.unlink(missing_ok=True)
    procs.append(
        subprocess.Popen(
            _glade(
                "superlink",
                "--insecure",
                "--control-address",
                control_address,
                "--fleet-address",
                "127.0.0.1:0",
                "--serverappio-address",
                "127.0.0.1:0",
                "--database",
                str(workdir / "superlink" / "state.db"),
                "--heartbeat-interval",
                "2",
                "--node-offline-timeout",
                "10",
                "--ready-file",
                str(link_ready),
                *extra,
            )
        )
    )
    link = _await_ready(link_ready, procs[0], stop, "the SuperLink")
    if link is None:
        return None
    node_files = []
    for i in range(count):
        ready = workdir / f"node-{i}.json"
        ready.unlink(missing_ok=True)
        node_files.append(ready)
        config = f"partition-id={i} num-partitions={count}"
        procs.append(
            subprocess.Popen(
                _glade(
                    "supernode",
                    "--insecure",
                    "--superlink",
                    link["fleet"],
                    "--node-config",
                    config,
                    "--data-dir",
                    str(workdir / f"node-{i}"),
                    "--name",
                    f"dev-node-{i}",
                    "--ready-file",
                    str(ready),
                    *extra,
                )
            )
        )
    node_ids = []
    for i, ready in enumerate(node_files):
        node = _await_ready(ready, procs[i + 1], stop, f"SuperNode {i}")
        if node is None:
            return None
        node_ids.append(node["node_id"])
    return {
        "control": link["control"],
        "fleet": link["fleet"],
        "serverappio": link["serverappio"],
        "node_ids": node_ids,
        "pids": [p.pid for p in procs],
        "data_dir": str(workdir),
    }


def _await_ready(
    path: Path, proc: subprocess.Popen[bytes], stop: StopSignals, what: str
) -> dict[str, Any] | None:
    deadline = time.monotonic() + _STARTUP_S
    while not stop.received.is_set():
        with contextlib.suppress(OSError, ValueError):
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return data
        if proc.poll() is not None:
            raise TransportError(f"{what} could not start (exit code {proc.returncode})")
        if time.monotonic() > deadline:
            raise TransportError(f"{what} did not start within {_STARTUP_S:g} s")
        stop.received.wait(0.05)
    return None


def _announce(err: Any, info: dict[str, Any]) -> None:
    n = len(info["node_ids"])
    err.print(
        f"\nLocal deployment ready: a SuperLink (Control API {info['control']}, Fleet API "
        f"{info['fleet']}) and {n} SuperNode(s) with partition-id 0..{n - 1} and "
        f"num-partitions={n}. Add this federation to your project's pyproject.toml:\n\n"
        f'[tool.glade.federations.dev]\naddress = "{info["control"]}"\ninsecure = true\n\n'
        "then run 'glade run . dev'. Press Ctrl-C to stop everything.\n",
        highlight=False,
        markup=False,
    )


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the SuperNodes (they leave the federation), then the SuperLink; SIGKILL
    whatever is left after a few seconds."""
    deadline = time.monotonic() + _STOP_S
    for group, share in ((procs[1:], 0.5), (procs[:1], 1.0)):
        for proc in group:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGTERM)
        until = time.monotonic() + share * max(0.0, deadline - time.monotonic())
        for proc in group:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, until - time.monotonic()))
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
