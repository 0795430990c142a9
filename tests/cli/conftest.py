"""Fixtures for the CLI tests: tiny throw-away Glade projects and an in-process runner."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from glade_testing import app_files, glade_in_process, write_files

# A ServerApp that needs no strategy: each round it asks every node for a value and reports
# the sum as the "evaluate" metric "total"; the run config can make it fail on purpose.
SERVER_APP = """
from glade import ConfigRecord, Message, RecordDict, RunEvent, ServerApp, keys

app = ServerApp()


@app.main()
def main(grid, context):
    rounds = int(context.run_config["num-server-rounds"])
    for rnd in range(1, rounds + 1):
        grid.report(RunEvent(kind="round-started", server_round=rnd, num_rounds=rounds))
        content = RecordDict({keys.CONFIG: ConfigRecord({keys.SERVER_ROUND: rnd})})
        msgs = [
            Message(content, dst_node_id=n, message_type="query", group_id=str(rnd))
            for n in grid.get_node_ids()
        ]
        replies = grid.send_and_receive(msgs, timeout=30)
        ok = [m for m in replies if m.has_content]
        total = sum(m.content[keys.METRICS]["value"] for m in ok)
        grid.report(
            RunEvent(
                kind="stage-finished",
                server_round=rnd,
                stage="evaluate",
                metrics={"total": total},
                num_replies=len(ok),
                num_failures=len(msgs) - len(ok),
            )
        )
        grid.report(RunEvent(kind="round-finished", server_round=rnd, num_rounds=rounds))
        if context.run_config["fail-at-round"] == rnd:
            raise ValueError("boom from the server app")
    return rounds
"""

CLIENT_APP = """
from glade import ClientApp, MetricRecord, RecordDict, keys

app = ClientApp()


@app.query()
def query(msg, context):
    value = (context.node_config["partition-id"] + 1) * context.run_config["scale"]
    return RecordDict({keys.METRICS: MetricRecord({"value": value})})
"""

CONFIG = {"num-server-rounds": 2, "scale": 1, "fail-at-round": 0, "label": "x"}
FEDERATIONS = {
    "default": "local",
    "local": {"num-supernodes": 4, "backend": "inline", "seed": 7},
    "remote": {"address": "127.0.0.1:9093"},
}

MakeProject = Callable[..., Path]


@pytest.fixture
def make_project(tmp_path: Path) -> Iterator[MakeProject]:
    """``make_project(server_ref=..., client_ref=...) -> project folder``.

    Each project gets a unique package name (``{pkg}`` in a reference), so in-process runs
    never share modules.
    """
    packages: list[str] = []

    def make(
        *,
        server_ref: str | None = None,
        client_ref: str | None = None,
    ) -> Path:
        package = f"cliapp_{uuid.uuid4().hex[:10]}"
        packages.append(package)
        files = app_files(
            package,
            server=SERVER_APP,
            client=CLIENT_APP,
            config=CONFIG,
            version="0.1.0",
            modules=("server_app", "client_app"),
            server_ref=server_ref and server_ref.format(pkg=package),
            client_ref=client_ref and client_ref.format(pkg=package),
            federations=FEDERATIONS,
        )
        return write_files(tmp_path / package, files)

    yield make
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            del sys.modules[name]
    sys.path[:] = [p for p in sys.path if not p.startswith(str(tmp_path.resolve()))]


@pytest.fixture
def glade_cli() -> Callable[..., Result]:
    """Invoke ``glade ARGS...`` in-process; stdout and stderr are kept apart."""
    return glade_in_process
