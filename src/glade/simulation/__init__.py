"""Simulation runtime: many virtual SuperNodes on one machine.

Backends: ``local`` (default: a pool of worker processes) and ``inline`` (one thread, for
tests and debugging). The simulation never imports the transport layer.
"""

from glade.simulation.backend import Backend, ClientAppSpec, NodeSpec
from glade.simulation.grid import SimulationGrid
from glade.simulation.run import BACKENDS, SimulationResult, run_simulation

__all__ = [
    "BACKENDS",
    "Backend",
    "ClientAppSpec",
    "NodeSpec",
    "SimulationGrid",
    "SimulationResult",
    "run_simulation",
]
