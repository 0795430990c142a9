"""Fixtures for SuperNode tests: an in-process SuperLink on free ports, apps, SuperNodes."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sn_harness import CLIENT_APP, PYPROJECT, SERVER_APP, start_superlink

from glade.bundle import Bundle, build_bundle
from glade.superlink import SuperLink
from glade.supernode import SuperNode, SuperNodeConfig
from glade.supernode.control import ControlClient


@pytest.fixture
def superlink() -> Iterator[SuperLink]:
    link = start_superlink()
    yield link
    link.stop(grace=1.0)


@pytest.fixture
def control(superlink: SuperLink) -> Iterator[ControlClient]:
    client = ControlClient(superlink.addresses["control"])
    yield client
    client.close()


MakeApp = Callable[..., Bundle]


@pytest.fixture
def make_app(tmp_path: Path) -> MakeApp:
    """``make_app(client=CODE, server=CODE) -> Bundle`` of a fresh package."""

    def make(*, client: str = CLIENT_APP, server: str = SERVER_APP) -> Bundle:
        package = f"snapp_{uuid.uuid4().hex[:8]}"
        root = tmp_path / "apps" / package
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        (root / package / "server.py").write_text(textwrap.dedent(server))
        (root / package / "client.py").write_text(textwrap.dedent(client))
        (root / "pyproject.toml").write_text(PYPROJECT.format(package=package))
        return build_bundle(root)

    return make


StartNode = Callable[..., SuperNode]


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[StartNode]:
    """``start_node(address, data_dir=None, partition=0, **options)``: a started SuperNode."""
    nodes: list[SuperNode] = []

    def start(address: str, *, data_dir: Path | None = None, partition: int = 0, **options: Any):
        defaults: dict[str, Any] = {
            "poll_wait_s": 2.0,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.5,
            "stop_grace_s": 2.0,
        }
        config = SuperNodeConfig(
            superlink=address,
            node_config={"partition-id": partition},
            data_dir=data_dir or tmp_path / f"node-{uuid.uuid4().hex[:6]}",
            **{**defaults, **options},
        )
        node = SuperNode(config)
        nodes.append(node)
        node.start()
        return node

    yield start
    for node in nodes:
        node.stop(grace=2.0)
