"""Server side: :class:`ServerApp`, the :class:`Grid` protocol and run events."""

from glade.server.app import ServerApp
from glade.server.events import History, RunEvent
from glade.server.grid import BaseGrid, Grid

__all__ = ["BaseGrid", "Grid", "History", "RunEvent", "ServerApp"]
