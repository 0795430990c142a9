"""Real deployments for the end-to-end tests: ``glade superlink`` + ``glade supernode``
processes on 127.0.0.1 (free ports, found through ``--ready-file``), and ``glade`` commands."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STARTUP_S = 60.0
POLL_WAIT_S = 2.0  # the SuperNodes' long-poll


def glade_executable() -> list[str]:
    """The ``glade`` console script of this environment (``python -m glade.cli`` if absent)."""
    script = Path(sys.executable).with_name("glade")
    if script.is_file():
        return [str(script)]
    found = shutil.which("glade")
    return [found] if found else [sys.executable, "-m", "glade.cli"]


def glade(*args: str, cwd: Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``glade ARGS`` to its end."""
    return subprocess.run(
        [*glade_executable(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_json(path: Path, *, proc: subprocess.Popen[bytes], what: str) -> dict[str, Any]:
    """Wait for a ready file (JSON) to appear; fail if the process exits first."""
    deadline = time.monotonic() + STARTUP_S
    while True:
        with contextlib.suppress(OSError, ValueError):
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} was not ready within {STARTUP_S} s")
        time.sleep(0.05)


class Service:
    """A long-running ``glade`` command in its own process group, its output in a file."""

    def __init__(self, args: list[str], *, log: Path, cwd: Path) -> None:
        self.args = args
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                [*glade_executable(), *args],
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 10.0) -> float:
        """SIGTERM; returns how long the process took to exit."""
        started = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        self.popen.wait(timeout)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the whole group (the service and every process it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)


@dataclass
class Deployment:
    """One SuperLink and some SuperNodes, all real processes (see the module docstring)."""

    root: Path
    num_nodes: int = 3
    node_ids: list[int] | None = None  # ids to join with (written to the nodes' data folders)
    link: Service | None = None
    nodes: dict[int, Service] = field(default_factory=dict)
    addresses: dict[str, Any] = field(default_factory=dict)
    ids: dict[int, int] = field(default_factory=dict)

    def start(self) -> Deployment:
        self.root.mkdir(parents=True, exist_ok=True)
        self.start_superlink()
        for i in range(self.num_nodes):
            if self.node_ids is not None:
                data = self.root / f"node-{i}"
                data.mkdir(parents=True, exist_ok=True)
                (data / "node.json").write_text(json.dumps({"node_id": self.node_ids[i]}))
            self.start_node(i, wait=False)
        for i in range(self.num_nodes):
            self.wait_node(i)
        return self

    def start_superlink(self, *, same_ports: bool = False) -> None:
        ready = self.root / "superlink.json"
        ready.unlink(missing_ok=True)
        ports = {"control": "0", "fleet": "0", "serverappio": "0"}
        if same_ports:
            ports = {k: self.addresses[k].rpartition(":")[2] for k in ports}
        self.link = Service(
            [
                "superlink",
                "--insecure",
                "--control-address",
                f"127.0.0.1:{ports['control']}",
                "--fleet-address",
                f"127.0.0.1:{ports['fleet']}",
                "--serverappio-address",
                f"127.0.0.1:{ports['serverappio']}",
                "--database",
                str(self.root / "superlink" / "state.db"),
                "--heartbeat-interval",
                "0.5",
                "--node-offline-timeout",
                "3",
                "--ready-file",
                str(ready),
            ],
            log=self.root / "superlink.log",
            cwd=self.root,
        )
        self.addresses = read_json(ready, proc=self.link.popen, what="the SuperLink")

    def start_node(self, i: int, *, wait: bool = True) -> None:
        ready = self.root / f"node-{i}.json"
        ready.unlink(missing_ok=True)
        self.nodes[i] = Service(
            [
                "supernode",
                "--insecure",
                "--superlink",
                self.addresses["fleet"],
                "--node-config",
                f"partition-id={i} num-partitions={self.num_nodes}",
                "--data-dir",
                str(self.root / f"node-{i}"),
                "--ready-file",
                str(ready),
                "--max-backoff",
                "1",
                "--poll-wait",
                str(POLL_WAIT_S),
            ],
            log=self.root / f"node-{i}.log",
            cwd=self.root,
        )
        if wait:
            self.wait_node(i)

    def wait_node(self, i: int) -> int:
        ready = self.root / f"node-{i}.json"
        self.ids[i] = int(
            read_json(ready, proc=self.nodes[i].popen, what=f"SuperNode {i}")["node_id"]
        )
        return self.ids[i]

    def add_to(self, project: Path, name: str = "dev") -> None:
        """Add ``[tool.glade.federations.NAME]`` for this deployment to a project."""
        text = (project / "pyproject.toml").read_text()
        text += f'\n[tool.glade.federations.{name}]\naddress = "{self.addresses["control"]}"\n'
        text += "insecure = true\n"
        (project / "pyproject.toml").write_text(text)

    def logs(self) -> str:
        parts = [f"--- {p.name}\n{p.read_text(errors='replace')}" for p in self.root.glob("*.log")]
        return "\n".join(parts)[-20_000:]

    def stop(self) -> None:
        services = [*self.nodes.values(), *([self.link] if self.link else [])]
        for service in services:
            if service.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    service.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 8.0
        for service in services:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.popen.wait(max(0.0, deadline - time.monotonic()))
        for service in services:
            service.kill()  # and whatever they left behind in their groups


def one_json(stdout: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one line of JSON on stdout, got {stdout!r}"
    doc: dict[str, Any] = json.loads(lines[0])
    return doc
