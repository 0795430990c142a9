"""Fixtures for the simulation backend tests: start a backend on a few virtual nodes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sim_harness import RUN_ID, SPEC, Harness, StartBackend, make_nodes

from glade.simulation import ClientAppSpec, SimulationGrid
from glade.simulation.backend import Backend
from glade.simulation.local import LocalBackend


@pytest.fixture
def start_backend() -> Iterator[StartBackend]:
    """Start a backend (default: LocalBackend with 2 workers) on ``nodes`` nodes."""
    started: list[Backend] = []

    def start(
        backend: Backend | None = None,
        *,
        nodes: int = 4,
        spec: ClientAppSpec = SPEC,
        **options: Any,
    ) -> Harness:
        backend = backend or LocalBackend(**{"num_workers": 2, **options})
        specs = make_nodes(nodes)
        grid = SimulationGrid(run_id=RUN_ID, node_ids=[n.node_id for n in specs], backend=backend)
        started.append(backend)
        backend.start(
            client_app=spec,
            nodes=specs,
            run_id=RUN_ID,
            run_config={"lr": 0.1},
            on_replies=grid.deliver,
        )
        return Harness(backend, grid, specs)

    yield start
    for backend in started:
        backend.shutdown()
