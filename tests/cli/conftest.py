"""Fixtures for the CLI tests: tiny throw-away Glade projects and an in-process runner."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from glade.cli.main import app

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

PYPROJECT = """
[project]
name = "{name}"
version = "0.1.0"

[tool.glade.app]
server-app = "{server_ref}"
client-app = "{client_ref}"

[tool.glade.app.config]
num-server-rounds = 2
scale = 1
fail-at-round = 0
label = "x"

[tool.glade.federations]
default = "local"

[tool.glade.federations.local]
num-supernodes = 4
backend = "inline"
seed = 7

[tool.glade.federations.remote]
address = "127.0.0.1:9093"
"""

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
        root = tmp_path / package
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        (root / package / "server_app.py").write_text(textwrap.dedent(SERVER_APP))
        (root / package / "client_app.py").write_text(textwrap.dedent(CLIENT_APP))
        (root / "pyproject.toml").write_text(
            PYPROJECT.format(
                name=package,
                server_ref=(server_ref or "{pkg}.server_app:app").format(pkg=package),
                client_ref=(client_ref or "{pkg}.client_app:app").format(pkg=package),
            )
        )
        return root

    yield make
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            del sys.modules[name]
    sys.path[:] = [p for p in sys.path if not p.startswith(str(tmp_path.resolve()))]


@pytest.fixture
def glade_cli() -> Callable[..., Result]:
    """Invoke ``glade ARGS...`` in-process; stdout and stderr are kept apart."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke
