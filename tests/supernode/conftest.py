"""Fixtures for SuperNode tests: an in-process SuperLink on free ports, apps, SuperNodes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from glade_testing import app_files, start_superlink, write_files
from sn_harness import CLIENT_APP, CONFIG, SERVER_APP

from glade.bundle import Bundle, build_bundle
from glade.superlink import SuperLink
from glade.superlink.client import ControlClient
from glade.supernode import SuperNode, SuperNodeConfig


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
        files = app_files(package, server=server, client=client, config=CONFIG)
        return build_bundle(write_files(tmp_path / "apps" / package, files))

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
