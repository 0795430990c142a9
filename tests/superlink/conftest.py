"""Fixtures for SuperLink tests: a SuperLink on free ports, its Control API, fake SuperNodes
(the helpers are in sl_harness.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sl_harness import Control, FakeNode, link_config

from glade.superlink import SuperLink


@pytest.fixture
def start_link(tmp_path: Path) -> Iterator[Callable[..., SuperLink]]:
    """Start SuperLinks (config options as keywords); all are stopped at the end."""
    links: list[SuperLink] = []

    def start(**options: Any) -> SuperLink:
        link = SuperLink(link_config(tmp_path, **options))
        link.start()
        links.append(link)
        return link

    yield start
    for link in links:
        link.stop(grace=1.0)


@pytest.fixture
def link(start_link: Callable[..., SuperLink]) -> SuperLink:
    return start_link()


@pytest.fixture
def control(link: SuperLink) -> Iterator[Control]:
    ctl = Control(link.addresses["control"])
    yield ctl
    ctl.close()


@pytest.fixture
def nodes(link: SuperLink) -> Iterator[Callable[..., FakeNode]]:
    """Create fake nodes on ``link`` (closed at the end)."""
    made: list[FakeNode] = []

    def make(**options: Any) -> FakeNode:
        node = FakeNode(link.addresses["fleet"], **options)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()
