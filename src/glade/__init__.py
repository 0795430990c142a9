"""Glade: a friendly, production-grade federated learning framework.

The public API lives here; everything else is in subpackages (``glade.strategies``,
``glade.simulation``, ...) or private.
"""

from glade import keys
from glade.array import Array
from glade.client import ClientApp
from glade.context import Context
from glade.errors import (
    AppLoadError,
    ConfigError,
    GladeError,
    NotEnoughNodesError,
    RecordError,
    RunError,
    SerdeError,
    TransportError,
)
from glade.message import Error, ErrorCode, Message, MessageType, Metadata
from glade.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from glade.server import Grid, RunEvent, ServerApp

__version__ = "0.1.0"

__all__ = [
    "AppLoadError",
    "Array",
    "ArrayRecord",
    "ClientApp",
    "ConfigError",
    "ConfigRecord",
    "Context",
    "Error",
    "ErrorCode",
    "GladeError",
    "Grid",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "NotEnoughNodesError",
    "RecordDict",
    "RecordError",
    "RunError",
    "RunEvent",
    "SerdeError",
    "ServerApp",
    "TransportError",
    "__version__",
    "keys",
]
