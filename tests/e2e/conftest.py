"""Fixtures for driving the real ``glade`` command in subprocesses (see glade_testing.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from glade_testing import GladeProcess


@pytest.fixture
def start_glade() -> Iterator[Callable[..., GladeProcess]]:
    """``start_glade(*args, cwd=...)``: run ``glade ARGS``, watching every process it starts;
    killed at the end if still alive."""
    started: list[GladeProcess] = []

    def start(*args: str, cwd: Path) -> GladeProcess:
        proc = GladeProcess(list(args), cwd=cwd, watch=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
