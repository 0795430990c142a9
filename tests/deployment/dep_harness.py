"""Real deployments for the end-to-end tests: ``glade superlink`` + ``glade supernode``
processes on 127.0.0.1 (free ports, found through ``--ready-file``), and ``glade`` commands."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glade_testing import GladeProcess, read_ready_file

POLL_WAIT_S = 2.0  # the SuperNodes' long-poll


@dataclass
class Deployment:
    """One SuperLink and some SuperNodes, all real processes (see the module docstring)."""

    root: Path
    num_nodes: int = 3
    node_ids: list[int] | None = None  # ids to join with (written to the nodes' data folders)
    link: GladeProcess | None = None
    nodes: dict[int, GladeProcess] = field(default_factory=dict)
    addresses: dict[str, Any] = field(default_factory=dict)
    ids: dict[int, int] = field(default_factory=dict)
    certs: Path | None = None  # a `glade certs create` folder: TLS (Fleet with mutual TLS)
    node_auth: bool | None = None  # --node-auth / --no-node-auth (None: the default)
    auth_keys: dict[int, Path] = field(default_factory=dict)  # node i -> its --auth-key
    user_auth: bool | None = False  # --user-auth / --no-user-auth (None: the default)
    superlink_args: list[str] = field(default_factory=list)  # more options (--init-admin ...)

    def _security(self, service: str) -> list[str]:
        if self.certs is None:
            return ["--insecure"]
        c = self.certs
        if service == "superlink":
            return [
                *("--ssl-certfile", str(c / "server.pem"), "--ssl-keyfile", str(c / "server.key")),
                *("--ssl-ca-certfile", str(c / "ca.pem")),
            ]
        return [
            *("--root-certificates", str(c / "ca.pem")),
            *("--ssl-certfile", str(c / "client.pem"), "--ssl-keyfile", str(c / "client.key")),
        ]

    def start(self) -> Deployment:
        """Start the SuperLink and the nodes; if one does not come up, stop them all."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.start_superlink()
            for i in range(self.num_nodes):
                if self.node_ids is not None:
                    data = self.root / f"node-{i}"
                    data.mkdir(parents=True, exist_ok=True)
                    (data / "node.json").write_text(json.dumps({"node_id": self.node_ids[i]}))
                self.start_node(i, wait=False)
            for i in range(self.num_nodes):
                self.wait_node(i)
        except BaseException:
            self.stop()
            raise
        return self

    def start_superlink(self, *, same_ports: bool = False) -> None:
        ready = self.root / "superlink.json"
        ready.unlink(missing_ok=True)
        ports = {"control": "0", "fleet": "0", "serverappio": "0"}
        if same_ports:
            ports = {k: self.addresses[k].rpartition(":")[2] for k in ports}
        self.link = GladeProcess(
            [
                "superlink",
                *self._security("superlink"),
                *({True: ["--node-auth"], False: ["--no-node-auth"]}.get(self.node_auth, [])),
                *({True: ["--user-auth"], False: ["--no-user-auth"]}.get(self.user_auth, [])),
                *self.superlink_args,
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
        self.addresses = read_ready_file(ready, proc=self.link.popen, what="the SuperLink")

    def start_node(self, i: int, *, wait: bool = True) -> None:
        ready = self.root / f"node-{i}.json"
        ready.unlink(missing_ok=True)
        self.nodes[i] = GladeProcess(
            [
                "supernode",
                *self._security("supernode"),
                *(["--auth-key", str(self.auth_keys[i])] if i in self.auth_keys else []),
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
            read_ready_file(ready, proc=self.nodes[i].popen, what=f"SuperNode {i}")["node_id"]
        )
        return self.ids[i]

    def add_to(self, project: Path, name: str = "dev") -> None:
        """Add ``[tool.glade.federations.NAME]`` for this deployment to a project."""
        text = (project / "pyproject.toml").read_text()
        text += f'\n[tool.glade.federations.{name}]\naddress = "{self.addresses["control"]}"\n'
        if self.certs is None:
            text += "insecure = true\n"
        else:
            text += f'root-certificates = "{self.certs / "ca.pem"}"\n'

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
