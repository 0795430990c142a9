"""`run_simulation`: run a ServerApp against N virtual SuperNodes on this machine."""

from __future__ import annotations

import importlib
import logging
import random
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glade.client import ClientApp
from glade.context import Context
from glade.errors import ConfigError
from glade.project import load_app
from glade.server import History, RunEvent, ServerApp
from glade.simulation.backend import Backend, ClientAppSpec, NodeSpec
from glade.simulation.grid import SimulationGrid

__all__ = ["BACKENDS", "SimulationResult", "make_backend", "run_simulation"]

logger = logging.getLogger(__name__)

# name -> "module:class"; imported lazily so optional backends cost nothing until used.
BACKENDS: dict[str, str] = {
    "local": "glade.simulation.local:LocalBackend",
    "inline": "glade.simulation.inline:InlineBackend",
}


@dataclass(slots=True, kw_only=True)
class SimulationResult:
    """Outcome of a simulated run."""

    run_id: int
    status: str  # "completed" | "failed" | "stopped"
    elapsed_s: float
    history: History
    reason: str = ""
    return_value: Any = None
    node_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "elapsed_s": round(self.elapsed_s, 4),
            "reason": self.reason,
            "history": self.history.to_dict(),
        }


def make_backend(name: str, config: Mapping[str, Any] | None = None) -> Backend:
    """Instantiate a registered backend by name with its options."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown simulation backend {name!r}; choose one of {sorted(BACKENDS)}")
    module_name, _, cls_name = BACKENDS[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except ImportError as exc:
        raise ConfigError(f"backend {name!r} is not available: {exc}") from exc
    try:
        backend: Backend = cls(**dict(config or {}))
    except TypeError as exc:
        raise ConfigError(f"bad options for backend {name!r}: {exc}") from None
    return backend


def run_simulation(
    server_app: ServerApp | str,
    client_app: ClientApp | str,
    *,
    num_supernodes: int,
    backend: str | Backend = "local",
    backend_config: Mapping[str, Any] | None = None,
    run_config: Mapping[str, Any] | None = None,
    seed: int | None = None,
    app_dir: str | Path | None = None,
    on_event: Callable[[RunEvent], None] | None = None,
    raise_on_error: bool = False,
) -> SimulationResult:
    """Run ``server_app`` with ``num_supernodes`` virtual nodes executing ``client_app``.

    Apps may be objects or ``"module:attr"`` references (imported from ``app_dir``). Each node
    gets node config ``partition-id`` (0..N-1) and ``num-partitions`` (N). ``seed`` fixes the
    run id and node ids, so a seeded app gives the same result bit for bit.

    >>> from glade.simulation import run_simulation  # doctest: +SKIP
    >>> result = run_simulation(server_app, client_app, num_supernodes=10)  # doctest: +SKIP
    >>> result.status  # doctest: +SKIP
    'completed'
    """
    if not isinstance(num_supernodes, int) or num_supernodes < 1:
        raise ConfigError(f"num_supernodes must be a positive integer, got {num_supernodes!r}")
    started = time.monotonic()
    rng = random.Random(seed) if seed is not None else random.SystemRandom()
    run_id = rng.getrandbits(63)
    node_ids = _unique_ids(rng, num_supernodes)
    nodes = [
        NodeSpec(nid, {"partition-id": i, "num-partitions": num_supernodes})
        for i, nid in enumerate(node_ids)
    ]
    server: ServerApp = (
        load_app(server_app, kind=ServerApp, app_dir=app_dir)
        if isinstance(server_app, str)
        else server_app
    )
    if isinstance(client_app, str):
        spec = ClientAppSpec(ref=client_app, app_dir=str(app_dir) if app_dir else None)
    else:
        spec = ClientAppSpec(app=client_app)
    engine = make_backend(backend, backend_config) if isinstance(backend, str) else backend
    run_config = dict(run_config or {})
    grid = SimulationGrid(run_id=run_id, node_ids=node_ids, backend=engine, on_event=on_event)
    context = Context(run_id=run_id, node_id=0, run_config=run_config)
    result = SimulationResult(
        run_id=run_id, status="completed", elapsed_s=0.0, history=grid.history, node_ids=node_ids
    )
    try:
        engine.start(
            client_app=spec,
            nodes=nodes,
            run_id=run_id,
            run_config=run_config,
            on_replies=grid.deliver,
        )
        result.return_value = server(grid, context)
    except KeyboardInterrupt:
        result.status, result.reason = "stopped", "interrupted (Ctrl-C)"
    except Exception as exc:
        if raise_on_error:
            raise
        result.status = "failed"
        result.reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        logger.debug("run %s failed: %s", run_id, result.reason)
    finally:
        engine.shutdown()
        result.elapsed_s = time.monotonic() - started
    return result


def _unique_ids(rng: random.Random, n: int) -> list[int]:
    ids: list[int] = []
    seen: set[int] = set()
    while len(ids) < n:
        nid = rng.getrandbits(63) or 1
        if nid not in seen:
            seen.add(nid)
            ids.append(nid)
    return ids
