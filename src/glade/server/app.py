"""`ServerApp`: the run's coordinator code, given a Grid and a Context."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from glade.context import Context
from glade.errors import AppLoadError
from glade.server.grid import Grid

__all__ = ["ServerApp", "ServerMain"]

ServerMain: TypeAlias = Callable[[Grid, Context], Any]


class ServerApp:
    """The server side of a Glade app: one ``main`` function per run.

    >>> from glade import ServerApp
    >>> app = ServerApp()
    >>> @app.main()
    ... def main(grid, context):
    ...     return len(grid.get_node_ids())
    """

    def __init__(self) -> None:
        self._main: ServerMain | None = None

    def main(self) -> Callable[[ServerMain], ServerMain]:
        """Register the function that drives the run: ``main(grid, context)``."""

        def register(fn: ServerMain) -> ServerMain:
            if not callable(fn):
                raise TypeError("ServerApp.main() decorates a function (grid, context)")
            if self._main is not None:
                raise ValueError("this ServerApp already has a main function")
            self._main = fn
            return fn

        return register

    def __call__(self, grid: Grid, context: Context) -> Any:
        if self._main is None:
            raise AppLoadError("this ServerApp has no main function; decorate one with @app.main()")
        return self._main(grid, context)
